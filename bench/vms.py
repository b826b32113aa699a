"""Benchmark: virtual machines up and down through sd-actors, next to plain libvirt calls.

What is measured (each figure in a fresh Python process, on a fresh simulated host)
    1,000 VMs on the test driver
        One System, one application: a root Compound, groups of 100 ``VM`` components, N VMs in
        all (``--vms``, default 1,000), on ``test:///<tmp>/host.xml`` (libvirt's test driver
        reading a host file of 64 CPUs and 1 TiB, so nothing refuses for lack of room).
        ``System.deploy`` until every VM is started (each: its domain XML made, the name looked
        up, the domain defined and started, its lifecycle events watched, its UUID recorded),
        then ``System.terminate`` (each domain destroyed and undefined, ownership checked first).
        The description is built before the clock starts; liveness polls run on the real clock
        with the library's default delay (2 s), so they cost what they cost.
        Target: up within 3× the baseline.

Baseline, measured in the same run on the same machine
    * A plain libvirt-python loop over one connection to a fresh copy of the same host file:
      ``defineXML`` + ``create`` of the very XML documents the VMs generate, then ``destroy`` +
      ``undefine`` of each. No events, no ownership checks, no actors: what creating the same
      domains costs at the least.

Usage: ``.venv/bin/python bench/vms.py`` (``make bench`` runs it); ``--vms 1000 --repeat 5``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from _machine import machine  # bench/ is on sys.path when a benchmark runs as a script

TARGET_RATIO: Final = 3.0
GROUP_SIZE: Final = 100
VM_MEMORY_MIB: Final = 64
HOST_CPUS: Final = 64
HOST_MEMORY_KIB: Final = 1024**3  # 1 TiB


def write_host(folder: Path) -> str:
    """A test-driver host file in ``folder``; its libvirt URI."""
    path = folder / "host.xml"
    path.write_text(f"<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{HOST_CPUS}</active><nodes>1</nodes>"
                    f"<sockets>1</sockets><cores>{HOST_CPUS}</cores><threads>1</threads></cpu>"
                    f"<memory>{HOST_MEMORY_KIB}</memory></node>")
    return f"test://{path}"


def vm_name(index: int) -> str:
    return f"bench-vm{index:05d}"


def pool(vms: int, uri: str) -> Any:
    """A root Compound with groups of up to GROUP_SIZE VMs: ``vms`` machines."""
    from sd_actors.descriptions import ComponentDescription

    def node(sf_class: str, **attributes: object) -> ComponentDescription:
        description = ComponentDescription()
        description.set("sfClass", sf_class)
        for name, value in attributes.items():
            description.set(name, value)
        return description

    root = node("sd_actors.actors.Compound")
    for first in range(0, vms, GROUP_SIZE):
        group = node("sd_actors.actors.Compound")
        for index in range(first, min(first + GROUP_SIZE, vms)):
            group.set(f"vm{index}", node("sd_actors.plugins.VM", domainName=vm_name(index), memory=VM_MEMORY_MIB,
                                         vcpus=1, hypervisor=uri))
        root.set(f"g{first // GROUP_SIZE}", group)
    return root


# ----------------------------------------------------------------------------------- measurements
# Each runs in a child process (``bench/vms.py --child NAME ...``) and returns a JSON-able dict.

def measure_system(vms: int) -> dict[str, Any]:
    from sd_actors.actors import open_system
    from sd_actors.plugins import hypervisor_capacity, hypervisor_connection, make_plugin_manager

    with tempfile.TemporaryDirectory(prefix="sd-actors-bench-") as folder:
        uri = write_host(Path(folder))
        description = pool(vms, uri)
        with open_system(plugin_manager=make_plugin_manager(load_entry_points=False)) as system:
            started = time.perf_counter()
            system.deploy(description, name="bench")
            deployed = time.perf_counter()
            running = hypervisor_capacity(hypervisor_connection(system, uri)).running_vms
            record = system.terminate("bench")
            terminated = time.perf_counter()
            left = len(hypervisor_connection(system, uri).listAllDomains())
    if running != vms or not record.is_normal or left:
        raise RuntimeError(f"{running} of {vms} VMs ran; the end: {record}; {left} domains left")
    return {"up": deployed - started, "down": terminated - deployed}


def measure_plain(vms: int) -> dict[str, Any]:
    import libvirt

    from sd_actors.plugins._domain_xml import DomainSpec, Owner, domain_xml

    # The very documents the VMs define (same name, size, type and metadata), made before the clock.
    documents = [domain_xml(DomainSpec(
        name=vm_name(index), memory=VM_MEMORY_MIB, vcpus=1, domain_type="test",
        owner=Owner(app="bench", component=f"bench:g{index // GROUP_SIZE}:vm{index}", host="localhost")))
        for index in range(vms)]
    with tempfile.TemporaryDirectory(prefix="sd-actors-bench-") as folder:
        connection = libvirt.open(write_host(Path(folder)))
        try:
            started = time.perf_counter()
            domains = []
            for document in documents:
                domain = connection.defineXML(document)
                domain.create()
                domains.append(domain)
            deployed = time.perf_counter()
            for domain in domains:
                domain.destroy()
                domain.undefine()
            terminated = time.perf_counter()
        finally:
            connection.close()
    return {"up": deployed - started, "down": terminated - deployed}


CHILDREN: Final = {"system": measure_system, "plain": measure_plain}


def in_child(name: str, vms: int) -> dict[str, Any]:
    """Run measurement ``name`` in a fresh interpreter and return its result."""
    result = subprocess.run([sys.executable, __file__, "--child", name, "--vms", str(vms)], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench/vms.py: the {name!r} measurement failed:\n{result.stderr}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


# ------------------------------------------------------------------------------------------ report

def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:<46}{value:>10}   {note}".rstrip(), flush=True)


def report(args: argparse.Namespace) -> None:
    import libvirt

    print(f"machine: {machine()}")
    print(f"libvirt {libvirt.getVersion() // 1_000_000}.{libvirt.getVersion() // 1000 % 1000}; every figure "
          f"from a fresh process; best of {args.repeat} runs each\n")
    print(f"== {args.vms:,} VMs up and down on the test driver, one System")
    runs = {name: [in_child(name, args.vms) for _ in range(args.repeat)] for name in ("system", "plain")}
    best = {name: {half: min(run[half] for run in results) for half in ("up", "down")}
            for name, results in runs.items()}
    system, plain = best["system"], best["plain"]
    for half, doing in (("up", "define+start"), ("down", "destroy+undefine")):
        ratio = system[half] / plain[half]
        target = f"target ≤ {TARGET_RATIO:g}×: {'meets the target' if ratio <= TARGET_RATIO else 'MISSES the target'}"
        row(f"{args.vms:,} VMs {half} through a System", f"{system[half]:.3f} s",
            f"{args.vms / system[half]:,.0f} VMs/s; {ratio:.2f}× the plain loop"
            + (f"; {target}" if half == "up" else ""))
        row(f"  baseline: plain libvirt-python {doing}", f"{plain[half]:.3f} s", f"{args.vms / plain[half]:,.0f} VMs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=1_000, help="VMs per deployment (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="runs to take the best of (default %(default)s)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(CHILDREN[args.child](args.vms)))
        return
    report(args)


if __name__ == "__main__":
    main()
