"""A user at a terminal and the daemons they start: the real ``sd-actors`` script, in subprocesses.

Each :class:`User` has a HOME, XDG_CONFIG_HOME and XDG_STATE_HOME of its own, so nothing a test
does touches the keys, known daemons or state of the person running the tests (or of another
test). A :class:`DaemonProcess` is ``sd-actors daemon`` started the way a script would: it waits
for the readiness line on stdout, and its log (stderr) goes to a file the test can read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.hosts import LineReader

SD_ACTORS = Path(sys.executable).with_name("sd-actors")
START_TIMEOUT = 20.0
"""Seconds a daemon may take to print its readiness line (a loaded CI machine)."""
STOP_TIMEOUT = 15.0
"""Seconds a daemon may take to exit after SIGTERM."""
COMMAND_TIMEOUT = 30.0
"""Seconds any one command may run before the test gives up on it."""

_T = TypeVar("_T")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class User:
    """Someone typing ``sd-actors`` commands, with a home and XDG folders of their own."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def make(cls, folder: Path) -> User:
        folder.mkdir(parents=True, exist_ok=True)
        env = {name: value for name, value in os.environ.items() if not name.startswith("XDG_")}
        env.update(HOME=str(folder), XDG_CONFIG_HOME=str(folder / "config"), XDG_STATE_HOME=str(folder / "state"),
                   USER="tester", PYTHONUNBUFFERED="1")
        return cls(folder, env)

    @property
    def config_dir(self) -> Path:
        """Where ``sd-actors`` keeps the user's keys and known daemons."""
        return Path(self.env["XDG_CONFIG_HOME"]) / "sd-actors"

    @property
    def default_state_dir(self) -> Path:
        """Where a daemon started on first use keeps its state."""
        return Path(self.env["XDG_STATE_HOME"]) / "sd-actors"

    def run(self, *arguments: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run ``sd-actors ARGUMENTS`` to the end; never raises for a non-zero exit status."""
        return subprocess.run([str(SD_ACTORS), *arguments], capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)

    def start(self, *arguments: str) -> subprocess.Popen[str]:
        """Start ``sd-actors ARGUMENTS``, its stdout a pipe (read it with a LineReader)."""
        return subprocess.Popen([str(SD_ACTORS), *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env, stdin=subprocess.DEVNULL)

    def public_key(self, state_dir: Path | None = None) -> str:
        """``keys init`` (the user's, or a daemon's with ``state_dir``); return the public key."""
        result = self.run("keys", "init", *(("--state-dir", str(state_dir)) if state_dir else ()))
        assert result.returncode == 0, result.stderr
        match = re.search(r"public key: (\S+)", result.stdout)
        assert match, result.stdout
        return match.group(1)


class DaemonProcess:
    """``sd-actors daemon`` on ``127.0.0.1:port`` with ``state_dir``; restartable, stopped by SIGTERM."""

    def __init__(self, user: User, state_dir: Path, port: int, *options: str) -> None:
        self.user = user
        self.state_dir = state_dir
        self.port = port
        self.options = options
        self.log_path = state_dir.parent / f"{state_dir.name}.log"
        self.readiness = ""
        self.process: subprocess.Popen[str] | None = None

    @property
    def host(self) -> str:
        """What ``--host`` takes."""
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def public_key(self) -> str:
        return (self.state_dir / "curve.pub").read_text().strip()

    def start(self) -> DaemonProcess:
        """Start it and wait for its readiness line; fail with its log if it does not come."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [str(SD_ACTORS), "daemon", "--bind", self.endpoint, "--state-dir", str(self.state_dir),
                 *self.options], stdout=subprocess.PIPE, stderr=log, text=True, env=self.user.env,
                stdin=subprocess.DEVNULL)
        assert self.process.stdout is not None
        try:
            self.readiness = LineReader(self.process.stdout).read_line(timeout=START_TIMEOUT)
        except (TimeoutError, EOFError) as error:
            self.kill()
            raise AssertionError(f"the daemon did not announce it was ready ({error}); its log:\n{self.log()}") \
                from None
        return self

    def log(self) -> str:
        """Everything the daemon wrote to stderr so far (across restarts)."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> int:
        """SIGTERM, then its exit status; SIGKILL only if it does not exit within STOP_TIMEOUT."""
        assert self.process is not None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            status = -signal.SIGKILL
        _close(process)
        return status

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.process is None:
            return
        process, self.process = self.process, None
        process.kill()
        process.wait()
        _close(process)


def _close(process: subprocess.Popen[str]) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def running_daemon(user: User, state_dir: Path, port: int, *options: str) -> Iterator[DaemonProcess]:
    """A secured daemon ``user`` may talk to: its keys, the user's, authorized and trusted.

    On exit it is stopped with SIGTERM and must exit 0 (whichever process runs by then: a test
    may kill and restart it).
    """
    daemon = DaemonProcess(user, state_dir, port, *options)
    daemon_key = user.public_key(state_dir)
    user_key = user.public_key()
    # "--": a Z85 key may begin with "-" (see the test of that in test_daemon_cli.py).
    authorized = user.run("keys", "authorize", "--state-dir", str(state_dir), "--", user_key)
    assert authorized.returncode == 0, authorized.stderr
    trusted = user.run("keys", "trust", "--", daemon.host, daemon_key)
    assert trusted.returncode == 0, trusted.stderr
    daemon.start()
    try:
        yield daemon
    finally:
        if daemon.process is not None:
            status = daemon.stop()
            assert status == 0, f"the daemon exited with {status} after SIGTERM; its log:\n{daemon.log()}"


def wait_for_process_exit(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` (not necessarily a child) has exited; False after ``timeout`` s."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], timeout)
        return bool(readable)
    finally:
        os.close(descriptor)


def eventually(check: Callable[[], _T | None], *, timeout: float, what: str) -> _T:
    """Call ``check`` (a command, so each call takes a while) until it returns something truthy.

    :raises AssertionError: naming ``what`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    last: _T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
    raise AssertionError(f"{what}: still not so after {timeout:g} s (last: {last!r})")


def json_of(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def processes_running(*argv: str) -> list[int]:
    """The pids of the processes whose command line is exactly ``argv``."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted:
                    found.append(int(entry.name))
            except OSError:
                continue  # it exited meanwhile
    return found
