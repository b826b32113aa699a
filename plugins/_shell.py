"""Shell: the component that runs commands for other components (SmartFrog's BashShell)."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sd_actors.actors import ABNORMAL, NORMAL, Component, DeploymentError, State, TerminationRecord
from sd_actors.descriptions import ComponentDescription
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sd_actors.actors import ComponentContext, ComponentRef

DEFAULT_SHELL: Final = "/bin/bash"
STDERR_TAIL: Final = 2000
"""Characters of a failing command's stderr kept in its termination record."""
TERMINATION_POLL: Final = 0.05
"""Seconds between checks, while a command runs, that the Shell is not being terminated.

A command asked for through ``ref.call`` runs in the Shell's actor thread, so the Shell cannot
receive its termination until the command ends; it looks at its own and its ancestors' states
instead, and kills the command when they are terminating."""
DRAIN_GRACE: Final = 1.0
"""Seconds to keep reading output once the command and its process group are gone: only a
process that left the group (``setsid``) can still hold the pipes open, and it is not waited for."""
_READ_CHUNK: Final = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """What one command did."""

    command: str
    """The command, as given to ``shell -c``."""
    exit_status: int
    """Its exit status; negative when a signal killed it (``-9``: SIGKILL, as after a timeout)."""
    stdout: str
    stderr: str
    duration: float
    """Seconds from start to exit (wall clock)."""
    timeout: float | None = None
    """The seconds it was allowed; None: no limit."""
    timed_out: bool = False
    """True when it ran past ``timeout`` and its process group was killed."""

    @property
    def ok(self) -> bool:
        """It exited by itself with status 0."""
        return self.exit_status == 0 and not self.timed_out

    def describe(self) -> str:
        """How it ended, for people: ``'make' exited with status 2``."""
        if self.timed_out:
            return f"{self.command!r} timed out after {self.timeout:g} s and was killed"
        if self.exit_status < 0:
            try:
                name = signal.Signals(-self.exit_status).name
            except ValueError:
                name = str(-self.exit_status)
            return f"{self.command!r} was killed by signal {name}"
        return f"{self.command!r} exited with status {self.exit_status}"

    def stderr_tail(self, limit: int = STDERR_TAIL) -> str:
        """The end of stderr, at most ``limit`` characters, with a mark when cut."""
        text = self.stderr.rstrip("\n")
        return text if len(text) <= limit else "…" + text[-limit:]


class Shell(Component):
    """Runs shell commands on this host, for other components or from its own ``commands``.

    Other components hold a LAZY link to it (``shell LAZY myShell;``) and ask::

        shell = self.context.attribute("shell")          # a ComponentRef
        result = shell.call(lambda s: s.run("virsh list --all"))

    ``run`` executes in the Shell's actor thread, so commands asked for this way run one at a
    time, in the order they were asked.

    Each command is run as ``[shell, "-c", command]``: the string is shell code, interpreted by
    the configured ``shell`` (nothing else parses it), so quote untrusted values with
    :func:`shlex.quote` before putting them in. It runs in ``dir`` with the System's environment
    plus ``env``, in a new session: a timeout (``timeout`` ms in the description, or ``run``'s
    ``timeout`` seconds) kills its whole process group with SIGKILL. When the command exits,
    whatever it left running in its group is killed too, and so is everything still running when
    the Shell terminates: a Shell runs commands, it does not host daemons.

    With ``commands`` (a vector of strings) the Shell runs them at start, one after another, in
    a thread of its own. The first that fails terminates the Shell abnormally, the record naming
    the command, its exit status and (as cause) the tail of its stderr; when all exited 0 and
    ``sfShouldTerminate`` is true, the Shell terminates normally.
    """

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._shell = DEFAULT_SHELL
        self._timeout = 0.0
        self._env: dict[str, str] | None = None
        self._dir: str | None = None
        self._commands: tuple[str, ...] = ()
        self._should_terminate = False
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._results: list[CommandResult] = []
        self._stopping = threading.Event()
        self._script: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def deploy(self) -> None:
        context = self.context
        where = ":".join(context.path)
        shell = context.typed_attribute("shell", str, DEFAULT_SHELL)
        assert isinstance(shell, str)
        if shutil.which(shell) is None:
            raise DeploymentError(f"{where}: shell {shell!r} is not an executable program; set shell to one that "
                                  "runs `shell -c command`, such as /bin/bash or /bin/sh")
        self._shell = shell
        timeout = context.typed_attribute("timeout", (int, float), 0)
        assert isinstance(timeout, int | float)
        if timeout < 0:
            raise DeploymentError(f"{where}: timeout is {timeout} ms; give 0 (no limit) or more")
        self._timeout = timeout / 1000
        self._env = _environment(where, context.attribute("env", None))
        directory = context.typed_attribute("dir", str, None)
        if directory is not None and not os.path.isdir(str(directory)):
            raise DeploymentError(f"{where}: dir {directory!r} is not a folder; create it or fix the path")
        self._dir = None if directory is None else str(directory)
        commands = context.typed_attribute("commands", list, [])
        assert isinstance(commands, list)
        for index, command in enumerate(commands):
            if not isinstance(command, str):
                raise DeploymentError(f"{where}: commands[{index}] is {command!r}; every command must be a string")
        self._commands = tuple(commands)
        should_terminate = context.typed_attribute("sfShouldTerminate", bool, False)
        self._should_terminate = bool(should_terminate)

    def start(self) -> None:
        if self._commands or self._should_terminate:
            # A thread of its own, so that the Shell's actor stays free to be terminated meanwhile.
            self._script = threading.Thread(target=self._run_commands, daemon=True,
                                            name=f"sd-actors-shell-{':'.join(self.context.path)}")
            self._script.start()

    def terminate(self, record: TerminationRecord) -> None:
        self._stopping.set()
        with self._lock:
            for process in self._processes:
                _kill_group(process)
        if self._script is not None and self._script is not threading.current_thread():
            self._script.join()

    # -- running commands ------------------------------------------------------------------------------
    @property
    def results(self) -> tuple[CommandResult, ...]:
        """What the description's ``commands`` did so far, in order."""
        with self._lock:
            return tuple(self._results)

    def _publish_groups(self) -> None:
        # Called with the lock held: the process groups running now, for the daemon's journal.
        self.context.set_resource(process_group_resource(p.pid for p in self._processes))

    def run(self, command: str, *, timeout: float | None = None, input: str | None = None) -> CommandResult:
        """Run ``command`` with ``shell -c`` and wait for it; return its exit status and output.

        :param command: shell code for the configured ``shell``; quote untrusted values with
            :func:`shlex.quote`.
        :param timeout: seconds it may run before its process group is killed; ``None``: the
            description's ``timeout``; 0 or less: no limit.
        :param input: text written to its stdin (then closed); ``None``: stdin is ``/dev/null``.
        :raises DeploymentError: when the Shell is terminating.
        """
        limit = self._timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + limit if limit > 0 else None
        with self._lock:
            if self._stopping.is_set():
                raise DeploymentError(f"{':'.join(self.context.path)} is terminating: {command!r} was not run")
            # Journal first: the process reads a first line of stdin before it becomes the command,
            # so its group is journaled (a daemon restarted after a crash finds and kills it)
            # before the command runs; the rest of stdin is the command's input.
            process = subprocess.Popen(
                [self._shell, "-c", _GATED, self._shell, command],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self._dir, env=self._env, start_new_session=True)
            self._processes.add(process)
            self._publish_groups()
        try:
            stdout, stderr, timed_out = self._communicate(process, b"go\n" + (b"" if input is None else input.encode()),
                                                          deadline)
        finally:
            with self._lock:
                self._processes.discard(process)
                # The leader has exited but is not reaped yet, so the group id still names this
                # group: kill whatever the command left behind, then reap.
                _kill_group(process)
                self._publish_groups()
            exit_status = process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        return CommandResult(command=command, exit_status=exit_status, stdout=stdout.decode(errors="replace"),
                             stderr=stderr.decode(errors="replace"), duration=time.monotonic() - started,
                             timeout=limit if limit > 0 else None, timed_out=timed_out)

    def _communicate(self, process: subprocess.Popen[bytes], data: bytes | None, deadline: float | None
                     ) -> tuple[bytes, bytes, bool]:
        """Feed stdin, collect stdout and stderr until the command exited and its pipes closed."""
        assert process.stdout is not None
        assert process.stderr is not None
        output = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
        stdout_fd, stderr_fd = process.stdout.fileno(), process.stderr.fileno()
        stdin_fd = process.stdin.fileno() if process.stdin is not None else -1
        timed_out = False
        killed = False
        exited_at: float | None = None
        pidfd = _pidfd(process.pid)
        pending = memoryview(data or b"")
        with selectors.DefaultSelector() as selector, contextlib.ExitStack() as cleanup:
            for fd in output:
                selector.register(fd, selectors.EVENT_READ)
            if pidfd is not None:
                cleanup.callback(os.close, pidfd)
                selector.register(pidfd, selectors.EVENT_READ)
            if process.stdin is not None:
                if pending:
                    selector.register(stdin_fd, selectors.EVENT_WRITE)
                else:
                    process.stdin.close()
            open_pipes = set(output)
            while open_pipes or exited_at is None:
                now = time.monotonic()
                if exited_at is None and _has_exited(process.pid):
                    exited_at = now
                    _kill_group(process)  # what it left running: its pipes then close
                    if pidfd is not None:
                        selector.unregister(pidfd)
                if exited_at is not None and (not open_pipes or now - exited_at > DRAIN_GRACE):
                    break
                if not killed and exited_at is None:
                    if deadline is not None and now >= deadline:
                        timed_out = killed = True
                    elif self._should_stop():
                        killed = True
                    if killed:
                        _kill_group(process)
                wait = TERMINATION_POLL
                if deadline is not None and not killed:
                    wait = min(wait, max(deadline - now, 0.0))
                for key, _ in selector.select(wait):
                    fd = int(key.fd)
                    if fd == pidfd:
                        continue  # the command exited: noticed at the top of the loop
                    if fd == stdin_fd:
                        pending = _feed(process, pending, selector)
                        continue
                    chunk = os.read(fd, _READ_CHUNK)
                    if chunk:
                        output[fd] += chunk
                    else:
                        selector.unregister(fd)
                        open_pipes.discard(fd)
            if process.stdin is not None and not process.stdin.closed:
                with contextlib.suppress(OSError):
                    process.stdin.close()
        return bytes(output[stdout_fd]), bytes(output[stderr_fd]), timed_out

    def _should_stop(self) -> bool:
        """The Shell or one of its ancestors is terminating (or the runtime gave up waiting for it)."""
        if self._stopping.is_set() or self.context.ref.abandoned:
            return True
        node: ComponentRef | None = self.context.ref
        while node is not None and node.path:
            if node.state is State.TERMINATING or (node.state is not None and node.state.is_final):
                return True
            node = node.parent
        return False

    def _run_commands(self) -> None:
        # Runs in the Shell's own thread: terminate_self only posts a message to the Shell's actor.
        total = len(self._commands)
        for index, command in enumerate(self._commands, 1):
            try:
                result = self.run(command)
            except DeploymentError:
                return  # terminating
            except OSError as error:
                self.context.terminate_self(self.context.record(
                    ABNORMAL, f"command {index} of {total} could not be started: {command!r}: {error}",
                    f"{type(error).__name__}: {error}"))
                return
            with self._lock:
                self._results.append(result)
            if self._stopping.is_set():
                return  # killed because the Shell is terminating: that termination has its own record
            if not result.ok:
                self.context.terminate_self(self.context.record(
                    ABNORMAL, f"command {index} of {total} failed: {result.describe()}",
                    result.stderr_tail() or None))
                return
        if self._should_terminate:
            self.context.terminate_self(self.context.record(
                NORMAL, f"{total} command{'s' if total != 1 else ''} exited with status 0"))


def _environment(where: str, value: object) -> dict[str, str] | None:
    """The daemon's environment plus the description's ``env`` (None: the daemon's own)."""
    if value is None:
        return None
    if not isinstance(value, ComponentDescription):
        raise DeploymentError(f"{where}: env must be a description of variables (env extends DATA {{ LANG \"C\"; }}), "
                              f"found {value!r}")
    extra: dict[str, str] = {}
    for name, setting in value.items():
        if isinstance(setting, bool) or not isinstance(setting, str | int | float):
            raise DeploymentError(f"{where}: env {name} is {setting!r}; give each variable a string or a number")
        extra[name] = str(setting)
    return {**os.environ, **extra}


def _feed(process: subprocess.Popen[bytes], pending: memoryview, selector: selectors.BaseSelector) -> memoryview:
    """Write the next piece of stdin; close it when all is written or the command stopped reading."""
    assert process.stdin is not None
    fd = process.stdin.fileno()
    try:
        written = os.write(fd, pending[:select.PIPE_BUF])
    except BrokenPipeError:
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(fd)
        process.stdin.close()
    return pending


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when ``pid`` exits (Linux 5.3+), or None: then we poll."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _has_exited(pid: int) -> bool:
    """True once ``pid`` has exited; it is left unreaped (WNOWAIT), so its group id stays its own."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


# Wait for the go (a first line on stdin), then become the command (same pid, same group).
_GATED: Final = 'read -r _; exec "$0" -c "$1"'


def process_group_resource(pids: Iterable[int]) -> str | None:
    """``process-group:PGID:STARTTIME …`` for the journal (start times tell a group from a reused id)."""
    groups = [f"process-group:{pid}:{_start_time(pid)}" for pid in sorted(pids)]
    return " ".join(groups) or None


def kill_leftover_groups(resource: str) -> list[int]:
    """After a daemon crash: SIGKILL the process groups a Shell recorded that still exist; their ids."""
    killed = []
    for item in resource.split():
        kind, _, rest = item.partition(":")
        pgid_text, _, started_text = rest.partition(":")
        if kind != "process-group" or not pgid_text.isdigit() or not started_text.isdigit():
            continue
        pgid, started = int(pgid_text), int(started_text)
        members = [pid for pid in _group_members(pgid) if _start_time(pid) >= started]
        if members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
                killed.append(pgid)
    # SIGKILL is delivered asynchronously: wait until they are gone, so that the re-deployed
    # command never runs beside its predecessor, not even for a moment.
    deadline = time.monotonic() + 10
    while killed and any(_alive(pid) for pgid in killed for pid in _group_members(pgid)) \
            and time.monotonic() < deadline:
        time.sleep(0.01)  # they are not our children: nothing to wait on but /proc
    return killed


def _alive(pid: int) -> bool:
    """Still running (a zombie has exited: it only waits for init to reap it)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return False
    return bool(fields) and fields[0] != "Z"


def _start_time(pid: int) -> int:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or 0."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 else 0


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group. Only while its leader is unreaped, so the id is still its own."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"sd_actors.plugins.Shell": Shell}

