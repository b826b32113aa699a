"""The main job, as a user types it: `sd-actors up pool.sf` boots a pool of real guests on
qemu:///system (TCG), `status` shows them, the daemon stops and restarts without touching them (it
detaches, then re-attaches through its journal), and `sd-actors down` removes domains and volumes.

Needs root (libvirtd, virtlogd, pools); as root it fails rather than skips, like test_guest_boot.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from sd_actors.plugins._libvirt_events import open_connection
from tests.actors.daemon_helpers import DaemonProcess, User, free_port, running_daemon
from tests.plugins.guest import Guest

# The real-guest fixtures (the session libvirtd, virtlogd, the guest's kernel and initramfs, a pool folder).
pytest_plugins = ["tests.plugins.test_guest_boot"]

UP_TIMEOUT = 120.0


@pytest.fixture
def user(tmp_path: Path) -> User:
    return User.make(tmp_path / "user")


@pytest.fixture
def daemon(user: User, tmp_path: Path, qemu_hypervisor: str) -> Iterator[DaemonProcess]:
    with running_daemon(user, tmp_path / "state", free_port(), "--hypervisor", qemu_hypervisor) as started:
        yield started


@pytest.fixture
def names(qemu_hypervisor: str) -> Iterator[list[str]]:
    """Two domain names of this test's own; whatever is left of them is removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    chosen = [f"sd-pool-{tag}-{n}" for n in (1, 2)]
    yield chosen
    connection = open_connection(qemu_hypervisor)
    try:
        for name in chosen:
            with contextlib.suppress(libvirt.libvirtError):
                domain = connection.lookupByName(name)
                with contextlib.suppress(libvirt.libvirtError):
                    domain.destroy()
                domain.undefine()
    finally:
        connection.close()


def pool_description(names: list[str], pool: tuple[str, Path], guest: Guest, base: Path) -> str:
    pool_name, folder = pool
    machines = "\n".join(f"""
        vm{index + 1} extends VM {{
            domainName "{name}"; domainType "qemu"; memory 192;
            kernel "{guest.kernel}"; ramdisk "{guest.initrd}"; extra "sd.stay";
            ip "10.0.2.{15 + index}"; gateway "10.0.2.2"; netmask "255.255.255.0"; hostname "{name}";
            storageBackend LAZY ATTRIB disks;
            baseImage "{base}"; volumeSize "16m"; swapSize "0"; keepVolumes false;
            domainLivenessDelay 500;
        }}""" for index, name in enumerate(names))
    return f"""#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    disks extends LoopbackStorageBackend {{ poolName "{pool_name}"; poolPath "{folder}"; }}
{machines}
}}
"""


def running_uuids(hypervisor_uri: str, names: list[str]) -> dict[str, str | None]:
    """Each domain's UUID if it is running, else None."""
    connection = open_connection(hypervisor_uri)
    try:
        found: dict[str, str | None] = {}
        for name in names:
            try:
                domain = connection.lookupByName(name)
            except libvirt.libvirtError:
                found[name] = None
                continue
            found[name] = domain.UUIDString() if domain.isActive() else None
        return found
    finally:
        connection.close()


def component_states(user: User, daemon: DaemonProcess) -> dict[str, str]:
    status = user.run("status", "pool", "--json", "--host", daemon.host)
    assert status.returncode == 0, status.stderr
    (application,) = json.loads(status.stdout)["applications"]
    return {":".join(c["path"]): c["state"] for c in application["components"]}


def wait_all_started(user: User, daemon: DaemonProcess) -> dict[str, str]:
    """Poll status until every component is started (a restarted daemon re-deploys in the background)."""
    deadline = time.monotonic() + UP_TIMEOUT
    states = component_states(user, daemon)
    while set(states.values()) != {"started"} and time.monotonic() < deadline:
        assert not {"failed", "terminated"} & set(states.values()), states
        time.sleep(0.2)
        states = component_states(user, daemon)
    return states


def test_up_boots_a_pool_of_guests_a_daemon_restart_keeps_them_and_down_removes_them(
        user: User, daemon: DaemonProcess, qemu_hypervisor: str, qemu_pool: tuple[str, Path], guest: Guest,
        root_tree: Path, names: list[str], tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.sf"
    pool_file.write_text(pool_description(names, qemu_pool, guest, root_tree))

    up = user.run("up", str(pool_file), "--host", daemon.host, timeout=UP_TIMEOUT)

    assert up.returncode == 0, up.stdout + up.stderr + daemon.log()
    assert "pool is up: 4 components started" in up.stdout
    booted = running_uuids(qemu_hypervisor, names)
    assert all(booted.values()), booted
    assert set(component_states(user, daemon).values()) == {"started"}

    # The daemon stops: the guests are not its to destroy, they keep running.
    assert daemon.stop() == 0
    assert running_uuids(qemu_hypervisor, names) == booted

    # The next daemon on the same state folder re-attaches to the very same domains.
    daemon.start()
    follow = user.run("up", str(pool_file), "--host", daemon.host, timeout=UP_TIMEOUT)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "already running" in follow.stdout
    assert set(wait_all_started(user, daemon).values()) == {"started"}, daemon.log()
    assert running_uuids(qemu_hypervisor, names) == booted
    assert "re-attached to domain" in daemon.log()

    down = user.run("down", "pool", "--host", daemon.host, timeout=UP_TIMEOUT)

    assert down.returncode == 0, down.stdout + down.stderr
    assert running_uuids(qemu_hypervisor, names) == dict.fromkeys(names)
    _, folder = qemu_pool
    assert sorted(p.name for p in folder.iterdir()) == []
