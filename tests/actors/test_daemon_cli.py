"""The daemon and its command line as a user types them: real ``sd-actors`` processes on real sockets.

Every test has its own HOME and XDG folders (keys, known daemons, state) and its own port; the
daemon fixture makes the keys the way the README says (``keys init`` for the daemon and the user,
``keys authorize``, ``keys trust``), waits for the readiness line and stops the daemon with
SIGTERM, which it must obey with exit status 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from sd_actors.actors._daemon import DEFAULT_PORT, make_registry
from sd_actors.descriptions import encode_description, parse_file, to_sf
from sd_actors.net import load_keypair
from sd_actors.net._protocol import GetStatus, StatusReply
from sd_actors.net._wire import DEFAULT_MAX_FRAME_SIZE
from tests.actors.daemon_helpers import (
    DaemonProcess,
    User,
    eventually,
    free_port,
    json_of,
    processes_running,
    running_daemon,
    wait_for_process_exit,
)
from tests.hosts import LineReader

HEADER = '#include "org/smartfrog/components.sf"\n#include "org/smartfrog/services/shellscript/components.sf"\n\n'

WEB = HEADER + """sfConfig extends Compound {
    front extends Prim;
    back extends Compound {
        db extends Prim;
        cache extends Prim;
    }
    tools extends Shell;
}
"""
WEB_PATHS = ["web", "web:front", "web:back", "web:back:db", "web:back:cache", "web:tools"]

BROKEN_COMMAND = HEADER + """sfConfig extends Compound {
    front extends Prim;
    broken extends Shell {
        commands ["exit 3"];
        sfShouldTerminate true;
    }
}
"""

BROKEN_DIRECTORY = HEADER + """sfConfig extends Compound {
    front extends Prim;
    broken extends Shell {
        dir "/nonexistent/folder";
    }
}
"""

PROGRESS_LINE = r"^\s+\d+\.\d\ds\s+{path}\s+{state}\s+\S+"


@pytest.fixture
def user(tmp_path: Path) -> User:
    return User.make(tmp_path / "alice")


@pytest.fixture
def daemon(user: User, tmp_path: Path) -> Iterator[DaemonProcess]:
    with running_daemon(user, tmp_path / "daemon-state", free_port()) as started:
        yield started


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def applications(user: User, daemon: DaemonProcess) -> list[dict[str, Any]]:
    status = json_of(user.run("status", "--json", "--host", daemon.host))
    assert isinstance(status, dict)
    return list(status["applications"])


def component_paths(application: dict[str, Any]) -> list[str]:
    return [":".join(component["path"]) for component in application["components"]]


def all_started(user: User, daemon: DaemonProcess, app: str, count: int) -> dict[str, Any] | None:
    """``app``'s status once it runs with ``count`` components, all started; else None."""
    for application in applications(user, daemon):
        if application["name"] == app and len(application["components"]) == count and all(
                component["state"] == "started" for component in application["components"]):
            return application
    return None


# ------------------------------------------------------------------------------ up, status, ls, down
def test_up_shows_each_component_starting_then_status_and_ls_show_the_running_application(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)

    up = user.run("up", str(web), "--host", daemon.host)
    status = user.run("status", "web", "--host", daemon.host)
    ls = user.run("ls", "--host", daemon.host)

    assert up.returncode == 0, up.stderr
    assert re.match(rf"deploying web on \S+ \({re.escape(daemon.endpoint)}\)\n", up.stdout), up.stdout
    for path in WEB_PATHS:
        assert re.search(PROGRESS_LINE.format(path=re.escape(path), state="started"), up.stdout, re.MULTILINE), \
            f"no progress line for {path}:\n{up.stdout}"
    assert re.search(r"^web is up: 6 components started in \d+\.\d\d s$", up.stdout, re.MULTILINE), up.stdout
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert re.match(r"^web\s+running\s+on \S+$", lines[0]), status.stdout
    assert [line.split()[:2] for line in lines[1:]] == [
        ["web", "started"], ["front", "started"], ["back", "started"], ["db", "started"], ["cache", "started"],
        ["tools", "started"]], status.stdout
    assert "sd_actors.plugins.Shell" in lines[-1]
    assert ls.returncode == 0, ls.stderr
    assert [line.split()[:2] for line in ls.stdout.splitlines()] == [["web", "running"]]


def test_down_terminates_the_application_exits_0_and_ls_shows_it_terminated(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    assert user.run("up", str(web), "--host", daemon.host).returncode == 0

    down = user.run("down", "web", "--host", daemon.host)
    ls = user.run("ls", "--host", daemon.host)

    assert down.returncode == 0, down.stderr
    assert down.stdout.strip() == "web terminated: normal termination of web: terminated on request (sd-actors down)"
    assert [line.split()[:2] for line in ls.stdout.splitlines()] == [["web", "terminated"]]


def test_up_of_a_running_application_says_it_is_already_running_and_creates_nothing(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    assert user.run("up", str(web), "--host", daemon.host).returncode == 0
    before = applications(user, daemon)

    again = user.run("up", str(web), "--host", daemon.host)

    assert again.returncode == 0, again.stderr
    assert re.fullmatch(r"web is already running on \S+: nothing created \(sd-actors status web\)\n", again.stdout)
    after = applications(user, daemon)
    assert [a["name"] for a in after] == ["web"]
    assert component_paths(after[0]) == component_paths(before[0]) == WEB_PATHS


def test_status_ls_and_hosts_print_json_with_the_fields_scripts_use(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    assert user.run("up", str(web), "--host", daemon.host).returncode == 0

    status = json_of(user.run("status", "--json", "--host", daemon.host))
    ls = json_of(user.run("ls", "--json", "--host", daemon.host))
    hosts = json_of(user.run("hosts", "--json", "--host", daemon.host))

    assert isinstance(status, dict)
    assert {"host", "applications"} <= status.keys()
    [app] = status["applications"]
    assert {"name", "status", "host", "updated", "record", "components"} <= app.keys()
    assert (app["name"], app["status"], app["record"]) == ("web", "running", None)
    assert component_paths(app) == WEB_PATHS
    for component in app["components"]:
        assert {"path", "state", "host", "class", "liveness", "record"} <= component.keys()
        assert component["state"] == "started"
    assert app["components"][-1]["class"] == "sd_actors.plugins.Shell"
    assert isinstance(ls, list)
    assert [{k: entry[k] for k in ("name", "status", "host")} for entry in ls] == [
        {"name": "web", "status": "running", "host": app["host"]}]
    assert isinstance(ls[0]["updated"], float)
    assert isinstance(hosts, list)
    [me] = [entry for entry in hosts if entry["self"]]
    assert {"address", "state", "last_heard", "self"} <= me.keys()
    assert me["state"] == "alive"
    assert me["address"] == daemon.endpoint or me["address"].endswith(f":{daemon.port}")


def test_down_or_status_of_an_unknown_application_exits_1_and_points_to_ls(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    assert user.run("up", str(web), "--host", daemon.host).returncode == 0

    down = user.run("down", "wbe", "--host", daemon.host)
    status = user.run("status", "wbe", "--host", daemon.host)

    assert down.returncode == 1
    assert "sd-actors down: no application named 'wbe'" in down.stderr
    assert "hint: running here: web; see sd-actors ls" in down.stderr
    assert status.returncode == 1
    assert re.fullmatch(r"sd-actors status: no application named 'wbe' on \S+; see sd-actors ls\n", status.stderr)
    assert [a["status"] for a in applications(user, daemon)] == ["running"]  # nothing else happened
    assert user.run("down", "web", "--host", daemon.host).returncode == 0
    after = user.run("down", "wbe", "--host", daemon.host)
    assert "hint: running here: none; see sd-actors ls" in after.stderr  # web has ended: not running


def test_a_description_error_exits_2_before_any_daemon_is_contacted(user: User, tmp_path: Path) -> None:
    broken = write(tmp_path, "web.sf", 'sfConfig extends Compund {\n    front extends Prim;\n}\n')

    up = user.run("up", str(broken), "--host", "nowhere.invalid:1")

    assert up.returncode == 2
    assert up.stderr.startswith(f"{broken}:1:18: prototype 'Compund' not found"), up.stderr
    assert "hint:" in up.stderr
    assert "daemon" not in up.stderr  # neither "no answer from the daemon" nor a key problem
    assert up.stdout == ""
    assert not user.config_dir.exists()  # not even keys were made to connect


def test_up_dry_run_prints_what_would_be_created_where_and_contacts_nothing(user: User, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB.replace("    back extends Compound {",
                                                '    back extends Compound {\n        sfProcessHost "h2";'))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]

        dry = user.run("up", str(web), "--dry-run", "--host", f"127.0.0.1:{port}")

        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would deploy 'web' to tcp://127.0.0.1:{port}:",
        "  web  sd_actors.actors.Compound  on the daemon",
        "    front  sd_actors.actors.Prim  on the daemon",
        "    back  sd_actors.actors.Compound  on h2",
        "      db  sd_actors.actors.Prim  on the daemon",
        "      cache  sd_actors.actors.Prim  on the daemon",
        "    tools  sd_actors.plugins.Shell  on the daemon",
    ]
    assert not user.config_dir.exists()


def test_a_component_that_fails_to_deploy_makes_up_exit_1_with_its_record(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.sf", BROKEN_DIRECTORY)

    up = user.run("up", str(broken), "--host", daemon.host)

    assert up.returncode == 1
    assert re.search(PROGRESS_LINE.format(path="broken:broken", state="failed"), up.stdout, re.MULTILINE), up.stdout
    assert ("broken failed: abnormal termination of broken:broken: deploy failed: broken:broken: dir "
            "'/nonexistent/folder' is not a folder") in up.stdout
    assert "mark_terminated" not in up.stderr


def test_a_shell_whose_command_fails_at_start_makes_up_exit_1_with_its_record(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.sf", BROKEN_COMMAND)

    up = user.run("up", str(broken), "--host", daemon.host)

    assert up.returncode == 1, up.stdout
    assert "is up" not in up.stdout
    assert ("broken failed: abnormal termination of broken:broken: command 1 of 1 failed: 'exit 3' exited with "
            "status 3") in up.stdout


def test_an_application_that_ends_normally_right_after_start_makes_up_say_so_and_exit_0(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    done = write(tmp_path, "done.sf", BROKEN_COMMAND.replace('"exit 3"', '"true"'))

    up = user.run("up", str(done), "--host", daemon.host)

    assert up.returncode == 0, up.stdout + up.stderr
    assert "done started and has already ended normally: normal termination of done:broken" in up.stdout


# ------------------------------------------------------------------------------ the newcomer's first command
@pytest.fixture
def default_port_free() -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            pytest.skip(f"port {DEFAULT_PORT} is taken: a daemon started on first use always listens there")


@pytest.mark.usefixtures("default_port_free")
def test_the_first_up_with_no_daemon_running_starts_one_in_the_background_and_says_where_its_state_and_log_are(
        user: User, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    pid: int | None = None
    try:
        up = user.run("up", str(web))
        started = re.search(r"started a daemon in the background on (\S+) \(pid (\d+)\); state in (\S+), log in "
                            r"(\S+)$", up.stdout, re.MULTILINE)
        if started:
            pid = int(started.group(2))
        status = user.run("status", "web")

        assert up.returncode == 0, up.stderr
        assert started, up.stdout
        assert started.group(1) == f"tcp://127.0.0.1:{DEFAULT_PORT}"
        assert Path(started.group(3)) == user.default_state_dir
        assert Path(started.group(4)) == user.default_state_dir / "daemon.log"
        assert Path(started.group(4)).exists()
        ready = json.loads((user.default_state_dir / "daemon.json").read_text())
        assert ready["pid"] == pid
        assert "web is up: 6 components started" in up.stdout
        assert status.returncode == 0, status.stderr
        assert re.match(r"^web\s+running\s+on ", status.stdout)
    finally:
        if pid is None and (user.default_state_dir / "daemon.json").exists():
            pid = json.loads((user.default_state_dir / "daemon.json").read_text())["pid"]
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            stopped = wait_for_process_exit(pid, 15)
            if not stopped:
                os.kill(pid, signal.SIGKILL)
            assert stopped, f"the background daemon (pid {pid}) did not stop after SIGTERM"
    assert not (user.default_state_dir / "daemon.json").exists()  # it cleaned up after itself


# ------------------------------------------------------------------------------ security
def test_a_daemon_told_to_load_a_plugin_it_cannot_import_refuses_to_start_naming_it(
        user: User, tmp_path: Path) -> None:
    daemon = user.run("daemon", "--bind", f"tcp://127.0.0.1:{free_port()}", "--state-dir", str(tmp_path / "s"),
                      "--insecure", "--plugin", "mycompany.no_such_policies")

    assert daemon.returncode == 3
    assert daemon.stdout == ""  # never announced ready
    assert "--plugin mycompany.no_such_policies: cannot import it (ModuleNotFoundError" in daemon.stderr
    assert "PYTHONPATH" in daemon.stderr


def test_a_daemon_without_keys_refuses_to_start_and_says_how_to_make_them(user: User, tmp_path: Path) -> None:
    state = tmp_path / "daemon-state"

    daemon = user.run("daemon", "--bind", f"tcp://127.0.0.1:{free_port()}", "--state-dir", str(state))

    assert daemon.returncode == 3
    assert daemon.stdout == ""  # never announced ready
    assert f"sd-actors keys init --state-dir {state}" in daemon.stderr
    assert "--insecure" in daemon.stderr
    assert not (state / "daemon.json").exists()
    assert not (state / "curve.key").exists()  # it does not make keys behind the user's back


def test_an_insecure_daemon_warns_loudly_on_stderr_and_serves_insecure_clients(user: User, tmp_path: Path) -> None:
    daemon = DaemonProcess(user, tmp_path / "daemon-state", free_port(), "--insecure").start()
    try:
        ls = user.run("ls", "--insecure", "--host", daemon.host)
    finally:
        status = daemon.stop()

    assert status == 0
    assert "WARNING: --insecure: security is OFF" in daemon.log()
    assert "anyone who can reach this port" in daemon.log()
    assert ls.returncode == 0, ls.stderr
    assert ls.stdout.startswith("no applications on ")


def test_a_client_whose_key_is_not_authorized_gets_no_answer_and_the_daemon_logs_the_refusal(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    stranger = User.make(tmp_path / "mallory")
    stranger_key = stranger.public_key()
    assert stranger.run("keys", "trust", "--", daemon.host, daemon.public_key).returncode == 0
    web = write(tmp_path, "web.sf", WEB)

    up = stranger.run("up", str(web), "--host", daemon.host, "--timeout", "1.5")

    assert up.returncode == 3
    assert "no answer from the daemon" in up.stderr
    assert "deploying" not in up.stdout
    refusals = [line for line in daemon.log().splitlines() if "refused CURVE client" in line]
    assert refusals, daemon.log()
    assert all(stranger_key in line for line in refusals)
    assert applications(user, daemon) == []  # nothing happened


@pytest.fixture
def key_beginning_with_a_dash() -> str:
    """A public key as Z85 can write it (its alphabet has "-"): about one key in 85 begins so."""
    while True:
        public, _ = zmq.curve_keypair()
        if public.startswith(b"-"):
            return public.decode()


def test_a_public_key_that_begins_with_a_dash_is_authorized_and_trusted_as_keys_init_says(
        user: User, tmp_path: Path, key_beginning_with_a_dash: str) -> None:
    state = tmp_path / "daemon-state"
    state.mkdir()

    authorized = user.run("keys", "authorize", key_beginning_with_a_dash, "--state-dir", str(state))
    trusted = user.run("keys", "trust", "127.0.0.1:3801", key_beginning_with_a_dash)

    assert authorized.returncode == 0, authorized.stderr
    assert key_beginning_with_a_dash in (state / "authorized_keys").read_text()
    assert trusted.returncode == 0, trusted.stderr


INVALID_FRAMES = [  # what each is, its frames, the cause the daemon logs when it drops it
    ("garbage bytes", [b"\x00\xffnot a frame at all"], "MalformedFrame"),
    ("bad msgpack", [b"\xc1"], "MalformedFrame"),
    ("not a map", [msgpack.packb([1, 2, 3])], "MalformedFrame"),
    ("another protocol version", [msgpack.packb({"v": 99, "k": "sd.status", "i": 1, "b": {}})], "UnsupportedVersion"),
    ("unknown kind", [msgpack.packb({"v": 1, "k": "sd.format_disks", "i": 2, "b": {}})], "UnknownKind"),
    ("wrong field type", [msgpack.packb({"v": 1, "k": "sd.status", "i": 3, "b": {"app": 5}})], "BadField"),
    ("two frames", [b"one", b"two"], "frame-count"),
]


@contextlib.contextmanager
def authorized_dealer(context: zmq.Context[Any], user: User, daemon: DaemonProcess) -> Iterator[zmq.Socket[Any]]:
    keys = load_keypair(user.config_dir)
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.curve_serverkey = daemon.public_key.encode()
    dealer.curve_publickey = keys.public
    dealer.curve_secretkey = keys.secret
    try:
        yield dealer
    finally:
        dealer.close(0)


def wait_for_event(monitor: zmq.Socket[Any], event: int, timeout: float) -> None:
    while monitor.poll(int(timeout * 1000)):
        if recv_monitor_message(monitor)["event"] == event:
            return
    raise AssertionError(f"no {zmq.Event(event).name} within {timeout} s")


def test_invalid_frames_from_an_authorized_client_are_dropped_and_logged_and_the_daemon_then_deploys_normally(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    registry = make_registry()
    context: zmq.Context[Any] = zmq.Context()
    try:
        with authorized_dealer(context, user, daemon) as dealer, authorized_dealer(context, user, daemon) as big:
            dealer.connect(daemon.endpoint)
            for _, parts, _ in INVALID_FRAMES:
                dealer.send_multipart(parts)
            dealer.send(registry.encode(GetStatus(app=""), request_id=42))
            answered = dealer.poll(10_000)
            reply = registry.decode(dealer.recv(), max_size=DEFAULT_MAX_FRAME_SIZE) if answered else None

            monitor = big.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
            big.connect(daemon.endpoint)
            wait_for_event(monitor, zmq.EVENT_HANDSHAKE_SUCCEEDED, 10)
            big.send(b"\x00" * (DEFAULT_MAX_FRAME_SIZE + 1))
            wait_for_event(monitor, zmq.EVENT_DISCONNECTED, 10)  # libzmq cuts a peer over ZMQ_MAXMSGSIZE
            big.disable_monitor()
            monitor.close(0)
    finally:
        context.term()
    web = write(tmp_path, "web.sf", WEB)

    up = user.run("up", str(web), "--host", daemon.host)

    assert reply is not None, "the daemon stopped answering after the invalid frames"
    assert reply.request_id == 42
    assert isinstance(reply.message, StatusReply)
    dropped = re.findall(r"dropped a frame from 127\.0\.0\.1 \((\S+)\)", daemon.log())
    assert dropped == [cause for _, _, cause in INVALID_FRAMES], daemon.log()
    assert up.returncode == 0, up.stderr
    assert "web is up: 6 components started" in up.stdout


# ------------------------------------------------------------------------------ the journal
def test_up_sends_the_tree_alone_and_the_daemon_journals_it_and_then_its_text(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    config = parse_file(web)

    up = user.run("up", str(web), "--host", daemon.host)

    assert up.returncode == 0, up.stderr

    def journaled() -> tuple[str, bytes] | None:
        with contextlib.closing(sqlite3.connect(f"file:{daemon.state_dir / 'journal.sqlite3'}?mode=ro",
                                                uri=True)) as db:
            text, tree = db.execute("SELECT description_text, description_tree FROM applications WHERE name = 'web'"
                                    ).fetchone()
        return (text, tree) if text else None  # the text is written after up's answer

    text, tree = eventually(journaled, timeout=10, what="the text of web's description in the journal")
    assert tree == encode_description(config)
    assert text == to_sf(config)


def test_after_kill_9_a_restarted_daemon_runs_the_application_again_without_duplicating_it(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    web = write(tmp_path, "web.sf", WEB)
    assert user.run("up", str(web), "--host", daemon.host).returncode == 0

    daemon.kill()
    daemon.start()
    recovered = eventually(lambda: all_started(user, daemon, "web", len(WEB_PATHS)), timeout=15,
                           what="web re-deployed from the journal with its 6 components started")
    again = user.run("up", str(web), "--host", daemon.host)

    assert "web: re-deploying after a restart" in daemon.log()
    assert recovered["status"] == "running"
    assert component_paths(recovered) == WEB_PATHS
    assert again.returncode == 0, again.stderr
    assert "web is already running" in again.stdout
    after = applications(user, daemon)
    assert [a["name"] for a in after] == ["web"]
    assert component_paths(after[0]) == WEB_PATHS


def many_components(groups: int, each: int) -> str:
    body = "".join(f"    g{g} extends Compound {{\n" + "".join(f"        p{p} extends Prim;\n" for p in range(each))
                   + "    }\n" for g in range(groups))
    return HEADER + f"sfConfig extends Compound {{\n{body}}}\n"


def test_after_kill_9_during_a_deploy_a_restarted_daemon_shows_the_application_once_and_completes_it(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    groups, each = 10, 30  # about a second to deploy: long enough to be killed in the middle
    count = 1 + groups + groups * each
    big = write(tmp_path, "big.sf", many_components(groups, each))
    up = user.start("up", str(big), "--host", daemon.host, "--timeout", "3")
    try:
        assert up.stdout is not None
        lines = LineReader(up.stdout)
        assert lines.read_line(timeout=15).startswith("deploying big on ")
        first = lines.read_line(timeout=15)
        assert re.match(PROGRESS_LINE.format(path="big", state="created"), first), first

        daemon.kill()
        daemon.start()
        recovered = eventually(lambda: all_started(user, daemon, "big", count), timeout=20,
                               what=f"big re-deployed from the journal with its {count} components started")
        again = user.run("up", str(big), "--host", daemon.host)
        up_status = up.wait(timeout=15)
        assert up.stderr is not None
        up_errors = up.stderr.read()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        for stream in (up.stdout, up.stderr):
            if stream is not None:
                stream.close()

    assert up_status == 3
    assert "no answer from the daemon" in up_errors
    assert "it goes on: sd-actors status big" in up_errors
    assert recovered["status"] == "running"
    paths = component_paths(recovered)
    assert len(paths) == len(set(paths)) == count
    assert "already running" in again.stdout
    assert [a["name"] for a in applications(user, daemon)] == ["big"]


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A named pipe a Shell's command writes to when it runs; read end open (never blocks a writer)."""
    path = tmp_path / "ran"
    os.mkfifo(path)
    descriptor = os.open(path, os.O_RDWR | os.O_NONBLOCK)
    try:
        yield path, descriptor
    finally:
        os.close(descriptor)


def wait_for_line(descriptor: int, timeout: float) -> bytes:
    readable, _, _ = select.select([descriptor], [], [], timeout)
    return os.read(descriptor, 4096) if readable else b""


def copies(command: str) -> set[int]:
    """The process groups running ``command`` (while bash forks ``sleep … &`` the fork briefly has
    bash's command line too: processes would count it twice, groups do not)."""
    groups = set()
    for pid in processes_running("/bin/bash", "-c", command):
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            groups.add(os.getpgid(pid))
    return groups


def test_a_command_running_when_the_daemon_is_killed_does_not_run_twice_after_the_restart(
        user: User, daemon: DaemonProcess, tmp_path: Path, fifo: tuple[Path, int]) -> None:
    path, descriptor = fifo
    command = f"sleep 29.{os.getpid()}{daemon.port} & echo ran > {path}; wait"  # no other process has this line
    job = write(tmp_path, "job.sf", HEADER + "sfConfig extends Compound {\n    job extends Shell {\n"
                f'        commands ["{command}"];\n    }}\n}}\n')
    orphans: list[int] = []
    try:
        assert user.run("up", str(job), "--host", daemon.host).returncode == 0
        assert wait_for_line(descriptor, 10) == b"ran\n"  # written by the bash that runs the command
        assert len(copies(command)) == 1

        daemon.kill()
        orphans = processes_running("/bin/bash", "-c", command)
        daemon.start()
        wait_for_line(descriptor, 10)  # the re-deployed Shell runs its command again, if it does
        running = copies(command)

        assert len(running) == 1, f"{len(running)} copies of the command run after the restart"
    finally:
        for pid in orphans:  # each leads a process group of its own: bash and its sleep
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_a_daemon_announces_it_is_ready_on_stdout_and_in_its_state_folder(daemon: DaemonProcess) -> None:
    ready = json.loads((daemon.state_dir / "daemon.json").read_text())

    assert daemon.readiness == f"sd-actors daemon ready on {daemon.endpoint} (state in {daemon.state_dir})"
    assert ready["endpoint"] == daemon.endpoint
    assert ready["pid"] == daemon.pid
    assert ready["public_key"] == daemon.public_key
    assert ready["insecure"] is False
