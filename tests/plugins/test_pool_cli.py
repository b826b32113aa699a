"""The main job, as a user types it: `sd-actors up descriptions/examples/qemu-pool.sf` boots a pool of
real guests on qemu:///system (TCG) that say on their consoles who they booted as; the daemon stops and
restarts without touching them (it detaches, then re-attaches through its journal); `sd-actors down`
archives each root filesystem (saveImage) and removes domains and volumes.

Needs root (libvirtd, virtlogd, pools); as root it fails rather than skips, like test_guest_boot.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from sd_actors.plugins._libvirt_events import open_connection
from tests.actors.daemon_helpers import DaemonProcess, User, free_port, running_daemon
from tests.plugins.guest import PROOF_FILE, PROOF_PREFIX, Guest

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


EXAMPLE = Path(str(importlib.resources.files("sd_actors.descriptions") / "examples" / "qemu-pool.sf"))
PROOF_TIMEOUT = 60.0


def overrides(names: list[str], pool: tuple[str, Path], guest: Guest, base: Path, saved: Path,
              consoles: Path) -> list[str]:
    """--set options that put the example's pool, names, guest files and outputs where this test wants them."""
    pool_name, folder = pool
    values = {"computer1:loop:poolName": pool_name, "computer1:loop:poolPath": str(folder)}
    for number, name in enumerate(names, start=1):
        domain = f"computer1:domain{number}"
        values |= {f"{domain}:domainName": name, f"{domain}:kernel": str(guest.kernel),
                   f"{domain}:ramdisk": str(guest.initrd), f"{domain}:baseImage": str(base),
                   f"{domain}:saveImagePath": str(saved), f"{domain}:consoleLog": str(consoles / f"{name}.console")}
    return [option for path, value in values.items() for option in ("--set", f'{path}="{value}"')]


def wait_for_proof(console: Path) -> str:
    """The line the guest prints on its console once it booted and wrote its proof file."""
    deadline = time.monotonic() + PROOF_TIMEOUT
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        for line in text.splitlines():
            if line.startswith(PROOF_PREFIX) or "sd-actors-guest: FAILED" in line:
                return line.strip()
        time.sleep(0.1)  # virtlogd writes the file; nothing to wait on but its content
    raise AssertionError(f"no proof of boot on {console} within {PROOF_TIMEOUT:g} s")


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


def test_up_of_the_qemu_pool_example_boots_its_guests_a_daemon_restart_keeps_them_and_down_saves_their_images(
        user: User, daemon: DaemonProcess, qemu_hypervisor: str, qemu_pool: tuple[str, Path], guest: Guest,
        root_tree: Path, names: list[str], tmp_path: Path) -> None:
    saved, consoles = tmp_path / "saved", tmp_path / "consoles"
    saved.mkdir()
    options = overrides(names, qemu_pool, guest, root_tree, saved, consoles)

    up = user.run("up", str(EXAMPLE), "--name", "pool", "--host", daemon.host, *options, timeout=UP_TIMEOUT)

    assert up.returncode == 0, up.stdout + up.stderr + daemon.log()
    assert "pool is up: 5 components started" in up.stdout
    booted = running_uuids(qemu_hypervisor, names)
    assert all(booted.values()), booted
    for number, name in enumerate(names):
        # The guest's own words on its console: it booted with the identity the description gave it.
        expected = f"hostname=qemu-dom{number + 1} ip=10.0.2.{15 + number} "  # as the example says
        assert expected in wait_for_proof(consoles / f"{name}.console")

    # The daemon stops: the guests are not its to destroy, they keep running.
    assert daemon.stop() == 0
    assert running_uuids(qemu_hypervisor, names) == booted

    # The next daemon on the same state folder re-attaches to the very same domains.
    daemon.start()
    follow = user.run("up", str(EXAMPLE), "--name", "pool", "--host", daemon.host, *options, timeout=UP_TIMEOUT)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "already running" in follow.stdout
    assert set(wait_all_started(user, daemon).values()) == {"started"}, daemon.log()
    assert running_uuids(qemu_hypervisor, names) == booted
    assert "re-attached to domain" in daemon.log()

    down = user.run("down", "pool", "--host", daemon.host, timeout=UP_TIMEOUT)

    assert down.returncode == 0, down.stdout + down.stderr
    assert running_uuids(qemu_hypervisor, names) == dict.fromkeys(names)
    _, folder = qemu_pool
    assert sorted(p.name for p in folder.iterdir()) == []  # keepVolumes false
    for number, name in enumerate(names):
        with tarfile.open(saved / f"{name}.tar.gz") as archive:
            member = next(m for m in archive.getmembers() if m.name.lstrip("./") == PROOF_FILE.lstrip("/"))
            proof = archive.extractfile(member)
            assert proof is not None
            assert f"hostname=qemu-dom{number + 1} ip=10.0.2.{15 + number} " in proof.read().decode()
