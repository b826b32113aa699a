"""LoadBalancer moving a running guest live between two real libvirt hosts.

Two simulated hosts (network namespaces), each with a libvirtd of its own (tests/hosts/libvirt_host.py)
and a daemon pointed at it (``--hypervisor qemu+unix:///system?socket=…``). Both see one folder, a
``dir`` pool defined on each host's libvirtd as an operator would set up shared storage. Needs root
and qemu: CI has both, so it runs there.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import libvirt
import pytest

from sd_actors.actors._client_commands import trust_daemon
from sd_actors.net import authorize, load_or_create_keypair
from sd_actors.plugins._domain_xml import Owner, read_owner
from sd_actors.plugins._migration import migration_unsupported_reason
from tests.hosts import LineReader, TestHosts, netns_unavailable_reason, open_test_hosts
from tests.hosts.libvirt_host import LibvirtHost, libvirt_host_unavailable_reason, open_libvirt_host
from tests.plugins.guest import Guest, GuestBuildError, build_guest
from tests.policies.scheduling_pool import SchedulingPool, open_scheduling_pool, scheduled_vms

SD_ACTORS: Final = Path(sys.executable).with_name("sd-actors")
PORT: Final = 3800
WAIT: Final = 30.0
GUEST_CACHE: Final = Path("/var/cache/sd-actors/test-guest")
POOL: Final = "sd-migration"
VM_CLASS: Final = "sd_actors.plugins.VM"


@dataclass
class MigrationPool:
    hosts: TestHosts
    libvirt: dict[str, LibvirtHost]
    folder: Path
    shared: Path
    guest: Guest
    env: dict[str, str]
    daemons: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    def address(self, name: str) -> str:
        return self.hosts[name].address

    def endpoint(self, name: str) -> str:
        return f"tcp://{self.address(name)}:{PORT}"

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """The CLI, asking h2's daemon: the application runs there, its guests start on h1 (on another
        daemon than their Schedulee's, so each step of a move crosses the network)."""
        return subprocess.run([str(SD_ACTORS), *arguments, "--host", self.endpoint("h2")], capture_output=True,
                              text=True, env=self.env, timeout=120, check=False)

    def running(self, name: str) -> dict[str, str]:
        """Host ``name``'s running domains: name → UUID."""
        connection = self.libvirt[name].connect()
        try:
            return {domain.name(): domain.UUIDString()
                    for domain in connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_RUNNING)}
        finally:
            connection.close()

    def last_job(self, domain: str, name: str) -> dict[str, int]:
        """The statistics of the last job host ``name`` finished on ``domain`` (e.g. its incoming migration)."""
        connection = self.libvirt[name].connect()
        try:
            stats: dict[str, int] = connection.lookupByName(domain).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            return stats
        finally:
            connection.close()

    def owner(self, domain: str, name: str) -> Owner | None:
        """Who the metadata of ``domain`` on host ``name`` says owns it."""
        connection = self.libvirt[name].connect()
        try:
            return read_owner(connection.lookupByName(domain).XMLDesc())
        finally:
            connection.close()

    def defined(self, name: str) -> list[str]:
        connection = self.libvirt[name].connect()
        try:
            return sorted(domain.name() for domain in connection.listAllDomains())
        finally:
            connection.close()

    def started_vms(self) -> dict[str, list[str]]:
        """Host name → the started VMs its own daemon says it runs."""
        found: dict[str, list[str]] = {}
        for host in self.hosts:
            result = subprocess.run([str(SD_ACTORS), "status", "--json", "--host", self.endpoint(host.name)],
                                    capture_output=True, text=True, env=self.env, timeout=30, check=True)
            found[host.name] = sorted(
                ":".join(component["path"]) for application in json.loads(result.stdout)["applications"]
                for component in application["components"]
                if component["class"] == VM_CLASS and component["state"] == "started")
        return found


def _daemon(pool: MigrationPool, name: str) -> subprocess.Popen[str]:
    other = "h2" if name == "h1" else "h1"
    with (pool.folder / f"{name}.log").open("w") as log:  # the daemon's own copy stays open
        process = pool.hosts[name].popen(
            [str(SD_ACTORS), "daemon", "--bind", pool.endpoint(name), "--state-dir", str(pool.folder / name),
             "--hypervisor", pool.libvirt[name].uri, "--heartbeat-interval", "0.2", "--peer", pool.endpoint(other)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=pool.env)
    assert process.stdout is not None
    line = LineReader(process.stdout).read_line(timeout=WAIT)
    assert "ready" in line, line + (pool.folder / f"{name}.log").read_text()
    return process


def _trust_each_other(pool: MigrationPool) -> None:
    user_folder = pool.folder / "config" / "sd-actors"
    keys = {host.name: load_or_create_keypair(pool.folder / host.name).public.decode() for host in pool.hosts}
    user = load_or_create_keypair(user_folder).public.decode()
    for host in pool.hosts:
        for other in pool.hosts:
            authorize(pool.folder / host.name, keys[other.name], other.name)
            trust_daemon(pool.endpoint(other.name), keys[other.name], pool.folder / host.name)
        authorize(pool.folder / host.name, user, "the test user")
        trust_daemon(pool.endpoint(host.name), keys[host.name], user_folder)


def _wait_for_membership(pool: MigrationPool) -> None:
    deadline = time.monotonic() + WAIT
    for host in pool.hosts:
        while True:
            result = subprocess.run([str(SD_ACTORS), "hosts", "--json", "--host", pool.endpoint(host.name)],
                                    capture_output=True, text=True, env=pool.env, timeout=30, check=False)
            if [h["state"] for h in json.loads(result.stdout or "[]")].count("alive") == len(pool.hosts):
                break
            assert time.monotonic() < deadline, result.stdout + result.stderr
            time.sleep(0.1)  # polling other daemons: nothing to wait on locally


def _define_shared_pool(libvirt_host: LibvirtHost, path: Path) -> None:
    connection = libvirt_host.connect()
    try:
        pool = connection.storagePoolDefineXML(
            f"<pool type='dir'><name>{POOL}</name><target><path>{path}</path></target></pool>", 0)
        pool.create(0)
    finally:
        connection.close()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigrationPool]:
    reason = netns_unavailable_reason() or libvirt_host_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    try:
        guest = build_guest(GUEST_CACHE)
    except GuestBuildError as error:
        pytest.fail(f"cannot build the test guest: {error}")
    folder = tmp_path_factory.mktemp("migration")
    # Where qemu's user reaches the volumes (pytest's tmp_path is private to root): the shared storage.
    shared = Path(tempfile.mkdtemp(prefix="sd-actors-migration-", dir="/var/tmp"))
    shared.chmod(0o755)
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(folder), "XDG_CONFIG_HOME": str(folder / "config"),
           "XDG_STATE_HOME": str(folder / "state")}
    try:
        with open_test_hosts(2) as hosts, open_libvirt_host(hosts["h1"]) as a, open_libvirt_host(hosts["h2"]) as b:
            pool = MigrationPool(hosts, {"h1": a, "h2": b}, folder, shared, guest, env)
            for libvirt_host in (a, b):
                _define_shared_pool(libvirt_host, shared)
            _trust_each_other(pool)
            try:
                for name in ("h1", "h2"):
                    pool.daemons[name] = _daemon(pool, name)
                _wait_for_membership(pool)
                yield pool
            finally:
                for process in pool.daemons.values():
                    if process.poll() is None:
                        process.send_signal(signal.SIGTERM)
                        process.wait(WAIT)
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def description(pool: MigrationPool, names: tuple[str, ...]) -> str:
    guest = pool.guest
    nodes = "\n".join(f"""
        {name} extends Compound {{
            domainName "{name}"; memory 192; vcpus 1;
            disks extends LoopbackStorageBackend {{
                hypervisor LAZY PROPERTY sd_actors.hypervisor; poolName "{POOL}"; poolPath "{pool.shared}";
            }}
            vm extends VM {{
                domainName "{name}"; domainType "qemu"; memory 192; vcpus 1;
                kernel "{guest.kernel}"; ramdisk "{guest.initrd}"; extra "sd.stay"; hostname "{name}";
                storageBackend LAZY ATTRIB disks;
                baseImage "{guest.base_image}"; volumeSize "16m"; swapSize "0"; keepVolumes false;
                domainLivenessDelay 500;
            }}
        }}""" for name in names)
    return f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    simpleScheduler extends Scheduler {{ hosts [|"{pool.address('h1')}", "{pool.address('h2')}"|]; policy "pack"; }}
    vms extends Schedulee {{
        scheduler LAZY ATTRIB simpleScheduler;
{nodes}
    }}
    balancer extends LoadBalancer {{ schedulee LAZY ATTRIB vms; metric "vmCount"; maxImbalance 1; }}
}}
"""


@contextlib.contextmanager
def squatters(libvirt_host: LibvirtHost, names: tuple[str, ...]) -> Iterator[None]:
    """Domains of ``names`` defined (not running) on ``libvirt_host`` by someone else than sd-actors."""
    connection = libvirt_host.connect()
    domains = []
    try:
        for name in names:
            domains.append(connection.defineXML(
                f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>16</memory><os><type>hvm</type></os>"
                "</domain>"))
        yield
    finally:
        for domain in domains:
            domain.undefine()
        connection.close()


class CopyWatcher:
    """Polls both hosts until stopped: the most running copies of one domain seen at once."""

    def __init__(self, pool: MigrationPool) -> None:
        self._pool = pool
        self._stop = threading.Event()
        self.most: dict[str, int] = {}
        self.looks = 0
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            counts: dict[str, int] = {}
            for host in ("h1", "h2"):
                for name in self._pool.running(host):
                    counts[name] = counts.get(name, 0) + 1
            for name, count in counts.items():
                self.most[name] = max(self.most.get(name, 0), count)
            self.looks += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)


def test_rebalance_migrates_a_running_guest_live_to_the_other_host_and_down_leaves_nothing(
        pool: MigrationPool) -> None:
    h1, h2 = pool.address("h1"), pool.address("h2")
    source = pool.folder / "packed.sf"
    source.write_text(description(pool, ("mig1", "mig2")))
    up = pool.cli("up", str(source), "--name", "packed")
    assert up.returncode == 0, up.stdout + up.stderr
    before = pool.running("h1")

    plan = pool.cli("rebalance", "packed", "--dry-run")
    with squatters(pool.libvirt["h2"], ("mig1", "mig2")):  # domains of those names, not sd-actors': refused
        refused = pool.cli("rebalance", "packed")
    after_refusal = {"h1": pool.running("h1"), "h2": pool.running("h2")}
    vms_after_refusal = pool.started_vms()
    watcher = CopyWatcher(pool)
    moved = pool.cli("rebalance", "packed")
    watcher.stop()
    after = {"h1": pool.running("h1"), "h2": pool.running("h2")}
    migrated = next(iter(after["h2"]), "")
    qemu_left_on_h1 = pool.libvirt["h1"].qemu_processes(migrated)
    incoming = pool.last_job(migrated, "h2")
    owner = pool.owner(migrated, "h2")
    vms = pool.started_vms()
    again = pool.cli("rebalance", "packed")
    down = pool.cli("down", "packed")
    deadline = time.monotonic() + WAIT
    while (pool.defined("h1") or pool.defined("h2")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the VMs on h2 end a moment after down returns: polling its libvirtd

    assert sorted(before) == ["mig1", "mig2"]
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"packed:balancer: {h1} 2, {h2} 0 VMs (max imbalance 1)" in plan.stdout
    assert plan.stdout.count(" would migrate packed:vms:mig") == 1, plan.stdout
    assert f"from {h1} to {h2} (live migration" in plan.stdout
    assert "dry run: nothing was moved" in plan.stdout
    assert refused.returncode == 1
    assert "failed: " in refused.stdout
    assert "already exists" in refused.stdout, refused.stdout
    assert "still runs on qemu+unix:///system?socket=" in refused.stdout
    assert after_refusal == {"h1": before, "h2": {}}
    assert vms_after_refusal == {"h1": ["packed:vms:mig1:vm", "packed:vms:mig2:vm"], "h2": []}
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert moved.stdout.count(" migrated packed:vms:mig") == 1, moved.stdout
    assert [len(after["h1"]), len(after["h2"])] == [1, 1], after
    assert after["h2"][migrated] == before[migrated]  # the same domain (UUID), now on h2
    assert migrated not in after["h1"]
    assert qemu_left_on_h1 == []
    assert owner == Owner(app="packed", component=f"packed:vms:{migrated}:vm", host=h2)
    # The guest came over running, not booted again: h2's qemu got its memory by an incoming migration
    # during which it was stopped for a moment only.
    assert incoming["operation"] == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN, incoming
    assert incoming["memory_processed"] > 0, incoming
    assert incoming["downtime"] < incoming["time_elapsed"], incoming
    assert watcher.looks > 0
    assert max(watcher.most.values()) == 1, watcher.most
    assert vms == {"h1": [f"packed:vms:{next(iter(after['h1']))}:vm"], "h2": [f"packed:vms:{migrated}:vm"]}
    assert "balanced: nothing to move" in again.stdout
    assert down.returncode == 0, down.stdout + down.stderr
    assert pool.defined("h1") == []
    assert pool.defined("h2") == []
    assert sorted(path.name for path in pool.shared.iterdir()) == []  # the volumes too (keepVolumes false)


# -- when a move cannot be a live migration ------------------------------------------------------------------
@pytest.mark.parametrize(("source", "target", "reason"), [
    ("qemu+unix:///system?socket=/run/a/libvirt-sock", "qemu+unix:///system?socket=/run/b/libvirt-sock", None),
    ("qemu:///system", "qemu+tcp://h2/system", None),
    ("test:///default", "qemu:///system", "test:///default is libvirt's test driver, which sd-actors cannot migrate"),
    ("qemu:///system", "qemu:///system", "both hosts' hypervisor is qemu:///system, which from the source's"),
], ids=["two-local-sockets", "to-a-remote-libvirtd", "test-driver", "same-uri"])
def test_a_live_migration_needs_two_hypervisors_that_can_migrate(source: str, target: str, reason: str | None) -> None:
    found = migration_unsupported_reason(source, target)

    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(reason)


@pytest.fixture(scope="module")
def simulated_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulingPool]:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    yield from open_scheduling_pool(tmp_path_factory.mktemp("simulated"))


def test_a_vm_that_can_neither_migrate_nor_restart_is_left_where_it_is_saying_why(
        simulated_pool: SchedulingPool) -> None:
    pool = simulated_pool
    balancer = "    balancer extends LoadBalancer { schedulee LAZY ATTRIB vms; maxImbalance 1; }"
    source = pool.write("stuck.sf", scheduled_vms(pool, count=3, memory=256, scheduler='policy "pack";',
                                                  extra=balancer))
    assert pool.cli("up", str(source), "--name", "stuck", "--host", pool.endpoint("h1")).returncode == 0

    plan = pool.cli("rebalance", "stuck", "--dry-run", "--host", pool.endpoint("h1"))
    pool.down("stuck")
    pool.wait_until_no_vms()

    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "would" not in plan.stdout
    assert plan.stdout.count("  left stuck:vms:vm") == 3, plan.stdout
    assert "where it is: it cannot migrate live (test:///" in plan.stdout
    assert "is libvirt's test driver, which sd-actors cannot migrate with (it migrates qemu))" in plan.stdout
    assert ") and is not restartable true" in plan.stdout
