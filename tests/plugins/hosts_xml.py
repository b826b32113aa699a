"""Simulated hypervisor hosts for tests: libvirt test-driver files with their own CPUs and memory.

``test:///path/host.xml`` is a hypervisor of its own per file (and per connection: components of
one System share theirs through ``hypervisor_connection``). Tests of other folders import
:func:`write_test_host` to give each simulated host of a multi-host test its own hypervisor.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def write_test_host(folder: Path, *, name: str, cpus: int, memory_mib: int) -> str:
    """Write ``folder/name.xml``, a host of ``cpus`` CPUs and ``memory_mib`` MiB; return its libvirt URI."""
    node = ET.Element("node")
    cpu = ET.SubElement(node, "cpu")
    for tag, value in (("mhz", 2000), ("model", "x86_64"), ("active", cpus), ("nodes", 1), ("sockets", 1),
                       ("cores", cpus), ("threads", 1)):
        ET.SubElement(cpu, tag).text = str(value)
    ET.SubElement(node, "memory").text = str(memory_mib * 1024)  # the test driver reads KiB
    path = folder.resolve() / f"{name}.xml"
    ET.ElementTree(node).write(path, encoding="unicode")
    return f"test://{path}"
