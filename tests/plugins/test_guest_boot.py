"""A real guest boots: a VM on qemu:///system (domain type qemu: TCG, since nested KVM hangs here) with
Debian's kernel, the busybox initramfs of tests/plugins/guest.py and a root volume that a
LoopbackStorageBackend made from a tar baseImage. The guest applies the ``ip=``/``hostname=`` of its
kernel command line, writes them into its root volume and powers off; the VM component then
terminates normally (a guest that shut itself down is the user's intent) and the test reads the
proof back from the kept volume with debugfs.

Needs root. As root it fails, never skips, when libvirtd, virtlogd or qemu cannot run: CI must run it.
It uses the session libvirtd of tests/plugins/test_storage.py, and starts virtlogd (which qemu domains
need) when none runs.
"""

from __future__ import annotations

import contextlib
import grp
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import libvirt
import pytest

from sd_actors.actors import State, System, open_system
from sd_actors.descriptions import parse_string
from sd_actors.plugins import make_plugin_manager
from sd_actors.plugins._libvirt_events import open_connection
from tests.plugins.guest import PROOF_FILE, Guest, GuestBuildError, build_guest
from tests.plugins.test_storage import (  # noqa: F401 (hypervisor: the session libvirtd fixture, reused)
    _answers,
    _ensure_qemu_account,
    debugfs_cat,
    hypervisor,
)

GUEST_CACHE: Final = Path("/var/cache/sd-actors/test-guest")
"""Where the guest's kernel and initramfs are built: a root-owned folder that qemu's user can read."""
VIRTLOGD_SOCKET: Final = Path("/run/libvirt/virtlogd-sock")
BOOT_TIMEOUT: Final = 60.0
"""Seconds from start until the guest must have powered off (about 3 s under TCG here)."""


def _let_qemu_use_kvm() -> None:
    """Put libvirt-qemu in the kvm group, as Debian's libvirt-daemon-system does.

    Not for KVM itself (the guests here are TCG): libvirt probes qemu's capabilities as root and
    finds KVM, then checks /dev/kvm as libvirt-qemu; when that user cannot open it, libvirt calls its
    cached capabilities outdated and probes qemu again on every lookup, about 50 s per domain start.
    """
    kvm = Path("/dev/kvm")
    try:
        members = grp.getgrnam("kvm").gr_mem
    except KeyError:
        return
    if not kvm.exists() or "libvirt-qemu" in members:
        return
    subprocess.run(["usermod", "--append", "--groups", "kvm", "libvirt-qemu"], check=True)
    # A running libvirtd remembers whether KVM is usable until /dev/kvm's ctime changes: change it.
    status = kvm.stat()
    os.chown(kvm, status.st_uid, status.st_gid)


def _start_virtlogd(log: Path) -> subprocess.Popen[bytes] | None:
    """Start virtlogd unless one answers (None then): libvirtd's qemu driver logs each guest through it."""
    if _answers(VIRTLOGD_SOCKET):
        return None
    program = shutil.which("virtlogd", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if program is None:
        pytest.fail("virtlogd is not installed: run scripts/setup.sh (Debian package libvirt-daemon)")
    with open(log, "wb") as output:
        process = subprocess.Popen([program], stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    if not _wait_for_socket(VIRTLOGD_SOCKET, process):
        process.kill()
        process.wait()
        pytest.fail(f"virtlogd did not answer on {VIRTLOGD_SOCKET}; its output:\n" + log.read_text(errors="replace"))
    return process


def _wait_for_socket(path: Path, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(path):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def qemu_prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The qemu user, its kvm group and virtlogd, before the session's libvirtd is asked for a domain."""
    if os.geteuid() != 0:
        pytest.skip("real guests on qemu:///system need root (libvirtd, virtlogd, pools)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is not installed: run scripts/setup.sh (Debian package qemu-system-x86)")
    _ensure_qemu_account()
    _let_qemu_use_kvm()
    os.makedirs(VIRTLOGD_SOCKET.parent, exist_ok=True)
    process = _start_virtlogd(tmp_path_factory.mktemp("virtlogd") / "virtlogd.log")
    try:
        yield
    finally:
        if process is not None:  # stop only the virtlogd started here
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def qemu_hypervisor(qemu_prepared: None, hypervisor: str) -> str:  # noqa: F811 (the imported fixture)
    return hypervisor


@pytest.fixture(scope="session")
def guest() -> Guest:
    try:
        return build_guest(GUEST_CACHE)
    except GuestBuildError as error:
        pytest.fail(f"cannot build the test guest: {error}")


@pytest.fixture
def qemu_pool(qemu_hypervisor: str) -> Iterator[tuple[str, Path]]:
    """A pool name and folder of this test's own, where qemu's user can reach them (pytest's tmp_path is
    private to root); whatever is left of them is removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix="sd-actors-boot-", dir="/var/tmp"))
    folder = parent / "pool"
    # Made here, whatever the umask: LoopbackStorageBackend's own makedirs(mode=0o755) is subject to it.
    folder.mkdir()
    for made in (parent, folder):
        made.chmod(0o755)
    name = f"sd-boot-{uuid.uuid4().hex[:8]}"
    yield name, folder
    connection = open_connection(qemu_hypervisor)
    try:
        with contextlib.suppress(libvirt.libvirtError):
            leftover = connection.storagePoolLookupByName(name)
            with contextlib.suppress(libvirt.libvirtError):
                leftover.refresh(0)
                for volume in leftover.listAllVolumes():
                    volume.delete(0)
                leftover.destroy()
            leftover.undefine()
    finally:
        connection.close()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture
def root_tree(tmp_path: Path) -> Path:
    """A tar.gz of a tiny root tree: the guest brings its own busybox in the initramfs."""
    tree = tmp_path / "tree"
    for folder in ("etc", "root", "tmp"):
        (tree / folder).mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("unconfigured\n")
    image = tmp_path / "base.tar.gz"
    with tarfile.open(image, "w:gz") as archive:
        archive.add(tree, arcname=".")
    return image


@pytest.fixture
def system() -> Iterator[System]:
    with open_system(plugin_manager=make_plugin_manager(load_entry_points=False), host=socket.gethostname(),
                     terminate_timeout=30.0) as opened:
        yield opened


def test_a_guest_boots_with_its_hostname_and_ip_and_writes_them_into_its_root_volume(
        system: System, qemu_hypervisor: str, qemu_pool: tuple[str, Path], guest: Guest, root_tree: Path) -> None:
    pool_name, folder = qemu_pool
    domain = f"sd-boot-{uuid.uuid4().hex[:8]}"
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{ poolName "{pool_name}"; poolPath "{folder}"; }}
            web extends VM {{
                domainName "{domain}"; hypervisor "{qemu_hypervisor}"; domainType "qemu";
                memory 256; vcpus 1;
                kernel "{guest.kernel}"; ramdisk "{guest.initrd}";
                ip "10.0.2.15"; gateway "10.0.2.2"; netmask "255.255.255.0"; hostname "guest-{domain[-8:]}";
                storageBackend LAZY ATTRIB disks;
                baseImage "{root_tree}"; volumeSize "16m"; swapSize "4m"; makeFs "mkfs.ext3"; keepVolumes true;
                domainLivenessDelay 500;
            }}
        }}
    """)

    system.deploy(description, name="boot")
    web = system.wait_for_state("boot:web", {State.TERMINATED, State.FAILED}, timeout=BOOT_TIMEOUT)

    assert web.record is not None
    assert web.record.is_normal, web.record
    assert "shut itself down" in web.record.description
    assert "reason SHUTDOWN" in (web.record.cause or "")
    system.wait_for_state("boot", {State.TERMINATED, State.FAILED}, timeout=BOOT_TIMEOUT)
    connection = open_connection(qemu_hypervisor)
    try:
        with pytest.raises(libvirt.libvirtError):
            connection.lookupByName(domain)  # undefined once the component ended
    finally:
        connection.close()
    proof = debugfs_cat(folder / f"{domain}.img", PROOF_FILE)
    assert f"hostname=guest-{domain[-8:]} " in proof
    assert " ip=10.0.2.15 " in proof
    assert " date=20" in proof
