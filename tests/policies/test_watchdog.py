"""The host watchdog (policies/_watchdog.py) with real qemu guests: a daemon killed with kill -9 or
frozen with SIGSTOP cannot fence its HA guests, so its watchdog destroys them before the daemon's
lease ends (the others restart them only after lease + margin); a daemon restarted before that
adopts the watchdog, continues its lease and keeps the guest running; and a daemon that comes back
after the pool restarted its part elsewhere does not bring the old copy back.

A pool of three daemons on this machine (insecure, on 127.0.0.1 ports of their own): ``qemu``
runs qemu:///system (TCG), ``a`` and ``b`` a simulated host each (libvirt's test driver, whose
domains live inside the daemon and die with it: a watchdog has nothing to guard there). Needs
root, like tests/plugins/test_guest_boot.py, whose fixtures it uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from sd_actors.actors._daemon import DaemonSettings, open_daemon
from sd_actors.net._peer_protocol import ClaimRestart
from sd_actors.plugins._libvirt_events import open_connection
from sd_actors.policies._watchdog import GuardedDomain, HostWatchdog, LeaseNews
from tests.actors.daemon_helpers import (
    DaemonProcess,
    User,
    eventually,
    free_port,
    json_of,
    wait_for_process_exit,
)
from tests.plugins.guest import Guest
from tests.plugins.hosts_xml import write_test_host

pytest_plugins = ["tests.plugins.test_guest_boot"]  # qemu_hypervisor, qemu_pool, guest, root_tree

DEAD_AFTER = 6.0
"""Each daemon's --dead-after: its lease lasts that long, it fences 3 s before the end, and the
others restart its parts only after 7.5 s (lease + margin) of silence."""
TIMINGS = ("--heartbeat-interval", "0.2", "--suspect-after", "0.6", "--dead-after", str(DEAD_AFTER))
WAIT = 20.0


def test_the_watchdog_of_a_folder_tells_the_next_daemon_there_the_lease_it_last_heard_of(tmp_path: Path) -> None:
    endpoint = "tcp://127.0.0.1:3800"
    news = LeaseNews(endpoint=endpoint, lease_expiry=time.monotonic() + 60, fence_before=30)
    domain = GuardedDomain("qemu:///system", str(uuid.uuid4()), "app:ha:vm")  # nothing destroys it: 30 s away
    first = HostWatchdog.open(tmp_path, endpoint)
    eventually(lambda: first.report(news, [domain]), timeout=WAIT, what="the watchdog started and listening")
    first.close()

    elsewhere = HostWatchdog.open(tmp_path, "tcp://10.0.0.9:3800")  # a daemon with another address
    elsewhere.close()
    again = HostWatchdog.open(tmp_path, endpoint)
    again.report(news, [domain])
    again.report(news, [])  # its component ended: nothing left to guard
    again.close()

    assert elsewhere.adopted_pid is not None
    assert elsewhere.inherited is None
    assert again.adopted_pid == elsewhere.adopted_pid
    assert again.inherited == news
    assert wait_for_process_exit(again.adopted_pid, timeout=WAIT)  # nothing to guard, no daemon: it leaves
    assert not (tmp_path / "watchdog.sock").exists()


def test_a_daemon_just_started_grants_no_claim_that_needs_the_silence_of_another_host(tmp_path: Path) -> None:
    silent = f"tcp://127.0.0.1:{free_port()}"  # a peer that never answers
    settings = DaemonSettings(bind=f"tcp://127.0.0.1:{free_port()}", state_dir=tmp_path / "state", insecure=True,
                              peers=(silent,), heartbeat_interval=0.1, suspect_after=0.2, dead_after=0.4)
    claim = ClaimRestart(path=("app", "vm"), generation=1, claimant="tcp://127.0.0.1:1", unreachable=(silent,))

    with open_daemon(settings) as daemon:
        at_start = daemon.high_availability.answer_claim(claim)
        later = eventually(lambda: daemon.high_availability.answer_claim(claim).granted, timeout=WAIT,
                           what="the claim granted once lease + margin have passed since the start")

    # It never heard from that host, but it may have, just before a restart: it waits lease + margin.
    assert not at_start.granted
    assert "this daemon started" in at_start.reason
    assert "cannot vouch that" in at_start.reason
    assert later


@dataclass
class Pool:
    user: User
    qemu: DaemonProcess
    a: DaemonProcess
    b: DaemonProcess
    hypervisor: str
    domain: str
    """The name of the qemu guest of this test; removed afterwards."""

    def cli(self, *arguments: str) -> object:
        return json_of(self.user.run(*arguments, "--insecure"))

    def guest(self) -> tuple[str, bool] | None:
        """The qemu guest's UUID and whether it runs; None once it is not defined."""
        connection = open_connection(self.hypervisor)
        try:
            domain = connection.lookupByName(self.domain)
            return domain.UUIDString(), bool(domain.isActive())
        except libvirt.libvirtError:
            return None
        finally:
            connection.close()

    def wait_for_guest(self, running: bool, *, timeout: float = WAIT) -> float:
        """Poll the qemu guest until it runs (or not); return when it was first seen so."""
        connection = open_connection(self.hypervisor)
        try:
            domain = connection.lookupByName(self.domain)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if bool(domain.isActive()) == running:
                    return time.monotonic()
                time.sleep(0.01)  # libvirt's own state: nothing to wait on but polling it
        finally:
            connection.close()
        raise AssertionError(f"the guest {self.domain} is not {'running' if running else 'stopped'} after {timeout} s")

    @contextlib.contextmanager
    def guest_changes(self) -> Iterator[list[float]]:
        """While inside: the times at which the guest was seen other than it was on entry (stopped,
        gone, or another domain), polled every 20 ms."""
        before = self.guest()
        seen: list[float] = []
        watching = threading.Event()

        def watch() -> None:
            while not watching.is_set():
                if self.guest() != before:
                    seen.append(time.monotonic())
                time.sleep(0.02)  # libvirt's own state: nothing to wait on but polling it

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            yield seen
        finally:
            watching.set()
            watcher.join()

    def running_elsewhere(self) -> list[str]:
        """The simulated hosts on which the part runs now (its domain, by name)."""
        found = []
        for daemon in (self.a, self.b):
            reply = self.cli("domains", "--json", "--host", daemon.host)
            assert isinstance(reply, dict)
            found += [daemon.host for name in reply["running"] if name == self.domain]
        return found


@pytest.fixture
def pool(tmp_path: Path, qemu_hypervisor: str) -> Iterator[Pool]:
    user = User.make(tmp_path / "user")
    ports = {name: free_port() for name in ("qemu", "a", "b")}
    daemons = {}
    for name, port in ports.items():
        peers = [option for other, other_port in ports.items() if other != name
                 for option in ("--peer", f"tcp://127.0.0.1:{other_port}")]
        hypervisor = qemu_hypervisor if name == "qemu" else write_test_host(tmp_path, name=name, cpus=4,
                                                                            memory_mib=4096)
        daemons[name] = DaemonProcess(user, tmp_path / f"state-{name}", port, "--insecure", "--hypervisor",
                                      hypervisor, *TIMINGS, *peers)
    pool = Pool(user, daemons["qemu"], daemons["a"], daemons["b"], qemu_hypervisor, f"sd-wd-{uuid.uuid4().hex[:8]}")
    try:
        for daemon in daemons.values():
            daemon.start()

        def all_alive() -> bool:
            hosts = pool.cli("hosts", "--json", "--host", pool.qemu.host)
            assert isinstance(hosts, list)
            return sum(host["state"] == "alive" for host in hosts) == 3

        eventually(all_alive, timeout=WAIT, what="the three daemons see each other alive")
        yield pool
    finally:
        for daemon in daemons.values():
            if daemon.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(daemon.pid, signal.SIGCONT)
                daemon.stop()
        connection = open_connection(qemu_hypervisor)
        try:
            with contextlib.suppress(libvirt.libvirtError):
                leftover = connection.lookupByName(pool.domain)
                with contextlib.suppress(libvirt.libvirtError):
                    leftover.destroy()
                leftover.undefine()
        finally:
            connection.close()
        # The guest is gone: its watchdog need not wait for the lease of a stopped daemon to run out
        # (and the session's libvirtd may be stopped before that).
        for pid in _watchdogs(pool.qemu):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _watchdogs(daemon: DaemonProcess) -> set[int]:
    """The watchdog processes the daemon started that still run (each writes its pid in its log)."""
    log = daemon.state_dir / "watchdog.log"
    pids = {int(line.split("watchdog[")[1].split("]")[0]) for line in (log.read_text() if log.exists() else "")
            .splitlines() if "watchdog[" in line}
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if str(daemon.state_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                running.add(pid)
    return running


def _guest_on_its_own_daemon(pool: Pool, folder: Path, guest: Guest, qemu_pool: tuple[str, Path],
                             root_tree: Path) -> Path:
    """An application the qemu daemon runs: an HARestarter around a real guest that stays up."""
    pool_name, pool_folder = qemu_pool
    path = folder / "guarded.sf"
    path.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    disks extends LoopbackStorageBackend {{ poolName "{pool_name}"; poolPath "{pool_folder}"; }}
    ha extends HARestarter {{
        vm extends VM {{
            domainName "{pool.domain}"; domainType "qemu"; memory 128; vcpus 1;
            kernel "{guest.kernel}"; ramdisk "{guest.initrd}"; extra "sd.stay"; hostname "guarded";
            storageBackend LAZY ATTRIB disks; baseImage "{root_tree}"; volumeSize "16m"; makeFs "mkfs.ext3";
            keepVolumes true; domainLivenessDelay 200;
        }}
    }}
}}
""")
    return path


def _up(pool: Pool, description: Path, daemon: DaemonProcess) -> None:
    result = pool.user.run("up", str(description), "--name", "guarded", "--insecure", "--host", daemon.host,
                           timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr + daemon.log()


def _watchdog_log(daemon: DaemonProcess) -> str:
    return (daemon.state_dir / "watchdog.log").read_text()


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGSTOP, signal.SIGTERM], ids=["kill-9", "sigstop", "sigterm"])
def test_the_watchdog_destroys_the_ha_guest_of_a_daemon_killed_or_frozen_before_its_lease_ends(
        pool: Pool, tmp_path: Path, guest: Guest, qemu_pool: tuple[str, Path], root_tree: Path,
        stop: signal.Signals) -> None:
    _up(pool, _guest_on_its_own_daemon(pool, tmp_path, guest, qemu_pool, root_tree), pool.qemu)
    uuid_before = pool.guest()

    stopped = time.monotonic()
    os.kill(pool.qemu.pid, stop)
    destroyed = pool.wait_for_guest(running=False)

    # The lease the daemon last renewed ends at most DEAD_AFTER after it was stopped; the others
    # would restart the guest only DEAD_AFTER / 4 after that.
    assert destroyed - stopped < DEAD_AFTER, f"destroyed {destroyed - stopped:.2f} s after the daemon stopped"
    assert uuid_before is not None
    assert uuid_before[1]
    assert pool.guest() == (uuid_before[0], False)  # destroyed, still defined: its volumes are kept
    assert f"destroying guarded:ha:vm (domain {uuid_before[0]} on {pool.hypervisor})" in _watchdog_log(pool.qemu)
    print(f"{stop.name}: guest destroyed {destroyed - stopped:.2f} s after its daemon stopped "
          f"(lease end: at most {DEAD_AFTER:g} s)")


def test_a_daemon_restarted_within_its_lease_adopts_the_watchdog_and_its_guest_keeps_running(
        pool: Pool, tmp_path: Path, guest: Guest, qemu_pool: tuple[str, Path], root_tree: Path) -> None:
    _up(pool, _guest_on_its_own_daemon(pool, tmp_path, guest, qemu_pool, root_tree), pool.qemu)
    before = pool.guest()
    (watchdog_pid,) = _watchdogs(pool.qemu)
    with pool.guest_changes() as seen_stopped:
        killed = time.monotonic()
        pool.qemu.kill()
        pool.qemu.start()
        restarted = time.monotonic()
        eventually(lambda: time.monotonic() > killed + DEAD_AFTER + 1, timeout=WAIT,
                   what="watched past the old lease's end")

    status = pool.cli("status", "guarded", "--json", "--host", pool.qemu.host)
    assert isinstance(status, dict)
    assert {c["state"] for c in status["applications"][0]["components"]} == {"started"}
    assert not seen_stopped, f"the guest stopped {seen_stopped[0] - killed:.2f} s after the kill"
    assert pool.guest() == before
    log = pool.qemu.log()
    assert f"the host watchdog (pid {watchdog_pid})" in log
    assert "continuing the lease of this folder's previous daemon" in log
    assert "re-attached to domain" in log
    assert "destroyed" not in _watchdog_log(pool.qemu)
    print(f"daemon back {restarted - killed:.2f} s after kill -9; the guest ran throughout")


def test_a_daemon_back_after_the_pool_restarted_its_part_elsewhere_does_not_bring_the_old_copy_back(
        pool: Pool, tmp_path: Path) -> None:
    description = tmp_path / "moved.sf"
    # The HARestarter runs on a; its part runs on the qemu host until that host's daemon dies. The
    # guest has no disk: its BIOS finds nothing to boot and keeps trying, as a running machine.
    description.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay 0.2;
    sfLivenessFactor 3;
    ha extends HARestarter {{
        vm extends VM {{
            domainName "{pool.domain}"; domainType "qemu"; memory 32; vcpus 1; sfProcessHost "{pool.qemu.host}";
            domainLivenessDelay 200;
        }}
    }}
}}
""")
    _up(pool, description, pool.a)
    pool.wait_for_guest(running=True)

    killed = time.monotonic()
    pool.qemu.kill()
    destroyed = pool.wait_for_guest(running=False)
    elsewhere = eventually(pool.running_elsewhere, timeout=WAIT, what="the part running on a or b")
    restarted_elsewhere = time.monotonic()
    pool.qemu.start()
    back = time.monotonic()
    seen = []
    while time.monotonic() < back + DEAD_AFTER / 2:  # longer than it takes to hold a lease again
        seen.append(pool.guest())
        time.sleep(0.05)  # libvirt's own state: nothing to wait on but polling it

    assert destroyed < restarted_elsewhere
    assert destroyed - killed < DEAD_AFTER
    assert seen
    assert all(guest is not None and not guest[1] for guest in seen), seen
    assert len(elsewhere) == 1
    assert pool.running_elsewhere() == elsewhere
    print(f"guest destroyed {destroyed - killed:.2f} s after kill -9, its part running elsewhere "
          f"{restarted_elsewhere - killed:.2f} s after (not before lease + margin: {DEAD_AFTER * 1.25:g} s)")


def test_a_daemon_back_after_its_lease_ended_starts_its_ha_guest_only_once_it_holds_a_lease_again(
        pool: Pool, tmp_path: Path, guest: Guest, qemu_pool: tuple[str, Path], root_tree: Path) -> None:
    _up(pool, _guest_on_its_own_daemon(pool, tmp_path, guest, qemu_pool, root_tree), pool.qemu)
    before = pool.guest()
    pool.qemu.kill()
    pool.wait_for_guest(running=False)  # the watchdog's doing
    for peer in (pool.a, pool.b):  # frozen: the qemu daemon, back, hears no majority
        os.kill(peer.pid, signal.SIGSTOP)

    pool.qemu.start()
    back = time.monotonic()
    waiting = []
    while time.monotonic() < back + 2.0:  # longer than its re-deploy takes (about 1 s) when nothing holds it
        waiting.append(pool.guest())
        time.sleep(0.05)  # libvirt's own state: nothing to wait on but polling it
    for peer in (pool.a, pool.b):
        os.kill(peer.pid, signal.SIGCONT)
    eventually(lambda: _running_copies(pool) == 1, timeout=WAIT, what="the guest running once in the pool")

    assert before is not None
    assert set(waiting) == {(before[0], False)}
    assert "guarded: re-deployed once this daemon holds a lease" in pool.qemu.log()


def _running_copies(pool: Pool) -> int:
    guest = pool.guest()
    return (1 if guest is not None and guest[1] else 0) + len(pool.running_elsewhere())
