"""VM: domain XML made from the 2007 attributes, and a component that defines, starts, watches and
tears down its libvirt domain, owning only what it created.

Everything runs on libvirt's test driver: ``test:///default`` is one in-memory hypervisor per
process, shared by every connection, so each test names its domains uniquely. Its lifecycle events
are real (delivered by libvirt's event loop thread); time for the state poll and pings is a
FakeClock that only the test moves.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import libvirt
import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    Component,
    ComponentFailed,
    ComponentRef,
    ComponentSpec,
    FakeClock,
    State,
    System,
    TerminationRecord,
    open_system,
)
from sd_actors.descriptions import DescriptionError, parse_string
from sd_actors.plugins import hookimpl, make_plugin_manager
from sd_actors.plugins._domain_xml import (
    METADATA_NAMESPACE,
    Disk,
    DomainSpec,
    Owner,
    default_domain_type,
    domain_xml,
    kernel_command_line,
    read_owner,
)
from sd_actors.plugins._libvirt_events import EVENT_THREAD_NAME, ensure_event_loop, open_connection
from sd_actors.plugins._vm import VM, DomainError, domain_resource, parse_domain_resource, state_names

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the code is broken."""
TEST_HYPERVISOR: Final = "test:///default"
FINAL: Final = (State.TERMINATED, State.FAILED)
NS: Final = f"{{{METADATA_NAMESPACE}}}"


def spec(**changes: object) -> DomainSpec:
    values: dict[str, object] = {
        "name": "web1", "memory": 256, "vcpus": 2, "domain_type": "kvm",
        "owner": Owner(app="pool", component="pool:vms:web1", host="host1", process="rootProcess"),
    }
    values.update(changes)
    return DomainSpec(**values)  # type: ignore[arg-type]


def parsed(xml: str) -> ET.Element:
    return ET.fromstring(xml)  # noqa: S314 (our own output)


# -- the domain XML ----------------------------------------------------------------------------------


def test_the_domain_xml_carries_name_type_memory_in_mib_vcpus_and_acpi() -> None:
    domain = parsed(domain_xml(spec()))

    assert domain.tag == "domain"
    assert domain.get("type") == "kvm"
    assert domain.findtext("name") == "web1"
    memory = domain.find("memory")
    assert memory is not None
    assert (memory.text, memory.get("unit")) == ("256", "MiB")
    assert domain.findtext("vcpu") == "2"
    assert domain.find("features/acpi") is not None
    assert domain.findtext("os/type") == "hvm"


def test_a_kernel_boots_directly_with_its_ramdisk_and_command_line() -> None:
    domain = parsed(domain_xml(spec(kernel="/boot/vmlinuz", ramdisk="/boot/initrd.img", extra="quiet nousb")))

    assert domain.findtext("os/kernel") == "/boot/vmlinuz"
    assert domain.findtext("os/initrd") == "/boot/initrd.img"
    assert domain.findtext("os/cmdline") == "console=ttyS0 quiet nousb"
    assert domain.find("os/boot") is None


def test_without_a_kernel_the_domain_boots_from_its_disk() -> None:
    domain = parsed(domain_xml(spec()))

    assert domain.find("os/kernel") is None
    assert domain.find("os/cmdline") is None
    boot = domain.find("os/boot")
    assert boot is not None
    assert boot.get("dev") == "hd"


@pytest.mark.parametrize(("identity", "expected"), [
    ({"ip": "10.0.0.5", "gateway": "10.0.0.1", "netmask": "255.255.255.0", "hostname": "web1"},
     "console=ttyS0 ip=10.0.0.5::10.0.0.1:255.255.255.0:web1::off hostname=web1"),
    ({"ip": "10.0.0.5"}, "console=ttyS0 ip=10.0.0.5::::::off"),
    ({"hostname": "web1"}, "console=ttyS0 ip=::::web1::dhcp hostname=web1"),
    ({}, "console=ttyS0"),
], ids=["full identity", "address only", "hostname with dhcp", "nothing"])
def test_the_network_identity_goes_on_the_kernel_command_line(identity: dict[str, str], expected: str) -> None:
    domain_spec = spec(kernel="/boot/vmlinuz", **identity)

    assert kernel_command_line(domain_spec) == expected
    assert parsed(domain_xml(domain_spec)).findtext("os/cmdline") == expected


def test_the_root_disk_is_named_on_the_command_line_before_extra() -> None:
    disks = (Disk(source="/images/web1.img", target="vda", kind="root"),
             Disk(source="/images/web1.swap", target="vdb", kind="swap"))

    line = kernel_command_line(spec(kernel="/boot/vmlinuz", extra="ro", disks=disks))

    assert line == "console=ttyS0 root=/dev/vda ro"


def test_disks_are_files_or_block_devices_on_the_bus_their_names_imply() -> None:
    disks = (Disk(source="/images/web1.img", target="vda", kind="root"),
             Disk(source="/dev/vg0/web1-swap", target="xvdb", kind="swap"),
             Disk(source="/images/data.img", target="sdc", kind="swap"))

    elements = parsed(domain_xml(spec(disks=disks))).findall("devices/disk")

    found = [(e.get("type"), e.find("source").attrib, e.find("target").attrib)  # type: ignore[union-attr]
             for e in elements]
    assert found == [
        ("file", {"file": "/images/web1.img"}, {"dev": "vda", "bus": "virtio"}),
        ("block", {"dev": "/dev/vg0/web1-swap"}, {"dev": "xvdb", "bus": "xen"}),
        ("file", {"file": "/images/data.img"}, {"dev": "sdc", "bus": "scsi"}),
    ]


def test_the_interface_is_user_mode_unless_a_network_is_named() -> None:
    user = parsed(domain_xml(spec())).find("devices/interface")
    named = parsed(domain_xml(spec(network="default"))).find("devices/interface")

    assert user is not None
    assert named is not None
    assert user.get("type") == "user"
    assert named.get("type") == "network"
    assert named.find("source").attrib == {"network": "default"}  # type: ignore[union-attr]


def test_a_serial_console_is_attached() -> None:
    devices = parsed(domain_xml(spec())).find("devices")

    assert devices is not None
    assert devices.find("serial[@type='pty']/target") is not None
    console = devices.find("console/target")
    assert console is not None
    assert console.get("type") == "serial"


def test_a_xen_guest_with_a_kernel_runs_paravirtualised_on_the_xen_console() -> None:
    domain = parsed(domain_xml(spec(domain_type="xen", kernel="/boot/vmlinuz-xen")))

    assert domain.findtext("os/type") == "xen"
    assert domain.findtext("os/cmdline") == "console=hvc0"
    assert domain.find("devices/console/target").get("type") == "xen"  # type: ignore[union-attr]
    assert domain.find("devices/serial") is None


def test_the_metadata_names_app_component_host_and_process_in_our_namespace() -> None:
    domain = parsed(domain_xml(spec()))

    owner = domain.find(f"metadata/{NS}owner")
    assert owner is not None
    assert [(child.tag, child.text) for child in owner] == [
        (f"{NS}app", "pool"), (f"{NS}component", "pool:vms:web1"), (f"{NS}host", "host1"),
        (f"{NS}process", "rootProcess")]
    assert read_owner(domain_xml(spec())) == spec().owner


def test_odd_names_are_escaped_and_read_back_unchanged() -> None:
    odd = "a<b> & \"c\" 'd' é"
    owner = Owner(app=odd, component=f"{odd}:{odd}", host="h&<", process="p\"")

    xml = domain_xml(spec(name=odd, owner=owner, kernel="/boot/k <1>", extra="x=\"&\""))

    domain = parsed(xml)
    assert domain.findtext("name") == odd
    assert domain.findtext("os/kernel") == "/boot/k <1>"
    assert domain.findtext("os/cmdline") == "console=ttyS0 x=\"&\""
    assert read_owner(xml) == owner
    assert "<b>" not in xml


def test_a_domain_without_our_metadata_has_no_owner() -> None:
    assert read_owner("<domain type='test'><name>other</name></domain>") is None
    assert read_owner("<domain><metadata><owner xmlns='urn:someone-else'><app>a</app>"
                      "<component>a:b</component></owner></metadata></domain>") is None


@pytest.mark.parametrize(("changes", "message"), [
    ({"memory": 0}, "memory is 0; give a whole number of 1 MiB or more"),
    ({"vcpus": -1}, "vcpus is -1; give a whole number of 1 or more"),
    ({"name": ""}, "domainName is empty"),
    ({"hostname": "web 1"}, "hostname is 'web 1'"),
    ({"ip": "10.0.0.1:80"}, "ip is '10.0.0.1:80'"),
    ({"ramdisk": "/boot/initrd"}, "ramdisk is given without kernel"),
    ({"name": "bell\x07"}, "control character"),
    ({"disks": (Disk(source="/a", target="vda", kind="data"),)}, "of kind 'data'; give one of root, swap"),
    ({"disks": (Disk(source="/a", target="floppy0", kind="root"),)}, "disk target 'floppy0'"),
    ({"disks": (Disk(source="/a", target="vda", kind="root"), Disk(source="/b", target="vda", kind="swap"))},
     "two disks have target 'vda'"),
    ({"disks": (Disk(source="/a", target="vda", kind="root"), Disk(source="/b", target="vdb", kind="root"))},
     "more than one root disk"),
], ids=["no memory", "negative vcpus", "empty name", "hostname with a space", "ip with a port",
        "ramdisk alone", "control character", "unknown disk kind", "unknown disk target", "same target twice",
        "two roots"])
def test_invalid_values_are_refused_naming_the_attribute(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        spec(**changes)


def capabilities(*types: str) -> str:
    arches = "".join(f"<domain type='{kind}'/>" for kind in types)
    guest = f"<guest><os_type>hvm</os_type><arch name='x86_64'>{arches}</arch></guest>"
    return f"<capabilities><host/>{guest}</capabilities>"


@pytest.mark.parametrize(("offered", "chosen"), [
    (("qemu", "kvm"), "kvm"), (("qemu",), "qemu"), (("xen",), "xen"), (("test",), "test"), (("lxc",), "lxc"),
    ((), None),
], ids=["kvm when offered", "qemu otherwise", "xen host", "test driver", "anything else", "nothing"])
def test_the_default_domain_type_is_the_best_the_hypervisor_offers(offered: tuple[str, ...],
                                                                   chosen: str | None) -> None:
    assert default_domain_type(capabilities(*offered)) == chosen


def test_the_test_driver_offers_the_test_domain_type() -> None:
    connection = open_connection(TEST_HYPERVISOR)
    try:
        assert default_domain_type(connection.getCapabilities()) == "test"
    finally:
        connection.close()


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="virt-xml-validate (libvirt-clients) missing")
@pytest.mark.parametrize("changes", [
    {"domain_type": "kvm", "kernel": "/boot/vmlinuz", "ramdisk": "/boot/initrd.img", "ip": "10.0.0.5",
     "hostname": "web1", "disks": (Disk(source="/images/web1.img", target="vda", kind="root"),
                                   Disk(source="/images/web1.swap", target="vdb", kind="swap"))},
    {"domain_type": "qemu", "network": "default"},
    {"domain_type": "xen", "kernel": "/boot/vmlinuz", "ramdisk": "/boot/initrd.img", "extra": "fastboot",
     "disks": (Disk(source="/dev/vg0/web1", target="xvda", kind="root"),)},
    {"domain_type": "xen", "name": "a<b & \"c\""},
    {"domain_type": "kvm", "disks": (Disk(source="/images/web1.qcow2", target="vda", kind="root", format="qcow2"),)},
    {"domain_type": "qemu", "console_log": "/var/log/sd-actors/web1.console"},
    {"domain_type": "xen", "kernel": "/boot/vmlinuz", "console_log": "/var/log/sd-actors/web1.console"},
], ids=["kvm direct boot", "qemu on a network", "xen paravirtual", "xen hvm with an odd name", "kvm on qcow2",
        "qemu with a console log", "xen paravirtual with a console log"])
def test_the_generated_xml_is_valid_for_libvirts_domain_schema(tmp_path: Path, changes: dict[str, object]) -> None:
    document = tmp_path / "domain.xml"
    document.write_text(domain_xml(spec(**changes)))

    result = subprocess.run(["virt-xml-validate", str(document), "domain"], capture_output=True, text=True,
                            check=False)

    assert result.returncode == 0, result.stderr + result.stdout


def test_libvirt_state_and_reason_have_their_names() -> None:
    assert state_names(libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_DESTROYED) == ("SHUTOFF", "DESTROYED")
    assert state_names(libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_CRASHED_PANICKED) == ("CRASHED", "PANICKED")
    assert state_names(99, 7) == ("99", "7")


# -- the VM component on the test driver ---------------------------------------------------------------


class QuietVM(VM):
    """A VM that does not listen to libvirt's events: only its state poll and pings notice a stop."""

    def _watch_events(self) -> None:
        return None


class StartFailsVM(VM):
    """A VM whose start fails after deploy defined the domain."""

    def start(self) -> None:
        raise DomainError("start refused by the test")


class TestPlugin:
    @hookimpl
    def sd_actors_component_types(self) -> dict[str, type[Component]]:
        return {"tests.QuietVM": QuietVM, "tests.StartFailsVM": StartFailsVM}


@pytest.fixture
def connection() -> Iterator[libvirt.virConnect]:
    """The test's own view of the in-memory hypervisor, opened after libvirt's event loop."""
    opened = open_connection(TEST_HYPERVISOR)
    yield opened
    opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def system(clock: FakeClock) -> Iterator[System]:
    manager = make_plugin_manager(load_entry_points=False, plugins=[TestPlugin()])
    with open_system(plugin_manager=manager, clock=clock, host="host1") as system:
        yield system


@pytest.fixture
def name() -> str:
    """A domain name no other test uses (the test driver is shared by the whole process)."""
    return f"sd-{uuid.uuid4().hex[:10]}"


def vm(name: str, component: str = "sd_actors.plugins.VM", /, **attributes: object) -> ComponentSpec:
    return ComponentSpec(component, {"domainName": name, "memory": 64, "vcpus": 1, "hypervisor": TEST_HYPERVISOR,
                                     **attributes})


def exists(connection: libvirt.virConnect, name: str) -> bool:
    try:
        connection.lookupByName(name)
    except libvirt.libvirtError:
        return False
    return True


def ended(system: System, path: str) -> TerminationRecord:
    ref = system.wait_for_state(path, FINAL, timeout=WAIT)
    assert ref.record is not None
    return ref.record


def foreign_domain(connection: libvirt.virConnect, name: str, owner: Owner | None) -> libvirt.virDomain:
    """A domain defined by someone else: no metadata, or another component's."""
    xml = domain_xml(spec(name=name, domain_type="test", memory=32, owner=owner or Owner(app="x", component="x",
                                                                                        host="h")))
    if owner is None:
        document = parsed(xml)
        metadata = document.find("metadata")
        assert metadata is not None
        document.remove(metadata)
        xml = ET.tostring(document, encoding="unicode")
    domain = connection.defineXML(xml)
    domain.create()
    return domain


def test_a_vm_is_defined_and_running_with_our_metadata(system: System, connection: libvirt.virConnect,
                                                       name: str) -> None:
    system.deploy(vm(name, ip="10.0.0.5", hostname="web1", kernel="/boot/vmlinuz"), name="app")

    domain = connection.lookupByName(name)
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert read_owner(domain.XMLDesc()) == Owner(app="app", component="app", host="host1", process="rootProcess")
    document = parsed(domain.XMLDesc())
    assert document.get("type") == "test"
    assert document.findtext("memory") == str(64 * 1024)
    assert "ip=10.0.0.5::::web1::off" in (document.findtext("os/cmdline") or "")


def test_a_given_domain_type_overrides_the_hypervisors_default(system: System, connection: libvirt.virConnect,
                                                               name: str) -> None:
    system.deploy(vm(name, domainType="kvm"), name="app")

    assert parsed(connection.lookupByName(name).XMLDesc()).get("type") == "kvm"


def test_libvirts_event_loop_runs_on_one_thread_of_its_own_however_many_connections(
        connection: libvirt.virConnect) -> None:
    ensure_event_loop()
    second = open_connection(TEST_HYPERVISOR)
    second.close()

    loops = [thread for thread in threading.enumerate() if thread.name == EVENT_THREAD_NAME]
    assert len(loops) == 1
    assert loops[0].daemon


def test_terminating_the_vm_destroys_and_undefines_its_domain(system: System, connection: libvirt.virConnect,
                                                              name: str) -> None:
    system.deploy(vm(name), name="app")

    record = system.terminate("app")

    assert record.is_normal
    assert not exists(connection, name)


@pytest.mark.parametrize("owner", [None, Owner(app="other", component="other:vm", host="elsewhere")],
                         ids=["no metadata", "another app's metadata"])
def test_a_domain_of_the_same_name_not_ours_fails_the_deploy_and_is_left_untouched(
        system: System, connection: libvirt.virConnect, name: str, owner: Owner | None) -> None:
    theirs = foreign_domain(connection, name, owner)
    before = theirs.XMLDesc()

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(vm(name), name="app")

    assert f"a domain named {name!r} already exists" in excinfo.value.record.description
    assert excinfo.value.record.cause == "DomainNameTaken"
    assert connection.lookupByName(name).XMLDesc() == before
    assert connection.lookupByName(name).state()[0] == libvirt.VIR_DOMAIN_RUNNING
    theirs.destroy()
    theirs.undefine()


def test_a_detached_vm_leaves_its_domain_running_and_the_next_system_reattaches_to_it(
        clock: FakeClock, connection: libvirt.virConnect, name: str) -> None:
    manager = make_plugin_manager(load_entry_points=False)
    resources: list[str | None] = []
    with open_system(plugin_manager=manager, clock=clock, host="host1") as first:
        first.runtime.resource_recorder = lambda _ref, resource, _durable: resources.append(resource)
        first.deploy(vm(name), name="app")
        uuid_before = connection.lookupByName(name).UUIDString()
        first.close(detach=True)

    domain = connection.lookupByName(name)
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert resources == [f"libvirt:{TEST_HYPERVISOR}#{uuid_before}"]

    with open_system(plugin_manager=manager, clock=clock, host="host1") as second:
        second.runtime.resource_recorder = lambda _ref, resource, _durable: resources.append(resource)
        second.deploy(vm(name, memory=128), name="app")

        again = connection.lookupByName(name)
        assert again.UUIDString() == uuid_before
        assert parsed(again.XMLDesc()).findtext("memory") == str(64 * 1024)  # re-attached, not redefined
        assert second.terminate("app").is_normal
    assert not exists(connection, name)
    assert resources == [f"libvirt:{TEST_HYPERVISOR}#{uuid_before}"] * 2 + [None]


def test_a_domain_resource_names_the_hypervisor_and_the_uuid() -> None:
    resource = domain_resource("test:///tmp/a#b.xml", "6695eb01-f6a4-8304-79aa-97f2502e193f")

    assert parse_domain_resource(resource) == ("test:///tmp/a#b.xml", "6695eb01-f6a4-8304-79aa-97f2502e193f")
    assert parse_domain_resource("process-group:123") is None


@pytest.mark.parametrize("running", [True, False], ids=["running", "shut off"])
def test_a_domain_with_our_metadata_is_reattached_not_recreated(system: System, connection: libvirt.virConnect,
                                                                name: str, running: bool) -> None:
    owner = Owner(app="app", component="app", host="host1", process="rootProcess")
    ours = connection.defineXML(domain_xml(spec(name=name, domain_type="test", memory=32, owner=owner)))
    if running:
        ours.create()
    uuid_before = ours.UUIDString()

    system.deploy(vm(name, memory=128), name="app")

    domain = connection.lookupByName(name)
    assert domain.UUIDString() == uuid_before
    assert parsed(domain.XMLDesc()).findtext("memory") == str(32 * 1024)
    assert domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    system.terminate("app")
    assert not exists(connection, name)


def test_a_domain_destroyed_behind_our_back_fails_the_vm_with_libvirts_reason(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(vm(name), name="app")

    connection.lookupByName(name).destroy()  # the clock never moves: libvirt's event is what notices

    record = ended(system, "app")
    assert record.kind == ABNORMAL
    assert "stopped behind sd-actors' back: shutoff (destroyed)" in record.description
    assert record.cause == "libvirt state SHUTOFF, reason DESTROYED"
    assert not exists(connection, name)


def test_a_guest_that_shuts_itself_down_terminates_the_vm_normally(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(vm(name), name="app")

    connection.lookupByName(name).shutdown()

    record = ended(system, "app")
    assert record.kind == NORMAL
    assert record.description == f"the guest of domain {name!r} shut itself down"
    assert record.cause == "libvirt state SHUTOFF, reason SHUTDOWN"
    assert system.lookup("app").state is State.TERMINATED
    assert not exists(connection, name)


def test_without_events_the_state_poll_notices_a_stop_every_domain_liveness_delay(
        system: System, clock: FakeClock, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(vm(name, "tests.QuietVM", domainLivenessDelay=2000), name="app")
    connection.lookupByName(name).destroy()

    clock.advance(1.9)
    assert system.lookup("app").state is State.STARTED
    clock.advance(0.1)

    record = ended(system, "app")
    assert record.cause == "libvirt state SHUTOFF, reason DESTROYED"


def test_a_ping_notices_a_stop_too(system: System, clock: FakeClock, connection: libvirt.virConnect,
                                   name: str) -> None:
    system.deploy(vm(name, "tests.QuietVM", domainLivenessDelay=3_600_000, sfLivenessDelay=1), name="app")
    connection.lookupByName(name).destroy()

    clock.advance(1)

    record = ended(system, "app")
    assert record.cause == "libvirt state SHUTOFF, reason DESTROYED"


def test_a_domain_undefined_behind_our_back_fails_the_vm(system: System, clock: FakeClock,
                                                         connection: libvirt.virConnect, name: str) -> None:
    system.deploy(vm(name, "tests.QuietVM"), name="app")
    domain = connection.lookupByName(name)
    domain.destroy()
    domain.undefine()

    clock.advance(2)

    record = ended(system, "app")
    assert record.kind == ABNORMAL
    assert "no longer exists" in record.description


def test_with_domain_liveness_check_off_a_stop_is_not_watched(system: System, clock: FakeClock,
                                                              connection: libvirt.virConnect, name: str) -> None:
    system.deploy(vm(name, domainLivenessCheck=False), name="app")
    ref = system.lookup("app")

    connection.lookupByName(name).destroy()
    clock.advance(10)
    ref.call(lambda component: component.ping(), timeout=WAIT)  # after whatever the event or clock queued

    assert ref.state is State.STARTED
    system.terminate("app")
    assert not exists(connection, name)


def test_a_vm_described_with_the_library_deploys(system: System, connection: libvirt.virConnect, name: str) -> None:
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            web extends VM {{
                domainName "{name}-web"; hypervisor "test:///default"; memory 128; vcpus 2;
                kernel "/boot/vmlinuz"; ramdisk "/boot/initrd.img"; extra "fastboot";
                ip "192.168.1.10"; gateway "192.168.1.1"; netmask "255.255.255.0"; hostname "web";
            }}
            old extends XenDomain {{ domainName "{name}-old"; hypervisor "test:///default"; }}
        }}
    """)

    system.deploy(description, name="pool")

    web = parsed(connection.lookupByName(f"{name}-web").XMLDesc())
    assert web.findtext("memory") == str(128 * 1024)
    assert web.findtext("vcpu") == "2"
    assert web.findtext("os/cmdline") == ("console=ttyS0 fastboot ip=192.168.1.10::192.168.1.1:255.255.255.0:web::off "
                                          "hostname=web")
    assert read_owner(connection.lookupByName(f"{name}-old").XMLDesc()) == Owner(
        app="pool", component="pool:old", host="host1", process="rootProcess")
    system.terminate("pool")
    assert not exists(connection, f"{name}-web")
    assert not exists(connection, f"{name}-old")


def test_the_hypervisor_comes_from_the_system_property_then_the_environment(
        clock: FakeClock, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_plugin_manager(load_entry_points=False)
    attributes = {"domainName": name, "memory": 64}
    monkeypatch.setenv("SD_ACTORS_HYPERVISOR", "fromenv:///x")

    with open_system(plugin_manager=manager, clock=clock, properties={"sd_actors.hypervisor": "fromproperty:///x"}
                     ) as system, pytest.raises(ComponentFailed) as with_property:
        system.deploy(ComponentSpec("sd_actors.plugins.VM", attributes), name="app")
    with open_system(plugin_manager=manager, clock=clock) as system, pytest.raises(ComponentFailed) as with_env:
        system.deploy(ComponentSpec("sd_actors.plugins.VM", attributes), name="app")

    assert "cannot connect to hypervisor 'fromproperty:///x'" in with_property.value.record.description
    assert "cannot connect to hypervisor 'fromenv:///x'" in with_env.value.record.description


def test_without_any_hypervisor_setting_the_test_driver_is_used(system: System, connection: libvirt.virConnect,
                                                                name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SD_ACTORS_HYPERVISOR", raising=False)

    system.deploy(ComponentSpec("sd_actors.plugins.VM", {"domainName": name}), name="app")

    assert exists(connection, name)


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attributes", "message"), [
    ({"memory": "512m"}, "memory is '512m'; give a whole number of 1 MiB or more, e.g. memory 512;"),
    ({"vcpus": 0}, "vcpus is 0; give a whole number of 1 or more"),
    ({"memory": True}, "memory is True"),
    ({"hostname": "my host"}, "hostname is 'my host'"),
    ({"disks": "/images/a.img"}, "disks is '/images/a.img'; give a vector of [|source, target, kind|] vectors"),
    ({"disks": [["/images/a.img", "vda"]]}, "is not [|source, target, kind|]"),
    ({"disks": [["/images/a.img", "vda", "root", "vmdk"]]}, "disk 'vda' is of format 'vmdk'; give one of raw, qcow2"),
    ({"domainLivenessDelay": 0}, "domainLivenessDelay is 0; give milliseconds above 0"),
    ({"hypervisor": "nosuchdriver:///"}, "cannot connect to hypervisor 'nosuchdriver:///'"),
    ({"kernel": "/nonexistent/vmlinuz", "hypervisor": "qemu:///system"},
     "kernel '/nonexistent/vmlinuz' is not a file on this host; fix the path"),
    ({"domainName": "a/b"}, "cannot define domain 'a/b' on test:///default: XML error: name a/b cannot contain '/'"),
], ids=["memory with a unit", "no vcpus", "boolean memory", "hostname with a space", "disks not a vector",
        "disk of two parts", "disk of an unknown format", "no liveness delay", "unknown hypervisor", "missing kernel",
        "libvirt refuses"])
def test_bad_input_fails_the_deploy_saying_what_to_fix_and_defines_nothing(
        system: System, connection: libvirt.virConnect, name: str, attributes: dict[str, object],
        message: str) -> None:
    before = set(connection.listDefinedDomains()) | {d.name() for d in connection.listAllDomains()}

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(vm(name, **attributes), name="app")

    assert message in excinfo.value.record.description
    assert excinfo.value.record.path == ("app",)
    assert {d.name() for d in connection.listAllDomains()} == before


def test_a_vm_that_fails_after_defining_its_domain_undefines_it(system: System, connection: libvirt.virConnect,
                                                                name: str) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(vm(name, "tests.StartFailsVM"), name="app")

    assert "start refused by the test" in excinfo.value.record.description
    assert not exists(connection, name)


def test_xen_domain_is_the_vm_under_its_2007_name(system: System) -> None:
    ref: ComponentRef = system.deploy(ComponentSpec("sd_actors.plugins.XenDomain", {
        "domainName": f"xen-{uuid.uuid4().hex[:8]}", "hypervisor": TEST_HYPERVISOR}), name="app")

    assert type(ref.component) is VM


def test_a_library_vm_takes_disks_and_a_network_written_in_the_description(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    description = parse_string(f"""
        #include "ch/cern/openlab/smartdomains/components.sf"
        sfConfig extends Compound {{
            web extends VM {{
                domainName "{name}"; hypervisor "test:///default"; network "default";
                disks [| [|"/images/{name}.img", "vda", "root"|], [|"/images/{name}-swap.img", "vdb", "swap"|] |];
            }}
        }}
    """)

    system.deploy(description, name="pool")

    domain = parsed(connection.lookupByName(name).XMLDesc())
    assert [source.get("file") for source in domain.iterfind("devices/disk/source")] == [
        f"/images/{name}.img", f"/images/{name}-swap.img"]
    interface = domain.find("devices/interface/source")
    assert interface is not None
    assert interface.get("network") == "default"
    system.terminate("pool")


@pytest.mark.parametrize(("component", "body", "attribute"), [
    ("VM", 'disks "/images/a.img";', "disks"),
    ("VM", "network 1;", "network"),
    ("LoopbackStorageBackend", "hypervisor true;", "hypervisor"),
], ids=["disks not a vector", "network not a string", "backend hypervisor not a string"])
def test_the_schemas_refuse_disks_network_and_a_backends_hypervisor_of_the_wrong_kind(
        component: str, body: str, attribute: str) -> None:
    with pytest.raises(DescriptionError) as excinfo:
        parse_string('#include "ch/cern/openlab/smartdomains/components.sf"\n'
                     f'sfConfig extends Compound {{ c extends {component} {{ domainName "vm1"; {body} }} }}')

    assert attribute in str(excinfo.value)


def test_the_schemas_accept_a_backends_hypervisor_and_a_2007_temp_mount_point() -> None:
    config: Any = parse_string('#include "ch/cern/openlab/smartdomains/components.sf"\n'
                               'sfConfig extends Compound {\n'
                               '  disks extends LoopbackStorageBackend { hypervisor "qemu:///system"; }\n'
                               '  vm extends VM { domainName "vm1"; tempMountPoint "/tmp/mnt"; }\n'
                               '}')

    assert config["disks"]["hypervisor"] == "qemu:///system"
    assert config["vm"]["tempMountPoint"] == "/tmp/mnt"


def test_a_console_log_is_where_the_guests_console_is_written() -> None:
    document = parsed(domain_xml(spec(domain_type="qemu", console_log="/var/log/web1.console")))

    log = document.find("devices/serial/log")

    assert log is not None
    assert (log.get("file"), log.get("append")) == ("/var/log/web1.console", "off")


def test_a_relative_console_log_is_refused() -> None:
    with pytest.raises(ValueError, match=r"consoleLog is 'web1\.console'; give an absolute path"):
        domain_xml(spec(domain_type="qemu", console_log="web1.console"))
