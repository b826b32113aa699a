"""Domain XML: the libvirt definition of a virtual machine, made from its attributes.

A pure function of a :class:`DomainSpec`; nothing here talks to libvirt. The document is written
as text (an ElementTree built and serialised for each of 1,000 VMs cost more than defining them on
libvirt's test driver), and every value a user gave passes through :func:`_text` or
:func:`_attribute` on its way in: they write ``&``, ``<``, ``>`` (and in attributes ``"``, CR, LF,
tab) as references, exactly as :mod:`xml.etree.ElementTree` does, so a domain named
``a<b & "c"`` is escaped like any other text. Characters XML cannot carry at all are refused
where :class:`DomainSpec` checks them (name, kernel, ramdisk, extra, network, domain type, console
log). tests/plugins/test_domain_xml.py holds the output byte for byte to the document ElementTree
makes of the same elements.
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
_BUS: Final = dict(_BUS_BY_PREFIX)
_TARGET: Final = re.compile(f"({'|'.join(prefix for prefix, _ in _BUS_BY_PREFIX)})[a-z]+")
"""A device name: a prefix of :data:`_BUS_BY_PREFIX` (the group), then lower-case letters."""

_NOT_XML: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
"""Characters that XML 1.0 cannot carry at all, escaped or not."""
_NOT_IN_IP: Final = re.compile(r"[\s:]")
"""What cannot be part of one field of the kernel's ``ip=`` (fields are colon-separated words)."""
_ATTRIBUTE_ESCAPES: Final = re.compile('[&<>"\r\n\t]')
"""The characters :func:`_attribute` writes as references."""


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
            if text is not None and (not text or _NOT_IN_IP.search(text)):
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
    match = _TARGET.fullmatch(target)
    if match is not None:
        return _BUS[match[1]]
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
    """The ``<domain>`` document libvirt's ``defineXML`` takes.

    Two spaces per level, ``<tag />`` for an empty element, attributes in double quotes and no
    newline at the end: what ElementTree's ``indent`` and ``tostring`` write.
    """
    if spec.console_log is not None and not spec.console_log.startswith("/"):
        raise ValueError(f"consoleLog is {spec.console_log!r}; give an absolute path (the hypervisor writes it)")
    paravirtual = spec.paravirtual
    owner = spec.owner
    lines = [
        f"<domain type={_attribute(spec.domain_type)}>",
        f"  {_text('name', spec.name)}",
        "  <metadata>",
        f"    <owner xmlns={_attribute(METADATA_NAMESPACE)}>",
        f"      {_text('app', owner.app)}",
        f"      {_text('component', owner.component)}",
        f"      {_text('host', owner.host)}",
        f"      {_text('process', owner.process)}",
        "    </owner>",
        "  </metadata>",
        f'  <memory unit="MiB">{spec.memory!s}</memory>',
        f"  <vcpu>{spec.vcpus!s}</vcpu>",
        "  <os>",
        "    <type>xen</type>" if paravirtual else "    <type>hvm</type>",
    ]
    if spec.kernel is not None:
        lines.append(f"    {_text('kernel', spec.kernel)}")
        if spec.ramdisk is not None:
            lines.append(f"    {_text('initrd', spec.ramdisk)}")
        lines.append(f"    {_text('cmdline', kernel_command_line(spec))}")
    else:
        lines.append('    <boot dev="hd" />')
    lines += (
        "  </os>",
        "  <features>",
        "    <acpi />",
        "  </features>",
        '  <clock offset="utc" />',
        "  <on_poweroff>destroy</on_poweroff>",
        "  <on_reboot>restart</on_reboot>",
        "  <on_crash>destroy</on_crash>",
        "  <devices>",
    )
    for disk in spec.disks:
        if disk.source.startswith("/dev/"):
            lines.append('    <disk type="block" device="disk">')
            source = f"      <source dev={_attribute(disk.source)} />"
        else:
            lines.append('    <disk type="file" device="disk">')
            source = f"      <source file={_attribute(disk.source)} />"
        if disk.format != "raw":  # raw is what libvirt assumes (it never probes a format: a guest could fake one)
            lines.append(f'      <driver name="qemu" type={_attribute(disk.format)} />')
        lines += (
            source,
            f"      <target dev={_attribute(disk.target)} bus={_attribute(disk_bus(disk.target))} />",
            "    </disk>",
        )
    interface = [] if spec.network is None else [f"      <source network={_attribute(spec.network)} />"]
    if spec.domain_type in ("kvm", "qemu"):
        interface.append('      <model type="virtio" />')
    kind = "user" if spec.network is None else "network"
    if interface:
        lines += (f'    <interface type="{kind}">', *interface, "    </interface>")
    else:
        lines.append(f'    <interface type="{kind}" />')
    log = [] if spec.console_log is None else [f'      <log file={_attribute(spec.console_log)} append="off" />']
    if paravirtual:
        lines += ('    <console type="pty">', *log, '      <target type="xen" port="0" />', "    </console>")
    else:
        lines += (
            '    <serial type="pty">', *log, '      <target port="0" />', "    </serial>",
            '    <console type="pty">', '      <target type="serial" port="0" />', "    </console>",
        )
    lines += ("  </devices>", "</domain>")
    return "\n".join(lines)


def metadata_element(owner: Owner) -> ET.Element:
    """``<metadata><owner xmlns="…">`` with the application, component, host and process.

    The namespace is written as a plain ``xmlns`` attribute so that the element keeps a default
    namespace (``<owner xmlns=…>``) instead of ElementTree's generated ``ns0:`` prefix, without
    touching ElementTree's process-wide prefix registry.
    """
    metadata = ET.Element("metadata")
    element = ET.SubElement(metadata, "owner", xmlns=METADATA_NAMESPACE)
    for tag, text in (("app", owner.app), ("component", owner.component), ("host", owner.host),
                      ("process", owner.process)):
        ET.SubElement(element, tag).text = text
    return metadata


def read_owner(xml: str) -> Owner | None:
    """The owner written in a domain's XML by :func:`domain_xml`; None when sd-actors did not define it.

    Only the ``<metadata>`` element is parsed when it stands on its own, as in libvirt's output (a
    domain's XML runs to kilobytes; this is read for each VM torn down), so a document broken past
    it goes unnoticed; the whole document is parsed when the element does not stand on its own.
    """
    element = _owner_element(xml)
    if element is None:
        return None

    def field(name: str) -> str:
        return element.findtext(f"{{{METADATA_NAMESPACE}}}{name}") or ""

    if not field("app") or not field("component"):
        return None
    return Owner(app=field("app"), component=field("component"), host=field("host"), process=field("process"))


def _owner_element(xml: str) -> ET.Element | None:
    """Our ``<owner>`` in the domain's ``<metadata>``, from the first ``<metadata>…</metadata>`` text if
    that parses by itself, else from the whole document."""
    start = xml.find("<metadata>")
    end = xml.find("</metadata>", start)
    if start >= 0 and end >= 0:
        try:
            metadata = ET.fromstring(xml[start:end + len("</metadata>")])  # noqa: S314 (as below)
        except ET.ParseError:
            pass  # a <metadata> nested in another's metadata, or a namespace prefix declared further out
        else:
            return metadata.find(f"{{{METADATA_NAMESPACE}}}owner")
    root = ET.fromstring(xml)  # noqa: S314 (libvirt's own output, from the hypervisor we chose to trust)
    return root.find(f"metadata/{{{METADATA_NAMESPACE}}}owner")


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


def _text(tag: str, text: str) -> str:
    """``<tag>text</tag>`` with ``&``, ``<`` and ``>`` escaped; ``<tag />`` for no text."""
    if not text:
        return f"<{tag} />"
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return f"<{tag}>{text}</{tag}>"


def _attribute(value: str) -> str:
    """``value`` in double quotes, with ``&<>"`` escaped and CR, LF and tab as character references
    (a parser would turn them into spaces otherwise)."""
    if _ATTRIBUTE_ESCAPES.search(value) is None:
        return f'"{value}"'
    for character, reference in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"),
                                 ("\r", "&#13;"), ("\n", "&#10;"), ("\t", "&#09;")):
        value = value.replace(character, reference)
    return f'"{value}"'
