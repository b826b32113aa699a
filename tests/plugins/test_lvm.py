"""LVMStorageBackend on libvirt's test driver, whose logical pools and volumes are simulated.

The test driver's volume groups are testvg1 and testvg2; its logical volumes have sizes and take
room in their pool but hold no bytes, so what is checked here is everything but the filesystems:
the pool, the volumes and their sizes, the block devices in the domain XML, keepVolumes,
ownership, detach and re-attach, and the errors. (Filesystems, swap and saveImage are the same
code as LoopbackStorageBackend's, tested on real files in test_storage.py.) Each test has a pool
of its own over the shared test:///default state, removed afterwards with whatever is left in it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import libvirt
import pytest

from sd_actors.actors import ComponentFailed, ComponentSpec, FakeClock, State, System, open_system
from sd_actors.descriptions import parse_string
from sd_actors.plugins import hypervisor_connection, make_plugin_manager
from sd_actors.plugins._libvirt_events import open_connection
from sd_actors.plugins._storage import (
    OWNER_TAG_PREFIX,
    StorageError,
    logical_pool_xml,
    logical_volume_xml,
    owner_tag,
    read_owner_tag,
)
from sd_actors.policies import HA_GENERATION
from tests.actors.daemon_helpers import DaemonProcess, User, free_port, running_daemon
from tests.plugins.hosts_xml import write_test_host

TEST_DRIVER: Final = "test:///default"
GROUP: Final = "testvg1"
"""A volume group the test driver says its host has (the other is testvg2)."""
MIB: Final = 1024**2


@pytest.fixture
def test_driver() -> Iterator[libvirt.virConnect]:
    """A connection held open for the whole test: the test driver forgets everything with its last one."""
    connection = open_connection(TEST_DRIVER)
    yield connection
    connection.close()


@pytest.fixture
def pool_name(test_driver: libvirt.virConnect) -> Iterator[str]:
    """A pool name of this test's own; the pool and its volumes are removed afterwards if they are left."""
    name = f"sd-lvm-{uuid.uuid4().hex[:8]}"
    yield name
    with contextlib.suppress(libvirt.libvirtError):
        leftover = test_driver.storagePoolLookupByName(name)
        with contextlib.suppress(libvirt.libvirtError):
            leftover.refresh(0)
            for volume in leftover.listAllVolumes():
                volume.delete(0)
            leftover.destroy()
        leftover.undefine()


@pytest.fixture
def system() -> Iterator[System]:
    with open_system(plugin_manager=make_plugin_manager(load_entry_points=False), clock=FakeClock(),
                     host="host1") as opened:
        yield opened


def backend(pool_name: str, /, **attributes: object) -> ComponentSpec:
    return ComponentSpec("sd_actors.plugins.LVMStorageBackend", {
        "volumeGroup": GROUP, "poolName": pool_name, "hypervisor": TEST_DRIVER, "volumeSize": "16m",
        "swapSize": "4m", "keepVolumes": False, **attributes})


def pool_with_vm(pool_name: str, domain: str, vm_attributes: str = "") -> str:
    return f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LVMStorageBackend {{
                volumeGroup "{GROUP}"; poolName "{pool_name}"; hypervisor "{TEST_DRIVER}";
            }}
            web extends VM {{
                domainName "{domain}"; hypervisor "{TEST_DRIVER}"; storageBackend LAZY ATTRIB disks;
                volumeSize "20m"; swapSize "8m"; keepVolumes false; {vm_attributes}
            }}
        }}
    """


def volume_sizes(connection: libvirt.virConnect, pool_name: str) -> dict[str, tuple[int, int]]:
    """``{name: (capacity, allocation)}`` of the pool's volumes; empty when the pool is gone."""
    try:
        pool = connection.storagePoolLookupByName(pool_name)
    except libvirt.libvirtError:
        return {}
    pool.refresh(0)
    sizes = {}
    for volume in pool.listAllVolumes():
        _kind, capacity, allocation = volume.info()
        sizes[volume.name()] = (capacity, allocation)
    return sizes


def pool_exists(connection: libvirt.virConnect, name: str) -> bool:
    try:
        connection.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return False
    return True


def their_pool_with_volume(connection: libvirt.virConnect, pool_name: str, volume: str, *,
                           group: str = GROUP) -> None:
    """A logical pool and a volume someone else made (no sd-actors tag)."""
    pool = connection.storagePoolDefineXML(logical_pool_xml(pool_name, group), 0)
    pool.create(0)
    pool.createXML(logical_volume_xml(volume, 2 * MIB), 0)


# -- pure parts --------------------------------------------------------------------------------------------


def test_a_logical_volume_is_allocated_whole_so_libvirt_makes_a_plain_one() -> None:
    assert logical_volume_xml("web1", 16 * MIB) == (
        "<volume><name>web1</name><capacity unit=\"bytes\">16777216</capacity>"
        "<allocation unit=\"bytes\">16777216</allocation></volume>")


def test_the_owner_tag_holds_only_characters_lvm_allows_and_reads_back() -> None:
    mark = {"app": "pool «é» 1", "component": "pool «é» 1:disks", "host": "host1", "domain": "a b", "held": True}

    tag = owner_tag(mark)

    assert tag.startswith(OWNER_TAG_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9_+.\-/=!:#&]+", tag)
    assert read_owner_tag(["other", tag]) == mark
    assert read_owner_tag(["other", OWNER_TAG_PREFIX + "%%%"]) is None
    assert read_owner_tag([]) is None


def test_an_owner_tag_longer_than_lvm_allows_is_refused_saying_what_to_shorten() -> None:
    with pytest.raises(StorageError, match=r"make an LVM tag of \d+ characters, above LVM's 1024; give the "
                                           "application and its components shorter names"):
        owner_tag({"app": "a" * 800, "component": "a" * 800})


# -- the backend on the test driver ------------------------------------------------------------------------


def test_a_vm_gets_its_logical_volumes_as_block_devices_of_the_sizes_asked_and_they_go_when_it_goes(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    domain = f"sd-{uuid.uuid4().hex[:8]}"

    system.deploy(parse_string(pool_with_vm(pool_name, domain)), name="pool")

    xml = test_driver.lookupByName(domain).XMLDesc()
    assert (f"<disk type='block' device='disk'>\n      <source dev='/dev/{GROUP}/{domain}'/>\n"
            "      <target dev='vda' bus='virtio'/>") in xml
    assert f"<source dev='/dev/{GROUP}/{domain}-swap'/>\n      <target dev='vdb' bus='virtio'/>" in xml
    assert volume_sizes(test_driver, pool_name) == {domain: (20 * MIB, 20 * MIB),
                                                     f"{domain}-swap": (8 * MIB, 8 * MIB)}
    assert system.terminate("pool").is_normal
    assert domain not in {found.name() for found in test_driver.listAllDomains()}
    assert not pool_exists(test_driver, pool_name)  # it defined the pool and nothing is left in it


def test_on_the_test_driver_filesystems_are_not_made_and_that_is_said_once(
        system: System, test_driver: libvirt.virConnect, pool_name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sd_actors.plugins._storage")

    ref = system.deploy(backend(pool_name, domainName="guest1", baseImage="/data/xen/slc3.img",
                                makeFs="mkfs.ext4"), name="disks")
    ref.invoke("volumes_for", "guest2")

    said = [record.getMessage() for record in caplog.records if "simulates its logical volumes" in record.getMessage()]
    assert said == [("disks: test:///default simulates its logical volumes, which hold no bytes: makeFs, baseImage "
                     "and mkswap are not applied, the machines get their disks empty")]
    assert set(volume_sizes(test_driver, pool_name)) == {"guest1", "guest1-swap", "guest2", "guest2-swap"}


def test_a_simulated_host_of_its_own_keeps_its_machines_logical_volumes(system: System, tmp_path: Path) -> None:
    host = write_test_host(tmp_path, name="host2", cpus=4, memory_mib=8192)

    system.deploy(parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LVMStorageBackend {{ volumeGroup "testvg2"; hypervisor "{host}"; swapSize "0"; }}
            web extends VM {{ domainName "web"; hypervisor "{host}"; storageBackend LAZY ATTRIB disks; }}
        }}
    """), name="pool")

    connection = hypervisor_connection(system, host)  # the System's own: each connection to a host file is a host
    assert "<source dev='/dev/testvg2/web'/>" in connection.lookupByName("web").XMLDesc()
    assert volume_sizes(connection, "testvg2") == {"web": (1024 * MIB, 1024 * MIB)}  # the 2007 default, 1g
    system.terminate("pool")
    assert not pool_exists(connection, "testvg2")  # statuquo: what it made is gone, and the pool it defined


def test_save_image_is_refused_on_the_test_driver_as_there_are_no_files_to_save(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool_name, domainName="guest1", saveImage=True), name="disks")

    assert ("saveImage is true for 'guest1', but the volumes of test:///default are simulated and hold no files "
            "to archive; set saveImage false") in excinfo.value.record.description
    assert not pool_exists(test_driver, pool_name)


def test_the_test_driver_needs_no_device_mapper(
        system: System, test_driver: libvirt.virConnect, pool_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sd_actors.plugins._storage.has_device_mapper", lambda: False)

    system.deploy(backend(pool_name, domainName="guest1", swapSize="0"), name="disks")

    assert volume_sizes(test_driver, pool_name) == {"guest1": (16 * MIB, 16 * MIB)}


@pytest.mark.parametrize(("keep", "left"), [
    (True, {"guest1", "guest1-swap"}),
    (False, set()),
    ("statuquo", {"guest1"}),
], ids=["true keeps all", "false deletes all of ours", "statuquo deletes what this deployment made"])
def test_keep_volumes_decides_which_logical_volumes_are_left_after_teardown(
        system: System, test_driver: libvirt.virConnect, pool_name: str, keep: object, left: set[str]) -> None:
    # An earlier deployment of the same component left its root volume (keepVolumes true); this one reuses it
    # without being told to (it is this machine's own) and makes a swap volume.
    system.deploy(backend(pool_name, domainName="guest1", swapSize="0", keepVolumes=True), name="disks")
    system.terminate("disks")

    system.deploy(backend(pool_name, domainName="guest1", keepVolumes=keep), name="disks")
    assert set(volume_sizes(test_driver, pool_name)) == {"guest1", "guest1-swap"}
    system.terminate("disks")

    assert set(volume_sizes(test_driver, pool_name)) == left


def test_a_logical_volume_that_existed_before_is_used_when_asked_and_never_deleted(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    their_pool_with_volume(test_driver, pool_name, "guest1")

    system.deploy(backend(pool_name, domainName="guest1", usingExistingVolumes=True, keepVolumes=False), name="disks")
    system.terminate("disks")

    assert volume_sizes(test_driver, pool_name) == {"guest1": (2 * MIB, 2 * MIB)}  # our swap volume is gone


def test_a_logical_volume_that_exists_is_not_taken_over_without_using_existing_volumes(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    their_pool_with_volume(test_driver, pool_name, "guest1")

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool_name, domainName="guest1"), name="disks")

    assert (f"volume 'guest1' of 'guest1' already exists in pool '{pool_name}' (/dev/{GROUP}/guest1) and was not "
            "made by sd-actors; set usingExistingVolumes true to use it") in excinfo.value.record.description
    assert excinfo.value.record.cause == "VolumeExists"
    assert volume_sizes(test_driver, pool_name) == {"guest1": (2 * MIB, 2 * MIB)}


def test_without_pool_name_the_logical_pool_over_the_group_is_used_and_left_defined(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    their_pool_with_volume(test_driver, pool_name, "theirs", group="testvg2")

    system.deploy(backend(pool_name, volumeGroup="testvg2", poolName=None, domainName="guest1"), name="disks")
    made = volume_sizes(test_driver, pool_name)
    system.terminate("disks")

    assert set(made) == {"theirs", "guest1", "guest1-swap"}
    assert volume_sizes(test_driver, pool_name) == {"theirs": (2 * MIB, 2 * MIB)}


def kept_vm_pool(pool_name: str, domain: str, volume_size: str, *, ha: bool = False) -> str:
    """A VM whose logical volumes are kept (keepVolumes true), inside an HARestarter if ``ha``."""
    vm = f"""web extends VM {{
                domainName "{domain}"; hypervisor "{TEST_DRIVER}"; storageBackend LAZY ATTRIB disks;
                volumeSize "{volume_size}"; swapSize "8m"; keepVolumes true; domainLivenessDelay 100;
            }}"""
    return f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            disks extends LVMStorageBackend {{
                volumeGroup "{GROUP}"; poolName "{pool_name}"; hypervisor "{TEST_DRIVER}";
            }}
            {f"ha extends HARestarter {{ {vm} }}" if ha else vm}
        }}
    """


def test_a_vm_deployed_again_finds_the_logical_volumes_it_kept_and_uses_them_as_they_are(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    system.deploy(parse_string(kept_vm_pool(pool_name, domain, "20m")), name="pool")
    assert system.terminate("pool").is_normal

    # usingExistingVolumes is false: the tag naming this app, component and machine is what lets it in.
    system.deploy(parse_string(kept_vm_pool(pool_name, domain, "24m")), name="pool")

    assert f"<source dev='/dev/{GROUP}/{domain}'/>" in test_driver.lookupByName(domain).XMLDesc()
    # The kept volume as it was (20m), not made again at the new volumeSize.
    assert volume_sizes(test_driver, pool_name) == {domain: (20 * MIB, 20 * MIB), f"{domain}-swap": (8 * MIB, 8 * MIB)}
    assert system.terminate("pool").is_normal
    assert set(volume_sizes(test_driver, pool_name)) == {domain, f"{domain}-swap"}


def test_an_ha_vm_restarted_after_its_domain_was_destroyed_uses_the_logical_volumes_it_kept(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    system.deploy(parse_string(kept_vm_pool(pool_name, domain, "20m", ha=True)), name="pool")
    first = system.lookup("pool:ha:web")

    test_driver.lookupByName(domain).destroy()
    deadline = time.monotonic() + 10.0
    while not (system.lookup("pool:ha:web") is not first and system.lookup("pool:ha:web").state is State.STARTED):
        assert time.monotonic() < deadline, "the HARestarter did not restart the VM within 10 s"
        time.sleep(0.02)  # polling the tree: nothing to wait on

    assert test_driver.lookupByName(domain).isActive()
    assert system.lookup("pool:ha:web").description[HA_GENERATION] == 1
    assert volume_sizes(test_driver, pool_name) == {domain: (20 * MIB, 20 * MIB), f"{domain}-swap": (8 * MIB, 8 * MIB)}
    assert system.terminate("pool").is_normal


def test_logical_volumes_kept_for_another_component_are_not_taken_over(
        system: System, test_driver: libvirt.virConnect, pool_name: str) -> None:
    system.deploy(backend(pool_name, domainName="guest1", swapSize="0", keepVolumes=True), name="disks")
    system.terminate("disks")

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool_name, domainName="guest1", swapSize="0"), name="others")

    assert excinfo.value.record.cause == "VolumeExists"
    assert (f"volume 'guest1' of 'guest1' already exists in pool '{pool_name}' (/dev/{GROUP}/guest1) and was made "
            "by sd-actors for machine 'guest1' of component disks (application disks); set usingExistingVolumes true "
            "to use it, or give another volumeBaseName") in excinfo.value.record.description
    assert volume_sizes(test_driver, pool_name) == {"guest1": (16 * MIB, 16 * MIB)}


@pytest.mark.parametrize(("attributes", "message"), [
    ({"volumeGroup": "vg9"}, ("volumeGroup 'vg9' is not a volume group of test:///default (it has testvg1, "
                              "testvg2); give one of those, or make it first (vgcreate vg9 DEVICE)")),
    ({"volumeGroup": "vg/0"}, "volumeGroup is 'vg/0'; an LVM volume group name holds only letters, digits"),
    ({"volumeGroup": None}, "volumeGroup is None; give the name of an LVM volume group"),
    ({"volumeSize": "900t"}, ("the volumes of 'guest1' need 900.0 TiB (volumeSize 900 TiB, swapSize 4 MiB) but "
                              "pool 'POOL' has 100 GiB free; give smaller sizes or free extents in volume group "
                              "'testvg1'")),
    ({"volumeBaseName": "web 1"}, ("'web 1' of 'guest1' cannot name a logical volume; give a domainName or "
                                   "volumeBaseName of letters, digits and + _ . -")),
    ({"hypervisor": "qemu+ssh://elsewhere/system"}, "hypervisor 'qemu+ssh://elsewhere/system' is another host"),
], ids=["group the host lacks", "group name LVM refuses", "no group", "does not fit", "bad volume name", "remote"])
def test_bad_input_fails_the_backend_saying_what_to_fix_and_leaves_nothing_behind(
        system: System, test_driver: libvirt.virConnect, pool_name: str, attributes: dict[str, object],
        message: str) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(backend(pool_name, domainName="guest1", **attributes), name="disks")

    assert message.replace("POOL", pool_name) in excinfo.value.record.description
    assert excinfo.value.record.path == ("disks",)
    assert not pool_exists(test_driver, pool_name)


def test_a_detached_vm_and_lvm_backend_keep_domain_and_volumes_and_the_next_system_reattaches_to_both(
        test_driver: libvirt.virConnect, pool_name: str) -> None:
    domain = f"sd-{uuid.uuid4().hex[:8]}"
    description = pool_with_vm(pool_name, domain)
    manager = make_plugin_manager(load_entry_points=False)
    with open_system(plugin_manager=manager, clock=FakeClock(), host="host1") as first:
        first.deploy(parse_string(description), name="pool")
        first.close(detach=True)

    assert set(volume_sizes(test_driver, pool_name)) == {domain, f"{domain}-swap"}
    uuid_before = test_driver.lookupByName(domain).UUIDString()
    assert test_driver.lookupByName(domain).isActive()

    with open_system(plugin_manager=manager, clock=FakeClock(), host="host1") as second:
        # usingExistingVolumes is false: only the tags saying they are still held let it take them back.
        second.deploy(parse_string(description), name="pool")
        assert test_driver.lookupByName(domain).UUIDString() == uuid_before
        assert second.terminate("pool").is_normal

    assert domain not in {found.name() for found in test_driver.listAllDomains()}
    assert volume_sizes(test_driver, pool_name) == {}  # keepVolumes false: what it made is gone


# -- through the CLI and a daemon --------------------------------------------------------------------------


LVM_POOL: Final = """
    #include "ch/cern/openlab/smartdomains/components.sf"
    sfConfig extends Compound {
        disks extends LVMStorageBackend { volumeGroup "GROUP"; hypervisor "test:///default"; keepVolumes false; }
        web1 extends VM { domainName "web1"; hypervisor "test:///default"; storageBackend LAZY ATTRIB disks; }
    }
"""


@pytest.fixture
def user(tmp_path: Path) -> User:
    return User.make(tmp_path / "alice")


@pytest.fixture
def daemon(user: User, tmp_path: Path) -> Iterator[DaemonProcess]:
    with running_daemon(user, tmp_path / "daemon-state", free_port()) as started:
        yield started


def test_up_and_down_of_a_pool_on_lvm_make_and_remove_its_logical_volumes(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    description = tmp_path / "lvm.sf"
    description.write_text(LVM_POOL.replace("GROUP", "testvg2"))

    up = user.run("up", str(description), "--host", daemon.host)
    down = user.run("down", "lvm", "--host", daemon.host)

    assert up.returncode == 0, up.stdout + up.stderr
    assert re.search(r"^lvm is up: 3 components started in \d+\.\d\d s$", up.stdout, re.MULTILINE), up.stdout
    assert down.returncode == 0, down.stdout + down.stderr
    log = daemon.log()
    assert "lvm:disks: test:///default simulates its logical volumes, which hold no bytes" in log
    assert "lvm:disks: volumes of 'web1' ready: /dev/testvg2/web1, /dev/testvg2/web1-swap" in log
    assert "lvm:disks: deleted volume /dev/testvg2/web1\n" in log
    assert "lvm:disks: removed pool 'testvg2' (volume group 'testvg2' left as it is)" in log


def test_up_of_a_pool_on_a_volume_group_the_host_lacks_exits_1_naming_the_groups_it_has(
        user: User, daemon: DaemonProcess, tmp_path: Path) -> None:
    description = tmp_path / "lvm.sf"
    description.write_text(LVM_POOL.replace("GROUP", "vg9"))

    up = user.run("up", str(description), "--host", daemon.host)

    assert up.returncode == 1
    assert ("volumeGroup 'vg9' is not a volume group of test:///default (it has testvg1, testvg2); give one of "
            "those, or make it first (vgcreate vg9 DEVICE)") in up.stdout, up.stdout
