"""The commands that talk to daemons: daemon, keys, up, down, status, ls, hosts.

Only ``sd-actors daemon`` needs the runtime (pykka, the journal, the plugins): it imports the daemon
when it runs, so that the commands that merely talk to one start in a fraction of the time.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from sd_actors.actors._record_info import to_record
from sd_actors.descriptions import ComponentDescription, encode_description, parse_file
from sd_actors.net import (
    KeyPair,
    MessageRegistry,
    WireError,
    authorize,
    insecure_warning,
    load_keypair,
    load_or_create_keypair,
    parse_key,
    user_config_folder,
)
from sd_actors.net._node import Client
from sd_actors.net._protocol import (
    DEFAULT_PORT,
    KNOWN_DAEMONS_FILE,
    READY_FILE,
    ApplicationTerminated,
    DeployAccepted,
    DeployApplication,
    GetHosts,
    GetStatus,
    HostsReply,
    LifecycleNotice,
    LifecycleNotices,
    RecordInfo,
    RequestFailed,
    StatusReply,
    TerminateApplication,
    WatchEnded,
    default_state_dir,
    known_daemon_key,
    make_client_registry,
)

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
REQUEST_TIMEOUT = 10.0


class CommandError(Exception):
    """A command cannot do its job; the message says why and what to do (exit status ``code``)."""

    def __init__(self, message: str, code: int = EXIT_UNREACHABLE) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------- daemon
def run_daemon(arguments: argparse.Namespace, out: TextIO) -> int:
    # Imported here, not above: the other commands do without the runtime (see the module's docstring).
    from sd_actors.actors._daemon import DaemonSettings, open_daemon
    from sd_actors.actors._errors import DeploymentError
    from sd_actors.actors.console import open_daemon_console

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bind = endpoint_of(arguments.bind)
    address = bind.split("://")[-1].rsplit(":", 1)[0]
    # A daemon is named by the address it listens on, unless that is only the loopback.
    import socket  # here: the commands that only talk to a daemon do without it

    host = socket.gethostname() if address in ("127.0.0.1", "localhost", "*", "0.0.0.0") else address  # noqa: S104 (a comparison, not a bind)
    settings = DaemonSettings(bind=bind, host=host, state_dir=Path(arguments.state_dir),
                              peers=tuple(endpoint_of(p) for p in arguments.peer), hypervisor=arguments.hypervisor,
                              insecure=arguments.insecure, heartbeat_interval=arguments.heartbeat_interval,
                              suspect_after=arguments.suspect_after, dead_after=arguments.dead_after,
                              plugins=tuple(arguments.plugin))
    if arguments.insecure:
        print(insecure_warning(settings.bind), file=sys.stderr)
    stop = threading.Event()
    # Signal handlers belong to the command line, never to the embeddable System or Daemon.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open_daemon(settings) as daemon:
            _tune_garbage_collector()
            print(daemon.announce_ready(), file=out, flush=True)
            with open_daemon_console(daemon, getattr(arguments, "console", None), out):
                while not stop.is_set() and not daemon.stopped.is_set():
                    stop.wait(0.5)
            logging.getLogger(__name__).info("stopping")
    except DeploymentError as error:
        print(f"sd-actors daemon: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


# ------------------------------------------------------------------------------------- keys
def _tune_garbage_collector() -> None:
    """For a long-running daemon: what it loaded to start is never garbage, so the collector stops
    scanning it (``gc.freeze``), and it collects young objects after 20,000 allocations, not 700:
    1,000 VMs brought up allocate a few hundred thousand objects, and with Python's defaults the
    full collections during one ``up`` scan the whole heap several times (tens of ms)."""
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def run_keys(arguments: argparse.Namespace, out: TextIO) -> int:
    folder = Path(arguments.state_dir) if arguments.state_dir else user_config_folder()
    if arguments.keys_command == "init":
        keypair = load_or_create_keypair(folder)
        print(f"keys in {folder}; public key: {keypair.public.decode()}", file=out)
        print("authorize it on a daemon with: sd-actors keys authorize "
              f"{keypair.public.decode()} --state-dir DAEMON_STATE_DIR", file=out)
    elif arguments.keys_command == "authorize":
        entry = authorize(folder, arguments.public_key, arguments.label or "")
        print(f"authorized {entry.public.decode()} in {folder}", file=out)
    elif arguments.keys_command == "trust":
        trust_daemon(endpoint_of(arguments.endpoint), arguments.public_key,
                     Path(arguments.state_dir) if arguments.state_dir else None)
        print(f"trusting {endpoint_of(arguments.endpoint)} with key {arguments.public_key}", file=out)
    else:
        keypair = load_keypair(folder)
        print(keypair.public.decode(), file=out)
    return 0


def trust_daemon(endpoint: str, public_key: str, folder: Path | None = None) -> None:
    """Remember ``endpoint``'s public key: the user's (default), or a daemon's state folder (its peers)."""
    parse_key(public_key, source="the daemon's public key")
    folder = folder or user_config_folder()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / KNOWN_DAEMONS_FILE
    lines = [line for line in (path.read_text().splitlines() if path.exists() else [])
             if line.split()[:1] != [endpoint]]
    lines.append(f"{endpoint} {public_key}")
    path.write_text("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------- connecting
def endpoint_of(host: str | None) -> str:
    """``host``, ``host:port`` or ``tcp://host:port`` as a ZeroMQ endpoint (port 3800 by default)."""
    if not host:
        return f"tcp://127.0.0.1:{DEFAULT_PORT}"
    if "://" in host:
        return host
    if ":" in host:
        return f"tcp://{host}"
    return f"tcp://{host}:{DEFAULT_PORT}"


def _known_key(endpoint: str, state_dir: Path) -> str | None:
    known = known_daemon_key(user_config_folder(), endpoint)
    if known is not None:
        return known
    ready = _ready_info(state_dir)
    if ready and ready.get("endpoint") == endpoint:
        key = ready.get("public_key")
        return key if isinstance(key, str) else None
    return None


def _ready_info(state_dir: Path) -> dict[str, object] | None:
    try:
        info = json.loads((state_dir / READY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


@contextmanager
def connect(arguments: argparse.Namespace, out: TextIO, *, registry: MessageRegistry | None = None
            ) -> Iterator[Client]:
    """A client of the daemon the arguments name; with none named and none running, start one.

    :param registry: the messages it sends and understands; by default every message (a plugin's
        command may send a policy's); this module's commands give the command line's alone.
    """
    endpoint = endpoint_of(arguments.host)
    state_dir = Path(arguments.state_dir) if arguments.state_dir else default_state_dir()
    insecure = bool(arguments.insecure)
    if not arguments.host and _ready_info(state_dir) is None and getattr(arguments, "start_daemon", False):
        _start_local_daemon(state_dir, endpoint, insecure=insecure, out=out)
    keypair: KeyPair | None = None
    server_key: str | None = None
    if not insecure:
        keypair = load_or_create_keypair(user_config_folder())
        server_key = arguments.server_key or _known_key(endpoint, state_dir)
        if server_key is None:
            raise CommandError(f"the public key of the daemon at {endpoint} is unknown: run "
                               f"'sd-actors keys trust {endpoint} DAEMON_PUBLIC_KEY' or pass --server-key")
    if registry is None:
        from sd_actors.net._peer_protocol import make_registry

        registry = make_registry()
    client = Client(endpoint, registry=registry, keypair=keypair, server_public=server_key)
    try:
        yield client
    finally:
        client.close()


def _start_local_daemon(state_dir: Path, endpoint: str, *, insecure: bool, out: TextIO) -> None:
    """The first command a newcomer types works: keys, trust and a daemon in the background."""
    if not insecure:
        daemon_keys = load_or_create_keypair(state_dir)
        user_keys = load_or_create_keypair(user_config_folder())
        authorize(state_dir, user_keys.public.decode(), f"{os.environ.get('USER', 'user')} (local)")
        del daemon_keys
    log = state_dir / "daemon.log"
    command = [sys.executable, "-c", "import sys; from sd_actors.actors._cli import main; sys.exit(main(sys.argv[1:]))",
               "daemon", "--bind", endpoint, "--state-dir", str(state_dir)]
    if insecure:
        command.append("--insecure")
    import subprocess  # here: only the first command on a new machine starts a daemon

    with log.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file, start_new_session=True,
                                   stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    process.stdout.close()
    if "ready" not in line:
        raise CommandError(f"could not start a daemon on {endpoint}; see its log: {log}")
    print(f"started a daemon in the background on {endpoint} (pid {process.pid}); state in {state_dir}, "
          f"log in {log}", file=out)


def _short_timeout(arguments: argparse.Namespace) -> float:
    """The wait for a quick question (status, ls, hosts): --timeout if given, else 10 s."""
    return float(arguments.timeout) if arguments.timeout is not None else REQUEST_TIMEOUT


def _long_timeout(arguments: argparse.Namespace) -> float:
    """The wait between answers of a long request (up, down): --timeout if given, else 600 s."""
    return float(arguments.timeout) if arguments.timeout is not None else 600.0


def _request(client: Client, message: object, timeout: float = REQUEST_TIMEOUT) -> object:
    try:
        reply = client.request(message, timeout=timeout)
    except TimeoutError:
        raise CommandError(f"no answer from the daemon at {client.endpoint} within {timeout:g} s: is it running, "
                           "and does it know your key ('sd-actors keys authorize' on its host)?") from None
    if isinstance(reply, RequestFailed):
        raise CommandError(reply.error + (f"\nhint: {reply.hint}" if reply.hint else ""), EXIT_FAILED)
    return reply


def _record_text(record: RecordInfo | None) -> str:
    return "" if record is None else str(to_record(record, ()))


# ------------------------------------------------------------------------------------- up / down
def load_description(arguments: argparse.Namespace) -> ComponentDescription:
    return parse_file(arguments.file, include_dirs=arguments.include_dirs, properties=dict(arguments.properties),
                      overrides=dict(arguments.overrides))


def app_name(arguments: argparse.Namespace, config: ComponentDescription) -> str:
    if arguments.name:
        return str(arguments.name)
    named = config.get("sfProcessComponentName")
    return named if isinstance(named, str) and named else Path(arguments.file).stem


def run_up(arguments: argparse.Namespace, out: TextIO) -> int:
    config = load_description(arguments)  # description errors before anything is contacted
    name = app_name(arguments, config)
    if arguments.dry_run:
        print(f"would deploy {name!r} to {endpoint_of(arguments.host)}:", file=out)
        for depth, path, cd in _walk(config, (name,)):
            host = cd.get("sfProcessHost")
            where = f"on {host}" if isinstance(host, str) else "on the daemon"
            print(f"  {'  ' * depth}{path[-1]}  {cd.get('sfClass', '(data)')}  {where}", file=out)
        return 0
    with connect(arguments, out, registry=make_client_registry()) as client:
        return _deploy_and_follow(client, name, config, out, _long_timeout(arguments), settle=arguments.settle)


def _deploy_and_follow(client: Client, name: str, config: ComponentDescription, out: TextIO, timeout: float,
                       *, settle: float = 0.0) -> int:
    """Send the deployment and show its progress, component by component, until it is up or failed."""
    started = time.monotonic()
    # Components by path: the root of a subtree on another host is told of by both daemons.
    started_paths: set[tuple[str, ...]] = set()
    ended_paths: set[tuple[str, ...]] = set()
    all_started: float | None = None
    update = ""
    # The tree alone: the daemon decodes it (no parsing) and journals it (the text it writes itself, later).
    request = DeployApplication(app=name, description="", tree=encode_description(config),
                                requested_by=os.environ.get("USER", ""), settle=settle)
    try:
        for answer in client.stream(request, timeout=timeout, end=(WatchEnded, RequestFailed),
                                    first_timeout=min(timeout, REQUEST_TIMEOUT)):
            elapsed = time.monotonic() - started
            if isinstance(answer, DeployAccepted):
                if answer.already_running:
                    print(f"{name} is already running on {answer.host}: nothing created (sd-actors status {name})",
                          file=out)
                    return 0
                update = answer.update
                doing = f"updating {name} ({update})" if update else f"deploying {name}"
                print(f"{doing} on {answer.host} ({client.endpoint})", file=out, flush=True)
            elif isinstance(answer, LifecycleNotice | LifecycleNotices):
                # Several notices a frame (LifecycleNotice alone from an older daemon): one write each.
                notices = answer.notices if isinstance(answer, LifecycleNotices) else (answer,)
                lines = []
                for notice in notices:
                    if notice.new == "started":
                        started_paths.add(notice.path)
                        all_started = elapsed  # what "up" took to the last start; --settle watched longer
                    elif notice.new == "terminated":
                        ended_paths.add(notice.path)
                    lines.append(_progress_line(elapsed, notice))
                out.write("".join(lines))
                out.flush()
            elif isinstance(answer, WatchEnded):
                if answer.state == "started" and update:
                    print(f"{name} is updated: {len(started_paths)} components started, {len(ended_paths)} terminated "
                          f"in {elapsed:.2f} s", file=out)
                    return 0
                if answer.state == "started":
                    print(f"{name} is up: {len(started_paths)} components started in {all_started or elapsed:.2f} s",
                          file=out)
                    return 0
                if answer.state == "terminated":
                    print(f"{name} started and has already ended normally: {_record_text(answer.record)}", file=out)
                    return 0
                print(f"{name} failed: {_record_text(answer.record)}", file=out)
                return EXIT_FAILED
            elif isinstance(answer, RequestFailed):
                raise CommandError(answer.error + (f"\nhint: {answer.hint}" if answer.hint else ""), EXIT_FAILED)
    except TimeoutError:
        raise CommandError(f"no answer from the daemon at {client.endpoint} in time: is it running, and does it "
                           f"know your key? If the deployment started, it goes on: sd-actors status {name}"
                           ) from None
    return EXIT_FAILED


def _progress_line(elapsed: float, notice: LifecycleNotice) -> str:
    extra = f"  {_record_text(notice.record)}" if notice.record and notice.new == "failed" else ""
    return f"  {elapsed:6.2f}s  {':'.join(notice.path):40s} {notice.new:11s} {notice.host}{extra}\n"


def _walk(cd: ComponentDescription, path: tuple[str, ...], depth: int = 0
          ) -> Iterator[tuple[int, tuple[str, ...], ComponentDescription]]:
    yield depth, path, cd
    for key, value in cd.items():
        if isinstance(value, ComponentDescription) and value.eager and "sfClass" in value:
            yield from _walk(value, (*path, key), depth + 1)


def run_down(arguments: argparse.Namespace, out: TextIO) -> int:
    with connect(arguments, out, registry=make_client_registry()) as client:
        reply = _request(client, TerminateApplication(app=arguments.app, wait=arguments.wait),
                         _long_timeout(arguments))
        assert isinstance(reply, ApplicationTerminated)
        text = _record_text(reply.record)
        print(f"{arguments.app} terminated" + (f": {text}" if text else " (terminating)"), file=out)
    return 0


# ------------------------------------------------------------------------------------- status
def run_status(arguments: argparse.Namespace, out: TextIO) -> int:
    with connect(arguments, out, registry=make_client_registry()) as client:
        reply = _request(client, GetStatus(app=arguments.app or ""), _short_timeout(arguments))
    assert isinstance(reply, StatusReply)
    if arguments.app and not reply.applications:
        raise CommandError(f"no application named {arguments.app!r} on {reply.host}; see sd-actors ls", EXIT_FAILED)
    if arguments.json:
        json.dump(_status_json(reply), out, indent=2)
        out.write("\n")
        return 0
    for app in reply.applications:
        print(f"{app.name}  {app.status}  on {app.host}", file=out)
        for component in app.components:
            indent = "  " * len(component.path)
            record = f"  {_record_text(component.record)}" if component.state == "failed" else ""
            name = f"{indent}{component.path[-1]}"
            print(f"{name:34s} {component.state:11s} {component.host:20s} {component.component_class}{record}",
                  file=out)
        if app.record and app.status in ("failed", "terminated"):
            print(f"  last record: {_record_text(app.record)}", file=out)
    return 0


def _status_json(reply: StatusReply) -> dict[str, object]:
    def record(info: RecordInfo | None) -> dict[str, object] | None:
        return None if info is None else {"kind": info.kind, "description": info.description,
                                          "path": list(info.path), "cause": info.cause}

    return {"host": reply.host, "applications": [
        {"name": app.name, "status": app.status, "host": app.host, "updated": app.updated, "record": record(app.record),
         "components": [{"path": list(c.path), "state": c.state, "host": c.host, "class": c.component_class,
                         "liveness": c.liveness, "record": record(c.record)} for c in app.components]}
        for app in reply.applications]}


def run_ls(arguments: argparse.Namespace, out: TextIO) -> int:
    with connect(arguments, out, registry=make_client_registry()) as client:
        reply = _request(client, GetStatus(app=""), _short_timeout(arguments))
    assert isinstance(reply, StatusReply)
    if arguments.json:
        json.dump([{"name": a.name, "status": a.status, "host": a.host, "updated": a.updated}
                   for a in reply.applications], out, indent=2)
        out.write("\n")
        return 0
    if not reply.applications:
        print(f"no applications on {reply.host}", file=out)
    for app in reply.applications:
        print(f"{app.name:30s} {app.status:12s} {app.host}", file=out)
    return 0


def run_hosts(arguments: argparse.Namespace, out: TextIO) -> int:
    with connect(arguments, out, registry=make_client_registry()) as client:
        reply = _request(client, GetHosts(), _short_timeout(arguments))
    assert isinstance(reply, HostsReply)
    if arguments.json:
        json.dump([{"address": h.address, "state": h.state, "last_heard": h.last_heard, "self": h.is_self}
                   for h in reply.hosts], out, indent=2)
        out.write("\n")
        return 0
    now = time.time()
    for host in reply.hosts:
        heard = "now" if host.is_self else "never" if host.last_heard is None else \
            f"{max(now - host.last_heard, 0):.1f} s ago"
        print(f"{host.address:32s} {host.state:8s} heard {heard}{'  (this daemon)' if host.is_self else ''}",
              file=out)
    # Every daemon listed counts, dead and unheard ones too: each may only be cut off.
    print(f"a majority is {len(reply.hosts) // 2 + 1} of these {len(reply.hosts)}", file=out)
    return 0


__all__ = ["CommandError", "WireError", "run_daemon", "run_down", "run_hosts", "run_keys", "run_ls", "run_status",
           "run_up"]
