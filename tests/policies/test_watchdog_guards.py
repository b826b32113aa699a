"""What the host watchdog (policies/_watchdog.py) guards, with real qemu guests and one daemon: a
domain from before it starts until its component says it holds nothing (not only while the
component runs), and a daemon frozen between deploying and starting an HA guest does not start it.

One daemon without peers holds its lease by itself (it is the whole pool), so its watchdog destroys
its HA guests only when it dies or freezes. Needs root, like tests/plugins/test_guest_boot.py,
whose fixtures it uses; the components of tests/policies/plugins/stuck_vm.py stand in for a
libvirtd that fails and for a deployment that pauses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from sd_actors.plugins._libvirt_events import open_connection
from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port

pytest_plugins = ["tests.plugins.test_guest_boot"]  # qemu_hypervisor

PLUGINS = Path(__file__).with_name("plugins")
WAIT = 20.0
DIAGNOSTIC_GUEST = 'domainType "qemu"; memory 32; vcpus 1; domainLivenessDelay 200;'
"""A guest without a disk: its BIOS finds nothing to boot and keeps trying, as a running machine."""

StartDaemon = Callable[[float, float], DaemonProcess]


@pytest.fixture
def domain(qemu_hypervisor: str) -> Iterator[str]:
    """The name of this test's qemu guest, removed afterwards."""
    name = f"sd-wdg-{uuid.uuid4().hex[:8]}"
    yield name
    connection = open_connection(qemu_hypervisor)
    try:
        with contextlib.suppress(libvirt.libvirtError):
            leftover = connection.lookupByName(name)
            with contextlib.suppress(libvirt.libvirtError):
                leftover.destroy()
            leftover.undefine()
    finally:
        connection.close()


@pytest.fixture
def start_daemon(tmp_path: Path, qemu_hypervisor: str) -> Iterator[StartDaemon]:
    """Start the one daemon (on qemu:///system, with the plugins of tests/policies/plugins) with a
    heartbeat interval and a --dead-after (its lease; the watchdog destroys its guests half of it
    after the last lease check it heard of)."""
    started: list[DaemonProcess] = []

    def start(interval: float, dead_after: float) -> DaemonProcess:
        user = User.make(tmp_path / "user")
        user.env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(PLUGINS), os.environ.get("PYTHONPATH"))))
        daemon = DaemonProcess(user, tmp_path / "state", free_port(), "--insecure", "--hypervisor", qemu_hypervisor,
                               "--plugin", "stuck_vm", "--heartbeat-interval", str(interval),
                               "--suspect-after", str(3 * interval), "--dead-after", str(dead_after))
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        if daemon.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon.pid, signal.SIGCONT)
            daemon.stop()


def _guest(hypervisor: str, name: str) -> bool | None:
    """Whether the guest runs; None while it is not defined."""
    connection = open_connection(hypervisor)
    try:
        return bool(connection.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return None
    finally:
        connection.close()


def _poll(check: Callable[[], bool], *, timeout: float, what: str) -> float:
    """Poll libvirt's (or a file's) state every few milliseconds until ``check``; return when it was so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(0.005)  # libvirt's own state: nothing to wait on but polling it
    raise AssertionError(f"{what}: not so after {timeout:g} s")


@contextlib.contextmanager
def _up_in_background(daemon: DaemonProcess, description: Path) -> Iterator[subprocess.Popen[str]]:
    """``sd-actors up`` of ``description`` as application ``app``, ended (if it has not) on leaving."""
    process = daemon.user.start("up", str(description), "--name", "app", "--insecure", "--host", daemon.host)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _watchdog_log(daemon: DaemonProcess) -> str:
    return (daemon.state_dir / "watchdog.log").read_text()


def test_a_guest_started_just_before_its_daemon_is_killed_is_guarded_from_its_start(
        start_daemon: StartDaemon, qemu_hypervisor: str, domain: str, tmp_path: Path) -> None:
    # Lease checks every second: before the fix a domain waited up to that long to be guarded.
    daemon = start_daemon(1.0, 8.0)
    description = tmp_path / "ha.sf"
    description.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    ha extends HARestarter {{ vm extends VM {{ domainName "{domain}"; {DIAGNOSTIC_GUEST} }} }}
}}
""")
    with _up_in_background(daemon, description):
        running = _poll(lambda: _guest(qemu_hypervisor, domain) is True, timeout=WAIT, what="the guest running")
        guarded_at_start = "guarding app:ha:vm (domain " in _watchdog_log(daemon)
        daemon.kill()  # at once: no lease check came between its start and now
        destroyed = _poll(lambda: _guest(qemu_hypervisor, domain) is False, timeout=WAIT,
                          what="the guest destroyed by the watchdog")

    assert guarded_at_start, _watchdog_log(daemon)
    assert destroyed - running < 8.0, f"destroyed {destroyed - running:.2f} s after its daemon died"
    assert "destroying app:ha:vm" in _watchdog_log(daemon)


def test_the_watchdog_keeps_guarding_a_guest_its_daemon_failed_to_stop(
        start_daemon: StartDaemon, qemu_hypervisor: str, domain: str, tmp_path: Path) -> None:
    daemon = start_daemon(0.2, 6.0)
    flag = tmp_path / "libvirt-fails"
    description = tmp_path / "ha.sf"
    description.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    ha extends HARestarter {{
        vm extends VM {{ sfClass "tests.StuckVM"; failStopWhile "{flag}"; domainName "{domain}"; {DIAGNOSTIC_GUEST} }}
    }}
}}
""")
    up = daemon.user.run("up", str(description), "--name", "app", "--insecure", "--host", daemon.host, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr + daemon.log()
    flag.touch()
    down = daemon.user.run("down", "app", "--insecure", "--host", daemon.host)
    stopped_trying = time.monotonic()
    assert _guest(qemu_hypervisor, domain) is True, down.stdout + down.stderr  # its stop failed
    # Lease checks every 0.2 s: by now several told the watchdog what to guard since the component ended.
    eventually(lambda: time.monotonic() > stopped_trying + 1.0, timeout=WAIT, what="a few lease checks later")
    daemon.kill()

    destroyed = _poll(lambda: _guest(qemu_hypervisor, domain) is False, timeout=WAIT,
                      what="the guest destroyed by the watchdog")
    assert destroyed - stopped_trying < 6.0 + 1.0
    assert "destroying app:ha:vm" in _watchdog_log(daemon)
    assert "libvirt does not answer" in daemon.log()


def test_a_daemon_frozen_between_deploying_and_starting_an_ha_guest_does_not_start_it(
        start_daemon: StartDaemon, qemu_hypervisor: str, domain: str, tmp_path: Path) -> None:
    daemon = start_daemon(0.2, 6.0)
    gate = tmp_path / "go-on"
    description = tmp_path / "ha.sf"
    # The HARestarter deploys vm, then waits at gate, then starts both; it gives up after one failure.
    description.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    ha extends HARestarter {{
        intensity 0;
        vm extends VM {{ domainName "{domain}"; {DIAGNOSTIC_GUEST} }}
        gate extends Prim {{ sfClass "tests.WaitForFile"; path "{gate}"; }}
    }}
}}
""")
    with _up_in_background(daemon, description) as up:
        _poll(lambda: "guarding app:ha:vm" in _watchdog_log(daemon), timeout=WAIT, what="the guest defined, guarded")
        os.kill(daemon.pid, signal.SIGSTOP)
        assert _guest(qemu_hypervisor, domain) is False  # not started: the HARestarter waits at gate
        # Its fence time passes: the watchdog finds the guest stopped and stops guarding it. From then
        # on a pool may restart it elsewhere (after the lease and a margin): it must not start here.
        _poll(lambda: "no longer runs: nothing to destroy" in _watchdog_log(daemon), timeout=WAIT,
              what="the watchdog's fence time passed")
        gate.touch()
        os.kill(daemon.pid, signal.SIGCONT)
        out, err = up.communicate(timeout=WAIT)

    assert _guest(qemu_hypervisor, domain) is not True, out + err + daemon.log()
    assert "was frozen past its time to fence" in out or "lease lapsed since it was deployed" in out, out
    assert "lease: checked" in daemon.log()


def _watchdog_pid(state_dir: Path) -> int:
    """The pid of the host watchdog of ``state_dir`` (``python …/_watchdog.py STATE_DIR``)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            watchdog = any(argument.endswith(b"_watchdog.py") for argument in arguments)
            if watchdog and os.fsencode(state_dir) in arguments:
                return int(entry.name)
    raise AssertionError(f"no host watchdog runs for {state_dir}")


def test_a_watchdog_slow_to_answer_does_not_make_a_healthy_daemon_fence(
        start_daemon: StartDaemon, tmp_path: Path) -> None:
    # Lease 2 s, checked every 0.2 s: a check later than about 0.8 s counts as a lapse (sticky fencing).
    # The watchdog, frozen 2.5 s, answers nothing meanwhile; the daemon's lease checks must go on time
    # anyway (the watchdog is told by a thread of its own), so the HA component keeps running.
    daemon = start_daemon(0.2, 2.0)
    description = tmp_path / "ha.sf"
    description.write_text("""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound { ha extends HARestarter { worker extends Prim; } }
""")
    up = daemon.user.run("up", str(description), "--name", "app", "--insecure", "--host", daemon.host)
    assert up.returncode == 0, up.stdout + up.stderr + daemon.log()
    watchdog = _watchdog_pid(daemon.state_dir)
    os.kill(watchdog, signal.SIGSTOP)
    try:
        frozen = time.monotonic()
        eventually(lambda: time.monotonic() > frozen + 2.5, timeout=WAIT, what="the watchdog frozen 2.5 s")
    finally:
        os.kill(watchdog, signal.SIGCONT)
    status = daemon.user.run("status", "app", "--json", "--insecure", "--host", daemon.host)

    log = daemon.log()
    for sign_of_fencing in ("lease: checked", "lease: lost", "fenced"):
        assert sign_of_fencing not in log, log
    worker = next(component for application in json.loads(status.stdout)["applications"]
                  for component in application["components"] if component["path"] == ["app", "ha", "worker"])
    assert worker["state"] == "started", status.stdout
