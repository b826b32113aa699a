"""Storage backends: sizes, pool XML, and LoopbackStorageBackend making, filling, saving and removing
real volume files in a libvirt dir pool on qemu:///system.

The libvirt tests need root and a libvirtd: the session fixture uses the one that answers on
/run/libvirt/libvirt-sock, else starts one (and stops it at the end). As root it fails, never
skips, when it cannot: CI must run these. Each test has its own pool (name and folder), so tests
do not see each other's volumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import libvirt
import pytest

from sd_actors.actors import ComponentFailed, ComponentSpec, FakeClock, State, System, open_system
from sd_actors.descriptions import parse_string
from sd_actors.plugins import make_plugin_manager
from sd_actors.plugins._libvirt_events import open_connection
from sd_actors.plugins._storage import (
    DEFAULTS,
    POOL_OWNER_ATTRIBUTE,
    VOLUME_OWNER_ATTRIBUTE,
    StorageError,
    dir_pool_xml,
    has_device_mapper,
    logical_pool_xml,
    parse_size,
    read_mark,
    volume_settings,
)
from sd_actors.policies import HA_GENERATION

SYSTEM_HYPERVISOR: Final = "qemu:///system"
LIBVIRT_SOCKET: Final = Path("/run/libvirt/libvirt-sock")
LIBVIRTD_PID_FILE: Final = Path("/run/libvirtd.pid")
START_LOCK: Final = Path("/run/lock/sd-actors-tests-libvirtd.lock")
STARTUP: Final = 20.0
"""Seconds libvirtd may take to answer once started."""
SWAP_SIGNATURE_OFFSET: Final = 4096 - 10
"""mkswap writes SWAPSPACE2 at the end of the first page (4 KiB on x86-64)."""


# -- sizes and settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("1g", 1024**3), ("512m", 512 * 1024**2), ("64k", 65536), ("2t", 2 * 1024**4), ("1G", 1024**3),
    (" 8 M ", 8 * 1024**2),
], ids=["gibibytes", "mebibytes", "kibibytes", "tebibytes", "capital unit", "spaces"])
def test_a_size_is_a_whole_number_and_a_binary_unit(text: str, size: int) -> None:
    assert parse_size("volumeSize", text) == size


@pytest.mark.parametrize("text", ["1.5g", "512", "1gb", "g", "-1g", "0m", "", "1 g 2", 512, None, True],
                         ids=["fraction", "no unit", "two letters", "no number", "negative", "zero", "empty",
                              "trailing words", "number", "none", "boolean"])
def test_a_malformed_size_is_refused_saying_how_to_write_one(text: object) -> None:
    with pytest.raises(StorageError, match=re.escape(f"volumeSize is {text!r}; give a whole number above 0 followed "
                                                     "by k, m, g or t (powers of 1024), e.g. \"1g\" or \"512m\"")):
        parse_size("volumeSize", text)


def test_a_swap_size_of_zero_means_no_swap() -> None:
    assert parse_size("swapSize", "0", zero_allowed=True) == 0
    assert volume_settings("web1", {"swapSize": "0"}).swap_size == 0


@pytest.mark.parametrize(("keep", "word"), [
    (True, "all"), (False, "none"), ("statuquo", "statuquo"), ("true", "all"), ("false", "none"),
], ids=["true", "false", "statuquo", "'true'", "'false'"])
def test_keep_volumes_is_true_false_or_statuquo(keep: object, word: str) -> None:
    assert volume_settings("web1", {"keepVolumes": keep}).keep == word


def test_the_2007_defaults_apply_and_volumes_are_named_after_the_domain() -> None:
    settings = volume_settings("web1", {})

    assert (settings.root_name, settings.swap_name) == ("web1.img", "web1-swap.img")
    assert (settings.root_size, settings.swap_size) == (1024**3, 512 * 1024**2)
    assert settings.make_fs == ("mkfs.ext3",)
    assert (settings.keep, settings.save_image, settings.save_to) == ("statuquo", False, "/tmp/web1.tar.gz")
    assert volume_settings("web1", {"volumeBaseName": "base"}).root_name == "base.img"


@pytest.mark.parametrize(("values", "message"), [
    ({"keepVolumes": "sometimes"}, "keepVolumes is 'sometimes'; give true (keep all), false (delete all) or"),
    ({"saveImageExtension": "zip"}, "saveImageExtension is 'zip'; give one of tar, tar.gz"),
    ({"makeFs": ""}, "makeFs is empty"),
    ({"usingExistingVolumes": "yes"}, "usingExistingVolumes is 'yes'; give true or false"),
    ({"volumeBaseName": "../etc"}, "volumeBaseName is '../etc'"),
    ({"swapSize": "lots"}, "swapSize is 'lots'; give a whole number above 0"),
], ids=["keepVolumes", "saveImageExtension", "makeFs", "usingExistingVolumes", "volumeBaseName", "swapSize"])
def test_bad_storage_attributes_are_refused_naming_the_attribute(values: dict[str, object], message: str) -> None:
    with pytest.raises(StorageError, match=re.escape(message)):
        volume_settings("web1", values)


# -- pool XML and device-mapper ------------------------------------------------------------------------


def test_a_dir_pool_is_a_folder() -> None:
    assert dir_pool_xml("images", "/var/lib/images") == (
        "<pool type=\"dir\"><name>images</name><target><path>/var/lib/images</path></target></pool>")


def test_a_logical_pool_is_an_lvm2_volume_group_under_dev() -> None:
    assert logical_pool_xml("vms", "vg0") == (
        "<pool type=\"logical\"><name>vms</name><source><name>vg0</name><format type=\"lvm2\" /></source>"
        "<target><path>/dev/vg0</path></target></pool>")


@pytest.mark.parametrize("group", ["vg/0", "-vg", "..", "vg 0", ""])
def test_a_volume_group_name_lvm_would_refuse_is_refused(group: str) -> None:
    with pytest.raises(StorageError, match=re.escape(f"volumeGroup is {group!r}")):
        logical_pool_xml("vms", group)


def test_device_mapper_is_found_in_proc_misc(tmp_path: Path) -> None:
    with_mapper, without = tmp_path / "with", tmp_path / "without"
    with_mapper.write_text("183 hw_random\n236 device-mapper\n")
    without.write_text("183 hw_random\n")

    assert has_device_mapper(with_mapper)
    assert not has_device_mapper(without)
    assert not has_device_mapper(tmp_path / "missing")


def test_lvm_refuses_to_deploy_on_a_kernel_without_device_mapper(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sd_actors.plugins._storage.has_device_mapper", lambda: False)

    with open_system(plugin_manager=make_plugin_manager(load_entry_points=False), clock=FakeClock()) as system, \
            pytest.raises(ComponentFailed) as excinfo:
        system.deploy(ComponentSpec("sd_actors.plugins.LVMStorageBackend", {"volumeGroup": "vg0"}), name="lvm")

    assert "LVM needs device-mapper, which this kernel does not have" in excinfo.value.record.description
    assert excinfo.value.record.cause == "NoDeviceMapper"


# -- a libvirtd for the session --------------------------------------------------------------------------


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(1.0)
        try:
            client.connect(str(path))
        except OSError:
            return False
    return True


def _running_libvirtd() -> int | None:
    """The pid of a libvirtd that is running (its pid file names a live libvirtd process), if any."""
    try:
        pid = int(LIBVIRTD_PID_FILE.read_text().strip())
        return pid if "libvirtd" in Path(f"/proc/{pid}/comm").read_text() else None
    except (OSError, ValueError):
        return None


def _wait_answering(deadline: float) -> bool:
    while time.monotonic() < deadline:
        if _answers(LIBVIRT_SOCKET):
            return True
        time.sleep(0.05)
    return False


def _ensure_qemu_account() -> None:
    """libvirtd's qemu driver runs guests as libvirt-qemu; Debian's libvirt-daemon-system makes it, by hand here."""
    try:
        grp.getgrnam("libvirt-qemu")
    except KeyError:
        subprocess.run(["groupadd", "--system", "libvirt-qemu"], check=True)
    try:
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        subprocess.run(["useradd", "--system", "--gid", "libvirt-qemu", "--no-create-home", "--home-dir",
                        "/var/lib/libvirt", "--shell", "/usr/sbin/nologin", "libvirt-qemu"], check=True)


def _start_libvirtd(log: Path) -> subprocess.Popen[bytes] | None:
    """Start libvirtd unless one runs (None then). Never a second one: a failing second libvirtd
    deletes the first one's sockets."""
    START_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(START_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session on this machine may be starting one too
        if _answers(LIBVIRT_SOCKET):
            return None
        running = _running_libvirtd()
        if running is not None:
            if _wait_answering(time.monotonic() + STARTUP):
                return None
            pytest.fail(f"libvirtd (pid {running}) runs but does not answer on {LIBVIRT_SOCKET}; not starting a "
                        "second one beside it: stop it or find out why it does not answer")
        program = shutil.which("libvirtd")
        if program is None:
            pytest.fail("libvirtd is not installed: run scripts/setup.sh (Debian package libvirt-daemon)")
        _ensure_qemu_account()
        for folder in ("/run/libvirt", "/var/log/libvirt", "/var/lib/libvirt", "/var/cache/libvirt"):
            os.makedirs(folder, exist_ok=True)
        with open(log, "wb") as output:
            process = subprocess.Popen([program], stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        if not _wait_answering(time.monotonic() + STARTUP):
            process.kill()
            process.wait()
            pytest.fail(f"libvirtd did not answer on {LIBVIRT_SOCKET} within {STARTUP:g} s; its output:\n"
                        + log.read_text(errors="replace")[-3000:])
        return process


@pytest.fixture(scope="session")
def hypervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """qemu:///system, served by the libvirtd that runs, or by one started (and stopped) here."""
    if os.geteuid() != 0:
        pytest.skip("LoopbackStorageBackend on qemu:///system needs root (libvirtd, pools, mkfs into files)")
    process = _start_libvirtd(tmp_path_factory.mktemp("libvirtd") / "libvirtd.log")
    try:
        yield SYSTEM_HYPERVISOR
    finally:
        if process is not None:  # leave the machine as it was: stop only the libvirtd started here
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def libvirtd_clients_of_this_process() -> set[str]:
    """The ids libvirtd gives this process's connections (virt-admin lists every client with its pid)."""
    def virt_admin(*arguments: str) -> str:
        return subprocess.run(["virt-admin", *arguments], capture_output=True, text=True, check=True).stdout

    listing = virt_admin("srv-clients-list", "libvirtd").splitlines()[2:]
    clients = [line.split()[0] for line in listing if line.strip()]
    return {client for client in clients
            if f"unix_process_id: {os.getpid()}\n" in virt_admin("client-info", "libvirtd", client)}


@pytest.fixture
def connection(hypervisor: str) -> Iterator[libvirt.virConnect]:
    opened = open_connection(hypervisor)
    yield opened
    opened.close()


@pytest.fixture
def system() -> Iterator[System]:
    with open_system(plugin_manager=make_plugin_manager(load_entry_points=False), clock=FakeClock(),
                     host="host1") as opened:
        yield opened


@pytest.fixture
def pool(connection: libvirt.virConnect, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A pool name and folder of this test's own; whatever is left of them is removed afterwards."""
    name, folder = f"sd-test-{uuid.uuid4().hex[:8]}", tmp_path / "pool"
    yield name, folder
    with contextlib.suppress(libvirt.libvirtError):
        leftover = connection.storagePoolLookupByName(name)
        with contextlib.suppress(libvirt.libvirtError):
            leftover.refresh(0)
            for volume in leftover.listAllVolumes():
                volume.delete(0)
            leftover.destroy()
        leftover.undefine()


@pytest.fixture
def base_image(tmp_path: Path) -> Path:
    """A tar.gz of a tiny root tree."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "hostname").write_text("guest1\n")
    (tree / "root").mkdir()
    (tree / "root" / "notes.txt").write_text("made from a tar baseImage\n")
    (tree / "bin").mkdir()
    (tree / "bin" / "sh").symlink_to("busybox")
    image = tmp_path / "base.tar.gz"
    with tarfile.open(image, "w:gz") as archive:
        archive.add(tree, arcname=".")
    return image


def backend(pool: tuple[str, Path], /, **attributes: object) -> ComponentSpec:
    name, folder = pool
    return ComponentSpec("sd_actors.plugins.LoopbackStorageBackend", {
        "poolName": name, "poolPath": str(folder), "volumeSize": "16m", "swapSize": "4m", "makeFs": "mkfs.ext4",
        "keepVolumes": False, **attributes})


def volume_names(connection: libvirt.virConnect, pool_name: str) -> set[str]:
    found = connection.storagePoolLookupByName(pool_name)
    found.refresh(0)
    return set(found.listVolumes())


def pool_exists(connection: libvirt.virConnect, name: str) -> bool:
    try:
        connection.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return False
    return True


def debugfs_cat(image: Path, path: str) -> str:
    result = subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, text=True,
                            check=True)
    return result.stdout


def make_volume(connection: libvirt.virConnect, pool: tuple[str, Path], name: str, content: bytes) -> Path:
    """A volume someone else made: a pool defined by the test, a file without sd-actors' mark."""
    pool_name, folder = pool
    folder.mkdir(parents=True, exist_ok=True)
    theirs = connection.storagePoolDefineXML(dir_pool_xml(pool_name, str(folder)), 0)
    theirs.create(0)
    volume = theirs.createXML(f"<volume><name>{name}</name><capacity unit='bytes'>{len(content)}</capacity>"
                              "<target><format type='raw'/></target></volume>", 0)
    Path(volume.path()).write_bytes(content)
    return Path(volume.path())


# -- LoopbackStorageBackend on qemu:///system -------------------------------------------------------------


def test_the_root_volume_holds_the_files_of_a_tar_base_image_and_the_swap_volume_a_swap_signature(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path) -> None:
    system.deploy(backend(pool, domainName="guest1", baseImage=str(base_image)), name="disks")

    pool_name, folder = pool
    root, swap = folder / "guest1.img", folder / "guest1-swap.img"
    assert volume_names(connection, pool_name) == {"guest1.img", "guest1-swap.img"}
    assert root.stat().st_size == 16 * 1024**2
    assert debugfs_cat(root, "/etc/hostname") == "guest1\n"
    assert debugfs_cat(root, "/root/notes.txt") == "made from a tar baseImage\n"
    with open(swap, "rb") as reading:
        reading.seek(SWAP_SIGNATURE_OFFSET)
        assert reading.read(10) == b"SWAPSPACE2"
    assert read_mark(str(root), VOLUME_OWNER_ATTRIBUTE) == {"app": "disks", "component": "disks", "host": "host1",
                                                            "domain": "guest1", "held": True}
    assert read_mark(str(folder), POOL_OWNER_ATTRIBUTE) is not None


def test_without_a_base_image_the_root_volume_gets_an_empty_filesystem_and_an_image_file_is_copied(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], tmp_path: Path) -> None:
    image = tmp_path / "disk.raw"
    image.write_bytes(b"BOOT" + bytes(4096) + b"END")

    ref = system.deploy(backend(pool, domainName="empty", swapSize="0"), name="disks")
    disks = ref.invoke("volumes_for", "copied", {"baseImage": str(image), "swapSize": "0"})

    _pool_name, folder = pool
    assert subprocess.run(["debugfs", "-R", "ls /", str(folder / "empty.img")], capture_output=True, text=True,
                          check=True).stdout.count("lost+found") == 1
    assert disks == [[str(folder / "copied.img"), "vda", "root"]]
    assert (folder / "copied.img").read_bytes()[:4 + 4096 + 3] == image.read_bytes()


def test_keep_volumes_false_deletes_the_volumes_and_the_pool_it_defined(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path) -> None:
    system.deploy(backend(pool, domainName="guest1", baseImage=str(base_image), keepVolumes=False), name="disks")

    record = system.terminate("disks")

    pool_name, folder = pool
    assert record.is_normal
    assert not pool_exists(connection, pool_name)
    assert not folder.exists()


@pytest.mark.parametrize(("keep", "left"), [
    (True, {"guest1.img", "guest1-swap.img"}),
    (False, set()),
    ("statuquo", {"guest1.img"}),
], ids=["true keeps all", "false deletes all of ours", "statuquo deletes what this deployment made"])
def test_keep_volumes_decides_what_is_left_after_teardown(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], keep: object, left: set[str]) -> None:
    # An earlier deployment of the same component left its root volume (keepVolumes true); this one reuses it
    # without being told to (it is this machine's own) and makes a swap volume.
    system.deploy(backend(pool, domainName="guest1", swapSize="0", keepVolumes=True), name="disks")
    system.terminate("disks")

    system.deploy(backend(pool, domainName="guest1", keepVolumes=keep), name="disks")
    pool_name, _folder = pool
    assert volume_names(connection, pool_name) == {"guest1.img", "guest1-swap.img"}
    system.terminate("disks")

    assert (volume_names(connection, pool_name) if pool_exists(connection, pool_name) else set()) == left


def test_keep_volumes_false_never_deletes_a_volume_sd_actors_did_not_make(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    theirs = make_volume(connection, pool, "guest1.img", b"their data")

    system.deploy(backend(pool, domainName="guest1", usingExistingVolumes=True, keepVolumes=False), name="disks")
    system.terminate("disks")

    pool_name, _folder = pool
    assert theirs.read_bytes() == b"their data"
    assert volume_names(connection, pool_name) == {"guest1.img"}  # the swap volume it made is gone; the pool stays


def test_an_existing_volume_is_not_taken_over_without_using_existing_volumes(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    theirs = make_volume(connection, pool, "guest1.img", b"their data")

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool, domainName="guest1"), name="disks")

    assert "volume 'guest1.img' of 'guest1' already exists" in excinfo.value.record.description
    assert "and was not made by sd-actors; set usingExistingVolumes true to use it" in excinfo.value.record.description
    assert excinfo.value.record.cause == "VolumeExists"
    assert theirs.read_bytes() == b"their data"
    pool_name, _folder = pool
    assert pool_exists(connection, pool_name)  # not ours: left defined


def kept_vm_pool(pool: tuple[str, Path], domain: str, base_image: Path, *, ha: bool = False) -> str:
    """A VM whose volumes are kept (keepVolumes true), inside an HARestarter if ``ha``."""
    pool_name, folder = pool
    vm = f"""web extends VM {{
                domainName "{domain}"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks;
                volumeSize "16m"; swapSize "4m"; baseImage "{base_image}"; keepVolumes true;
                domainLivenessDelay 100;
            }}"""
    return f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{ poolName "{pool_name}"; poolPath "{folder}"; makeFs "mkfs.ext4"; }}
            {f"ha extends HARestarter {{ {vm} }}" if ha else vm}
        }}
    """


def debugfs_write(image: Path, source: Path, name: str) -> None:
    """Put file ``source`` into the root folder of the ext filesystem in ``image`` (what a guest would do)."""
    subprocess.run(["debugfs", "-w", "-R", f"write {source} {name}", str(image)], capture_output=True, check=True)


def test_a_vm_deployed_again_finds_the_volumes_it_kept_and_uses_them_as_they_are(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path,
        tmp_path: Path) -> None:
    pool_name, folder = pool
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    root = folder / f"{domain}.img"
    description = kept_vm_pool(pool, domain, base_image)
    system.deploy(parse_string(description), name="pool")
    written = tmp_path / "written.txt"
    written.write_text("written by the guest\n")
    debugfs_write(root, written, "written.txt")
    root_inode = root.stat().st_ino
    assert system.terminate("pool").is_normal
    assert read_mark(str(root), VOLUME_OWNER_ATTRIBUTE) == {
        "app": "pool", "component": "pool:disks", "host": "host1", "domain": domain, "held": False}

    # usingExistingVolumes is false: the mark naming this app, component and machine is what lets it in.
    system.deploy(parse_string(description), name="pool")

    assert root.stat().st_ino == root_inode
    assert debugfs_cat(root, "/written.txt") == "written by the guest\n"  # not made again from baseImage
    assert debugfs_cat(root, "/etc/hostname") == "guest1\n"
    assert system.terminate("pool").is_normal
    assert volume_names(connection, pool_name) == {f"{domain}.img", f"{domain}-swap.img"}


def test_an_ha_vm_restarted_after_its_domain_was_destroyed_uses_the_volume_it_kept(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path,
        tmp_path: Path) -> None:
    _pool_name, folder = pool
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    root = folder / f"{domain}.img"
    system.deploy(parse_string(kept_vm_pool(pool, domain, base_image, ha=True)), name="pool")
    first = system.lookup("pool:ha:web")
    written = tmp_path / "written.txt"
    written.write_text("written before the crash\n")
    debugfs_write(root, written, "written.txt")
    root_inode = root.stat().st_ino

    test_driver = open_connection("test:///default")
    try:
        test_driver.lookupByName(domain).destroy()
        deadline = time.monotonic() + 10.0
        while not (system.lookup("pool:ha:web") is not first and system.lookup("pool:ha:web").state is State.STARTED):
            assert time.monotonic() < deadline, "the HARestarter did not restart the VM within 10 s"
            time.sleep(0.02)  # polling the tree: nothing to wait on
        assert test_driver.lookupByName(domain).isActive()
    finally:
        test_driver.close()

    assert first.state is State.FAILED
    assert system.lookup("pool:ha:web").description[HA_GENERATION] == 1
    assert root.stat().st_ino == root_inode
    assert debugfs_cat(root, "/written.txt") == "written before the crash\n"
    assert system.terminate("pool").is_normal


def test_volumes_kept_for_another_component_are_not_taken_over(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    system.deploy(backend(pool, domainName="guest1", swapSize="0", keepVolumes=True), name="disks")
    system.terminate("disks")
    _pool_name, folder = pool
    kept = (folder / "guest1.img").read_bytes()

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool, domainName="guest1", swapSize="0"), name="others")

    assert excinfo.value.record.cause == "VolumeExists"
    assert "volume 'guest1.img' of 'guest1' already exists in pool" in excinfo.value.record.description
    assert ("and was made by sd-actors for machine 'guest1' of component disks (application disks); set "
            "usingExistingVolumes true to use it, or give another volumeBaseName") in excinfo.value.record.description
    assert (folder / "guest1.img").read_bytes() == kept


@pytest.mark.parametrize("extension", ["tar", "tar.gz"])
def test_save_image_archives_the_root_filesystems_files(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path, tmp_path: Path,
        extension: str) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    system.deploy(backend(pool, domainName="guest1", baseImage=str(base_image), saveImage=True,
                          saveImagePath=str(saved), saveImageName="guest1-final", saveImageExtension=extension),
                  name="disks")

    system.terminate("disks")

    archive = saved / f"guest1-final.{extension}"
    with tarfile.open(archive) as reading:
        names = set(reading.getnames())
        hostname = reading.extractfile("etc/hostname")
        assert hostname is not None
        assert hostname.read() == b"guest1\n"
    assert {"etc/hostname", "root/notes.txt", "bin/sh"} <= names
    assert "lost+found" not in names
    assert list(saved.iterdir()) == [archive]


@pytest.mark.parametrize(("attributes", "message", "cause"), [
    ({"baseImage": "/nonexistent/base.tar.gz"},
     "baseImage '/nonexistent/base.tar.gz' of 'guest1' is not a file on this host; fix the path", "StorageError"),
    ({"volumeSize": "1.5g"}, "volumeSize is '1.5g'; give a whole number above 0 followed by k, m, g or t",
     "StorageError"),
    ({"volumeSize": "900t"}, "the volumes of 'guest1' need 900.0 TiB (volumeSize 900 TiB, swapSize 4 MiB) but pool",
     "StorageError"),
    ({"makeFs": "mkfs.nosuchfs"}, "'mkfs.nosuchfs' is not a program on this host; install it", "StorageError"),
    ({"volumeSize": "64k", "baseImage": "BASE"}, "volumeSize 64 KiB is too small for the files of baseImage",
     "StorageError"),
], ids=["missing baseImage", "malformed size", "does not fit the pool", "mkfs missing", "files do not fit"])
def test_bad_input_fails_the_backend_saying_what_to_fix_and_leaves_nothing_behind(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path,
        attributes: dict[str, object], message: str, cause: str) -> None:
    attributes = {key: str(base_image) if value == "BASE" else value for key, value in attributes.items()}

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool, domainName="guest1", **attributes), name="disks")

    pool_name, folder = pool
    assert message in excinfo.value.record.description
    assert excinfo.value.record.path == ("disks",)
    assert excinfo.value.record.cause == cause
    assert not pool_exists(connection, pool_name)
    assert not folder.exists()


def test_a_vm_gets_its_disks_from_its_storage_backend_and_they_go_when_it_goes(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path) -> None:
    pool_name, folder = pool
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{
                poolName "{pool_name}"; poolPath "{folder}"; makeFs "mkfs.ext4";
            }}
            web extends VM {{
                domainName "{domain}"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks;
                volumeSize "16m"; swapSize "4m"; baseImage "{base_image}"; keepVolumes false;
            }}
        }}
    """)

    system.deploy(description, name="pool")

    test_driver = open_connection("test:///default")
    try:
        xml = test_driver.lookupByName(domain).XMLDesc()
    finally:
        test_driver.close()
    assert f"<source file='{folder}/{domain}.img'/>" in xml
    assert f"<source file='{folder}/{domain}-swap.img'/>" in xml
    assert debugfs_cat(folder / f"{domain}.img", "/etc/hostname") == "guest1\n"
    system.terminate("pool")
    assert not pool_exists(connection, pool_name)


def test_a_vm_whose_backend_fails_to_make_its_volumes_fails_with_the_backends_reason(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    pool_name, folder = pool
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{ poolName "{pool_name}"; poolPath "{folder}"; }}
            web extends VM {{
                domainName "web-{uuid.uuid4().hex[:8]}"; hypervisor "test:///default";
                storageBackend LAZY ATTRIB disks; volumeSize "16m"; baseImage "/nonexistent/base.tar";
            }}
        }}
    """)

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(description, name="pool")

    assert excinfo.value.record.path == ("pool", "web")
    assert "baseImage '/nonexistent/base.tar'" in excinfo.value.record.description
    assert not pool_exists(connection, pool_name)


def test_a_pool_that_exists_is_used_and_never_removed(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    make_volume(connection, pool, "other.img", b"x")

    system.deploy(backend(pool, domainName="guest1", swapSize="0"), name="disks")
    system.terminate("disks")

    pool_name, _folder = pool
    assert pool_exists(connection, pool_name)
    assert volume_names(connection, pool_name) == {"other.img"}



def test_a_root_filesystem_that_cannot_be_saved_is_kept_whatever_keep_volumes_says(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path,
        tmp_path: Path) -> None:
    ref = system.deploy(backend(pool, domainName="guest1", baseImage=str(base_image), saveImage=True,
                                saveImagePath=str(tmp_path / "missing"), keepVolumes=False), name="disks")

    with pytest.raises(StorageError, match=r"saveImagePath .* is not a folder; create it or fix the path"):
        ref.invoke("release_volumes", "guest1")

    pool_name, folder = pool
    assert volume_names(connection, pool_name) == {"guest1.img"}
    assert debugfs_cat(folder / "guest1.img", "/etc/hostname") == "guest1\n"


def test_a_detached_vm_and_backend_keep_domain_and_volumes_and_the_next_system_reattaches_to_both(
        connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path) -> None:
    pool_name, folder = pool
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    description = f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{ poolName "{pool_name}"; poolPath "{folder}"; makeFs "mkfs.ext4"; }}
            web extends VM {{
                domainName "{domain}"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks;
                volumeSize "16m"; swapSize "4m"; baseImage "{base_image}"; keepVolumes false;
            }}
        }}
    """
    manager = make_plugin_manager(load_entry_points=False)
    test_driver = open_connection("test:///default")  # held open: the test driver forgets all with its last one
    try:
        with open_system(plugin_manager=manager, clock=FakeClock(), host="host1") as first:
            first.deploy(parse_string(description), name="pool")
            root_inode = (folder / f"{domain}.img").stat().st_ino
            first.close(detach=True)

        assert volume_names(connection, pool_name) == {f"{domain}.img", f"{domain}-swap.img"}
        uuid_before = test_driver.lookupByName(domain).UUIDString()
        assert test_driver.lookupByName(domain).isActive()

        with open_system(plugin_manager=manager, clock=FakeClock(), host="host1") as second:
            second.deploy(parse_string(description), name="pool")
            assert test_driver.lookupByName(domain).UUIDString() == uuid_before
            assert (folder / f"{domain}.img").stat().st_ino == root_inode  # the same volume, not made again
            assert second.terminate("pool").is_normal

        assert domain not in {d.name() for d in test_driver.listAllDomains()}
    finally:
        test_driver.close()
    assert not pool_exists(connection, pool_name)  # keepVolumes false: what it made is gone, pool too


def test_the_library_vm_carries_the_2007_storage_defaults_the_backend_applies() -> None:
    config: Any = parse_string('#include "ch/cern/openlab/smartdomains/components.sf"\n'
                               'sfConfig extends Compound { vm extends VM { domainName "vm1"; } }')

    assert {name: config["vm"][name] for name in DEFAULTS} == dict(DEFAULTS)


def test_a_vm_storage_attribute_wins_over_its_backends_which_wins_over_the_default(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    pool_name, folder = pool
    plain, sized = f"sd-{uuid.uuid4().hex[:8]}", f"sd-{uuid.uuid4().hex[:8]}"
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{
                poolName "{pool_name}"; poolPath "{folder}"; makeFs "mkfs.ext4";
                volumeSize "8m"; swapSize "0"; keepVolumes true;
            }}
            plain extends VM {{ domainName "{plain}"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks; }}
            sized extends VM {{
                domainName "{sized}"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks;
                volumeSize "12m"; swapSize "4m"; keepVolumes false;
            }}
        }}
    """)

    system.deploy(description, name="pool")
    sizes = {path.name: path.stat().st_size for path in folder.iterdir()}
    system.terminate("pool")

    assert sizes == {f"{plain}.img": 8 * 1024**2, f"{sized}.img": 12 * 1024**2, f"{sized}-swap.img": 4 * 1024**2}
    assert volume_names(connection, pool_name) == {f"{plain}.img"}  # the backend's keepVolumes true; the VM's false


def qemu_img_info(path: Path) -> dict[str, object]:
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True,
                            check=True)
    info: dict[str, object] = json.loads(result.stdout)
    return info


def test_qcow2_volumes_hold_the_base_image_and_swap_and_their_files_can_be_saved(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], base_image: Path,
        tmp_path: Path) -> None:
    pool_name, folder = pool
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LoopbackStorageBackend {{
                poolName "{pool_name}"; poolPath "{folder}"; makeFs "mkfs.ext4"; volumeFormat "qcow2";
            }}
            web extends VM {{
                domainName "{domain}"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks;
                volumeSize "16m"; swapSize "4m"; baseImage "{base_image}"; keepVolumes false;
                saveImage true; saveImagePath "{tmp_path}"; saveImageExtension "tar";
            }}
        }}
    """)

    system.deploy(description, name="pool")

    root, swap = folder / f"{domain}.img", folder / f"{domain}-swap.img"
    assert (qemu_img_info(root)["format"], qemu_img_info(root)["virtual-size"]) == ("qcow2", 16 * 1024**2)
    assert (qemu_img_info(swap)["format"], qemu_img_info(swap)["virtual-size"]) == ("qcow2", 4 * 1024**2)
    raw_swap = tmp_path / "swap.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(swap), str(raw_swap)], check=True)
    with open(raw_swap, "rb") as reading:
        reading.seek(SWAP_SIGNATURE_OFFSET)
        assert reading.read(10) == b"SWAPSPACE2"
    test_driver = open_connection("test:///default")
    try:
        xml = test_driver.lookupByName(domain).XMLDesc()
    finally:
        test_driver.close()
    assert "<driver name='qemu' type='qcow2'/>" in xml
    system.terminate("pool")
    with tarfile.open(tmp_path / f"{domain}.tar") as saved:
        hostname = saved.extractfile("etc/hostname")
        assert hostname is not None
        assert hostname.read() == b"guest1\n"
    assert not pool_exists(connection, pool_name)


def test_a_qcow2_base_image_file_is_converted_into_a_raw_volume(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path], tmp_path: Path) -> None:
    raw_image = tmp_path / "disk.raw"
    raw_image.write_bytes(b"BOOT" + bytes(70_000) + b"END")
    qcow2_image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw_image), str(qcow2_image)], check=True)

    system.deploy(backend(pool, domainName="guest1", baseImage=str(qcow2_image), swapSize="0"), name="disks")

    _pool_name, folder = pool
    assert (folder / "guest1.img").read_bytes()[:len(raw_image.read_bytes())] == raw_image.read_bytes()
    assert (folder / "guest1.img").stat().st_size == 16 * 1024**2


def test_an_unknown_volume_format_is_refused_naming_the_formats(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool, volumeFormat="vmdk"), name="disks")

    assert "volumeFormat is 'vmdk'; give \"raw\" or \"qcow2\"" in excinfo.value.record.description
    assert not pool_exists(connection, pool[0])


def test_a_backend_whose_connection_libvirtd_dropped_makes_volumes_through_a_new_one(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    before = libvirtd_clients_of_this_process()
    ref = system.deploy(backend(pool, swapSize="0"), name="disks")
    (systems,) = libvirtd_clients_of_this_process() - before

    subprocess.run(["virt-admin", "client-disconnect", "libvirtd", systems], check=True, capture_output=True)
    disks = ref.invoke("volumes_for", "guest2")

    pool_name, folder = pool
    assert disks == [[str(folder / "guest2.img"), "vda", "root"]]
    assert volume_names(connection, pool_name) == {"guest2.img"}
    system.terminate("disks")
    assert not pool_exists(connection, pool_name)


def test_a_raw_volume_a_guest_wrote_qcow2s_signature_on_is_still_given_as_raw(
        system: System, connection: libvirt.virConnect, pool: tuple[str, Path]) -> None:
    ref = system.deploy(backend(pool, domainName="guest1", swapSize="0"), name="disks")
    _pool_name, folder = pool
    # What a guest can do to its own disk: a qcow2 header naming a backing file on the host.
    with open(folder / "guest1.img", "r+b") as disk:
        disk.write(b"QFI\xfb\x00\x00\x00\x03")

    disks = ref.invoke("volumes_for", "guest1")

    assert disks == [[str(folder / "guest1.img"), "vda", "root"]]  # no "qcow2": the host never follows it
