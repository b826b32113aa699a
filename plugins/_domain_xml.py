"""Domain XML: the libvirt definition of a virtual machine, made from its attributes.

A pure function of a :class:`DomainSpec`; nothing here talks to libvirt. Every value a user gave
goes through :mod:`xml.etree.ElementTree`, never through string formatting, so a domain named
``a<b & "c"`` is escaped like any other text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

METADATA_NAMESPACE: Final = "http://sd-actors.org/xmlns/domain/1"
"""The namespace of sd-actors' ``<metadata>`` element: a domain that carries it was defined by sd-actors."""

DISK_KINDS: Final = ("root", "swap")
DISK_FORMATS: Final = ("raw", "qcow2")

_BUS_BY_PREFIX: Final = (("xvd", "xen"), ("vd", "virtio"), ("sd", "scsi"), ("hd", "ide"))
"""The disk bus a target device name implies (longest prefix first: ``xvda`` is not ``vd…``)."""

_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters that XML 1.0 cannot carry at all, escaped or not."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """Who defined a domain: written into its metadata, read back to decide whether it is ours."""

    app: str
    """The application's name."""
    component: str
    """The component's complete name, ``app:web:vm``."""
    host: str
    """The host whose daemon defined it."""
    process: str = ""
    """The process (daemon) on that host."""

    def owns(self, other: Owner | None) -> bool:
        """True when ``other`` names the same application and component (host and process aside)."""
        return other is not None and (other.app, other.component) == (self.app, self.component)


@dataclass(frozen=True, slots=True, kw_only=True)
class Disk:
    """One disk of the guest, as a storage backend supplies it."""

    source: str
    """A file, or a block device under ``/dev``."""
    target: str
    """The device name in the guest: ``vda`` (virtio), ``xvda`` (Xen), ``sda``, ``hda``."""
    kind: str
    """``root`` or ``swap``."""
    format: str = "raw"
    """What the file holds: ``raw`` (the bytes the guest sees) or ``qcow2``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DomainSpec:
    """Everything the domain XML is made from. Invalid values raise ValueError naming the attribute."""

    name: str
    memory: int
    """MiB."""
    vcpus: int
    domain_type: str
    """libvirt's domain type: kvm, qemu, xen, test."""
    owner: Owner
    kernel: str | None = None
    ramdisk: str | None = None
    extra: str | None = None
    ip: str | None = None
    gateway: str | None = None
    netmask: str | None = None
    hostname: str | None = None
    disks: tuple[Disk, ...] = ()
    network: str | None = None
    """A libvirt network to plug into; None: user-mode networking."""
    console_log: str | None = None
    """A file that gets everything the guest writes on its console (libvirt's ``<log>``, by virtlogd)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("domainName is empty; give the machine a name")
        for attribute, value in (("memory", self.memory), ("vcpus", self.vcpus)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                unit = " MiB" if attribute == "memory" else ""
                raise ValueError(f"{attribute} is {value!r}; give a whole number of 1{unit} or more, e.g. "
                                 f"{attribute} {512 if attribute == 'memory' else 1};")
        for attribute, text in (("ip", self.ip), ("gateway", self.gateway), ("netmask", self.netmask),
                                ("hostname", self.hostname)):
            if text is not None and (not text or re.search(r"[\s:]", text)):
                raise ValueError(f"{attribute} is {text!r}: it goes on the kernel command line as part of ip=…, "
                                 "so it must be non-empty, without spaces or colons")
        for attribute, text in (("domainName", self.name), ("kernel", self.kernel), ("ramdisk", self.ramdisk),
                                ("extra", self.extra), ("network", self.network), ("domainType", self.domain_type),
                                ("consoleLog", self.console_log)):
            if text is not None and _NOT_XML.search(text):
                raise ValueError(f"{attribute} {text!r} holds a control character that XML cannot carry; remove it")
        if self.ramdisk is not None and self.kernel is None:
            raise ValueError("ramdisk is given without kernel; give the kernel it belongs to, or drop ramdisk")
        targets = [disk.target for disk in self.disks]
        for disk in self.disks:
            if disk.kind not in DISK_KINDS:
                raise ValueError(f"disk {disk.target!r} is of kind {disk.kind!r}; give one of {', '.join(DISK_KINDS)}")
            if disk.format not in DISK_FORMATS:
                raise ValueError(f"disk {disk.target!r} is of format {disk.format!r}; give one of "
                                 f"{', '.join(DISK_FORMATS)}")
            disk_bus(disk.target)
            if targets.count(disk.target) > 1:
                raise ValueError(f"two disks have target {disk.target!r}; give each its own device name")
        if sum(disk.kind == "root" for disk in self.disks) > 1:
            raise ValueError("more than one root disk; give exactly one disk of kind root")

    @property
    def paravirtual(self) -> bool:
        """A Xen guest booted from a kernel runs paravirtualised, as the 2007 XenDomains did."""
        return self.domain_type == "xen" and self.kernel is not None

    @property
    def root_disk(self) -> Disk | None:
        return next((disk for disk in self.disks if disk.kind == "root"), None)


def disk_bus(target: str) -> str:
    """The bus libvirt attaches ``target`` to, from its name; ValueError for a name it cannot place."""
    for prefix, bus in _BUS_BY_PREFIX:
        if re.fullmatch(prefix + "[a-z]+", target):
            return bus
    raise ValueError(f"disk target {target!r} is not a device name libvirt knows; "
                     "give vda (virtio), xvda (Xen), sda (SCSI) or hda (IDE)")


def kernel_command_line(spec: DomainSpec) -> str:
    """The kernel command line: console, root device, ``extra``, then the network identity.

    The identity uses the kernel's own syntax, ``ip=IP::GATEWAY:NETMASK:HOSTNAME::off`` (no IP:
    ``ip=::::HOSTNAME::dhcp``), followed by ``hostname=HOSTNAME`` for init scripts that read it.
    """
    words = ["console=hvc0" if spec.paravirtual else "console=ttyS0"]
    root = spec.root_disk
    if root is not None:
        words.append(f"root=/dev/{root.target}")
    if spec.extra:
        words.append(spec.extra)
    if spec.ip is not None:
        words.append(f"ip={spec.ip}::{spec.gateway or ''}:{spec.netmask or ''}:{spec.hostname or ''}::off")
    elif spec.hostname is not None:
        words.append(f"ip=::::{spec.hostname}::dhcp")
    if spec.hostname is not None:
        words.append(f"hostname={spec.hostname}")
    return " ".join(words)


def domain_xml(spec: DomainSpec) -> str:
    """The ``<domain>`` document libvirt's ``defineXML`` takes."""
    domain = ET.Element("domain", type=spec.domain_type)
    _text(domain, "name", spec.name)
    domain.append(metadata_element(spec.owner))
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
        if disk.format != "raw":  # raw is what libvirt assumes (it never probes a format: a guest could fake one)
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
    if spec.console_log is not None and not spec.console_log.startswith("/"):
        raise ValueError(f"consoleLog is {spec.console_log!r}; give an absolute path (the hypervisor writes it)")
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


def metadata_element(owner: Owner) -> ET.Element:
    """``<metadata><owner xmlns="…">`` with the application, component, host and process.

    The namespace is written as a plain ``xmlns`` attribute so that the element keeps a default
    namespace (``<owner xmlns=…>``) instead of ElementTree's generated ``ns0:`` prefix, without
    touching ElementTree's process-wide prefix registry.
    """
    metadata = ET.Element("metadata")
    element = ET.SubElement(metadata, "owner", xmlns=METADATA_NAMESPACE)
    _text(element, "app", owner.app)
    _text(element, "component", owner.component)
    _text(element, "host", owner.host)
    _text(element, "process", owner.process)
    return metadata


def read_owner(xml: str) -> Owner | None:
    """The owner written in a domain's XML by :func:`domain_xml`; None when sd-actors did not define it."""
    root = ET.fromstring(xml)  # noqa: S314 (libvirt's own output, from the hypervisor we chose to trust)
    element = root.find(f"metadata/{{{METADATA_NAMESPACE}}}owner")
    if element is None:
        return None

    def field(name: str) -> str:
        return element.findtext(f"{{{METADATA_NAMESPACE}}}{name}") or ""

    if not field("app") or not field("component"):
        return None
    return Owner(app=field("app"), component=field("component"), host=field("host"), process=field("process"))


def offered_domain_types(capabilities: str) -> tuple[str, ...]:
    """The domain types a hypervisor's capabilities XML offers, in the order it lists them, once each."""
    found: list[str] = []
    root = ET.fromstring(capabilities)  # noqa: S314 (libvirt's own output, from the hypervisor we chose to trust)
    for element in root.iterfind("guest/arch/domain"):
        kind = element.get("type")
        if kind and kind not in found:
            found.append(kind)
    return tuple(found)


def default_domain_type(capabilities: str) -> str | None:
    """The best domain type offered: kvm, else qemu (TCG), else xen, else the driver's own (test)."""
    offered = offered_domain_types(capabilities)
    for preferred in ("kvm", "qemu", "xen", "test"):
        if preferred in offered:
            return preferred
    return offered[0] if offered else None


def _text(parent: ET.Element, tag: str, text: str, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    element.text = text
    return element
