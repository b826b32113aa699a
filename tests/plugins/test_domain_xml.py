"""domain_xml writes its document as text: here it is held, byte for byte, to the document
xml.etree.ElementTree builds, indents and serialises from the same spec (the way domain_xml itself
worked before), over a matrix of specs that reaches every branch and every escape; and read_owner,
which parses only the ``<metadata>`` element when it can, finds the owner in every document.
"""

from __future__ import annotations

import itertools
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Final

import libvirt
import pytest

from sd_actors.plugins._domain_xml import (
    METADATA_NAMESPACE,
    Disk,
    DomainSpec,
    Owner,
    disk_bus,
    domain_xml,
    kernel_command_line,
    metadata_element,
    read_owner,
)

ODD: Final = "a<b> & \"c\" 'd' é ü 雪 \U0001f600"
"""Every character XML escapes somewhere, and non-ASCII ones up to the astral plane."""
ODD_ATTRIBUTE: Final = ODD + " tab\t lf\n cr\r &amp; &#10;"
"""ODD, plus what ElementTree writes as character references in an attribute, plus text that looks escaped."""

DOMAIN_TYPES: Final = ("xen", "kvm", "qemu", "test", "my<\"type\">&'")

BOOTS: Final = (
    {},
    {"kernel": "/boot/vmlinuz"},
    {"kernel": "/boot/vmlinuz", "ramdisk": "/boot/initrd.img"},
    {"kernel": "/boot/vmlinuz", "ramdisk": "/boot/initrd.img", "extra": "ro quiet"},
    {"kernel": "/boot/vmlinuz", "extra": "fastboot"},
    {"kernel": f"/boot/{ODD}", "ramdisk": f"/boot/{ODD}.img", "extra": ODD},
    {"kernel": "", "ramdisk": ""},
)
IDENTITIES: Final = (
    {},
    {"ip": "10.0.0.5"},
    {"ip": "10.0.0.5", "gateway": "10.0.0.1", "netmask": "255.255.255.0", "hostname": "web1"},
    {"hostname": "web1"},
    {"ip": "<&>\"'é", "hostname": "h&<é>"},
)
DISK_SETS: Final = (
    (),
    (Disk(source="/images/web1.img", target="vda", kind="root"),),
    (Disk(source="/dev/vg0/web1", target="xvda", kind="root"),
     Disk(source="/images/web1.swap", target="xvdb", kind="swap", format="qcow2")),
    (Disk(source="/images/web1.qcow2", target="sda", kind="root", format="qcow2"),
     Disk(source="/dev/sdz", target="hdb", kind="swap")),
    (Disk(source=f"/images/{ODD_ATTRIBUTE}", target="vdb", kind="swap"),
     Disk(source=f"/dev/{ODD_ATTRIBUTE}", target="hdc", kind="root", format="qcow2")),
)
NETWORKS: Final = (None, "default", ODD_ATTRIBUTE, "")
CONSOLE_LOGS: Final = (None, "/var/log/sd-actors/web1.console", f"/var/log/{ODD_ATTRIBUTE}")
OWNERS: Final = (
    Owner(app="pool", component="pool:vms:web1", host="host1", process="rootProcess"),
    Owner(app="pool", component="pool:vms:web1", host="host1"),
    Owner(app=ODD, component=f"{ODD}:{ODD}", host=ODD, process=ODD),
    Owner(app="a", component="a:b", host=""),
)
NAMES: Final = ("web1", ODD)


def reference_xml(spec: DomainSpec) -> str:
    """The document as ElementTree makes it: the code domain_xml ran before it wrote text."""
    domain = ET.Element("domain", type=spec.domain_type)
    _text(domain, "name", spec.name)
    domain.append(reference_metadata(spec.owner))
    _text(domain, "memory", str(spec.memory), unit="MiB")
    _text(domain, "vcpu", str(spec.vcpus))

    os_element = ET.SubElement(domain, "os")
    _text(os_element, "type", "xen" if spec.paravirtual else "hvm")
    if spec.kernel is not None:
        _text(os_element, "kernel", spec.kernel)
        if spec.ramdisk is not None:
            _text(os_element, "initrd", spec.ramdisk)
        _text(os_element, "cmdline", kernel_command_line(spec))
    else:
        ET.SubElement(os_element, "boot", dev="hd")
    ET.SubElement(ET.SubElement(domain, "features"), "acpi")
    ET.SubElement(domain, "clock", offset="utc")
    _text(domain, "on_poweroff", "destroy")
    _text(domain, "on_reboot", "restart")
    _text(domain, "on_crash", "destroy")

    devices = ET.SubElement(domain, "devices")
    for disk in spec.disks:
        block = disk.source.startswith("/dev/")
        element = ET.SubElement(devices, "disk", type="block" if block else "file", device="disk")
        if disk.format != "raw":
            ET.SubElement(element, "driver", name="qemu", type=disk.format)
        ET.SubElement(element, "source", {"dev" if block else "file": disk.source})
        ET.SubElement(element, "target", dev=disk.target, bus=disk_bus(disk.target))
    if spec.network is None:
        interface = ET.SubElement(devices, "interface", type="user")
    else:
        interface = ET.SubElement(devices, "interface", type="network")
        ET.SubElement(interface, "source", network=spec.network)
    if spec.domain_type in ("kvm", "qemu"):
        ET.SubElement(interface, "model", type="virtio")
    if spec.paravirtual:
        console = ET.SubElement(devices, "console", type="pty")
        if spec.console_log is not None:
            ET.SubElement(console, "log", file=spec.console_log, append="off")
        ET.SubElement(console, "target", type="xen", port="0")
    else:
        serial = ET.SubElement(devices, "serial", type="pty")
        if spec.console_log is not None:
            ET.SubElement(serial, "log", file=spec.console_log, append="off")
        ET.SubElement(serial, "target", port="0")
        console = ET.SubElement(devices, "console", type="pty")
        ET.SubElement(console, "target", type="serial", port="0")
    ET.indent(domain)
    return ET.tostring(domain, encoding="unicode")


def reference_metadata(owner: Owner) -> ET.Element:
    metadata = ET.Element("metadata")
    element = ET.SubElement(metadata, "owner", xmlns=METADATA_NAMESPACE)
    _text(element, "app", owner.app)
    _text(element, "component", owner.component)
    _text(element, "host", owner.host)
    _text(element, "process", owner.process)
    return metadata


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element


def specs(domain_type: str, name: str) -> Iterator[DomainSpec]:
    """Every combination of the tables above for one domain type and name, the owners taken in turn
    (they change the metadata only, which nothing else changes)."""
    for (boot, identity, disks, network, console_log), owner in zip(itertools.product(
            BOOTS, IDENTITIES, DISK_SETS, NETWORKS, CONSOLE_LOGS), itertools.cycle(OWNERS)):
        yield DomainSpec(name=name, memory=256, vcpus=2, domain_type=domain_type, owner=owner, disks=disks,
                         network=network, console_log=console_log, **identity, **boot)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES, ids=["plain name", "odd name"])
@pytest.mark.parametrize("domain_type", DOMAIN_TYPES, ids=[*DOMAIN_TYPES[:-1], "odd type"])
def test_the_text_is_byte_for_byte_what_elementtree_writes(domain_type: str, name: str) -> None:
    for spec in specs(domain_type, name):
        assert domain_xml(spec) == reference_xml(spec), spec


@pytest.mark.parametrize("name", NAMES, ids=["plain name", "odd name"])
@pytest.mark.parametrize("domain_type", DOMAIN_TYPES, ids=[*DOMAIN_TYPES[:-1], "odd type"])
def test_every_value_parses_back_unchanged_and_the_owner_is_read_back(domain_type: str, name: str) -> None:
    for spec in specs(domain_type, name):
        xml = domain_xml(spec)

        domain = ET.fromstring(xml)  # noqa: S314 (our own output)

        assert (domain.get("type"), domain.findtext("name")) == (domain_type, name), spec
        assert [target.get("dev") for target in domain.iterfind("devices/disk/target")] == [
            disk.target for disk in spec.disks]
        assert [source.get("file") or source.get("dev") for source in domain.iterfind("devices/disk/source")] == [
            disk.source for disk in spec.disks]
        assert [source.get("network") for source in domain.iterfind("devices/interface/source")] == (
            [] if spec.network is None else [spec.network])
        assert [log.get("file") for log in domain.iterfind("devices/*/log")] == (
            [] if spec.console_log is None else [spec.console_log])
        assert read_owner(xml) == spec.owner, spec


def test_a_relative_console_log_is_still_refused_when_the_xml_is_made() -> None:
    spec = DomainSpec(name="web1", memory=256, vcpus=1, domain_type="kvm", console_log="web1.console",
                      owner=OWNERS[0])

    with pytest.raises(ValueError, match=r"^consoleLog is 'web1\.console'; give an absolute path"):
        domain_xml(spec)


@pytest.mark.parametrize("owner", OWNERS, ids=["complete", "no process", "odd", "no host"])
def test_the_metadata_element_for_a_migrated_domain_is_the_one_in_the_domain_xml(owner: Owner) -> None:
    assert ET.tostring(metadata_element(owner)) == ET.tostring(reference_metadata(owner))


@pytest.mark.parametrize(("target", "bus"), [
    ("xvda", "xen"), ("vda", "virtio"), ("vdxvd", "virtio"), ("sdb", "scsi"), ("hdc", "ide")])
def test_the_bus_comes_from_the_prefix_of_the_target(target: str, bus: str) -> None:
    assert disk_bus(target) == bus


@pytest.mark.parametrize("target", ["xvd", "vd", "vda1", "Vda", "xda", "vda\n", "nvme0n1", ""])
def test_a_target_that_is_no_device_name_is_refused(target: str) -> None:
    message = f"disk target {target!r} is not a device name libvirt knows;"

    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        disk_bus(target)


OURS: Final = f'<owner xmlns="{METADATA_NAMESPACE}"><app>a</app><component>a:b</component><host>h</host></owner>'


@pytest.mark.parametrize("xml", [
    f"<domain><name>x</name><metadata>{OURS}</metadata></domain>",
    f"<domain><metadata><other:x xmlns:other='urn:other'><metadata/></other:x>{OURS}</metadata></domain>",
    f"<domain><metadata><other:x xmlns:other='urn:other'><metadata>m</metadata></other:x>{OURS}</metadata></domain>",
    (f"<domain xmlns:sd='{METADATA_NAMESPACE}'><metadata><sd:owner><sd:app>a</sd:app>"
     "<sd:component>a:b</sd:component><sd:host>h</sd:host></sd:owner></metadata></domain>"),
    f"<domain><description>&lt;metadata&gt;</description><metadata>{OURS}</metadata></domain>",
], ids=["alone", "an empty metadata element nested", "a metadata element nested",
        "our prefix declared on the domain", "metadata in a description"])
def test_the_owner_is_found_however_the_metadata_is_written(xml: str) -> None:
    assert read_owner(xml) == Owner(app="a", component="a:b", host="h")


@pytest.mark.parametrize("xml", [
    "<domain><name>x</name></domain>",
    "<domain><metadata/></domain>",
    "<domain><metadata></metadata></domain>",
    "<domain><metadata><owner xmlns='urn:else'><app>a</app><component>a:b</component></owner></metadata></domain>",
    f"<domain><metadata><owner xmlns='{METADATA_NAMESPACE}'><app>a</app></owner></metadata></domain>",
], ids=["no metadata", "empty metadata", "empty metadata with an end tag", "someone else's", "no component"])
def test_a_document_without_an_owner_of_ours_has_none(xml: str) -> None:
    assert read_owner(xml) is None


def test_a_broken_document_is_still_an_error() -> None:
    with pytest.raises(ET.ParseError):
        read_owner("<domain><metadata><owner>")


@pytest.fixture
def connection() -> Iterator[libvirt.virConnect]:
    connection = libvirt.open("test:///default")
    try:
        yield connection
    finally:
        connection.close()


def test_the_owner_is_read_from_libvirts_own_xml_also_after_a_migration_rewrote_it(
        connection: libvirt.virConnect) -> None:
    owner = Owner(app=ODD, component=f"{ODD}:vm", host="host1", process="rootProcess")
    moved = Owner(app=ODD, component=f"{ODD}:vm", host="host2", process="rootProcess")
    domain = connection.defineXML(domain_xml(DomainSpec(
        name=f"xml-{uuid.uuid4().hex[:8]}", memory=64, vcpus=1, domain_type="test", owner=owner)))
    try:
        before = read_owner(domain.XMLDesc())
        # What plugins/_migration.py does on the target: our element, under libvirt's own prefix.
        domain.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                           ET.tostring(metadata_element(moved)[0], encoding="unicode"), "sd-actors",
                           METADATA_NAMESPACE, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        after = read_owner(domain.XMLDesc())
    finally:
        domain.undefine()

    assert (before, after) == (owner, moved)
