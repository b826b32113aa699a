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
    1,000 VMs through daemons
        The same VMs written as a description (the library's ``VM``, groups of 100), brought up
        with ``sd-actors up --settle 0`` on 1 daemon, then spread over 3 daemons (one group of VMs
        per daemon, ``sfProcessHost``), each daemon with its own test-driver host
        (``SD_ACTORS_HYPERVISOR``), CURVE on; then ``sd-actors down``. Wall time of each command
        (interpreter start, parsing the description, the journal's writes and the network
        included), compared with the same plain loop. Over 3 daemons twice: with the root a
        ``Compound``, which (as in SmartFrog) steps its children one after the other, so the
        three groups come up one after another even on three hosts; and with the root a
        ``Parallel`` with ``asynchCreateChild true``, the form the 2007 SmartDomains tutorial gives
        for pools over many hosts, where the groups come up at the same time.
    real guests
        ``--guests`` (default 4) QEMU guests (domain type qemu: TCG) on ``qemu:///system``, booted
        directly from the test guest's kernel and initramfs (tests/plugins/guest.py, with
        ``sd.stay``: they keep running), each with a 16 MiB ext4 root file of its own:
        ``System.deploy`` of a Compound of the VMs until every one is started (libvirt says
        running: its qemu is up), then ``System.terminate``. Needs root and a running libvirtd and
        virtlogd (``make demo`` or the tests start them); skipped, saying so, without.
        Target: up within 1.2× the baseline.

Baselines, measured in the same run on the same machine
    * test driver: a plain libvirt-python loop over one connection to a fresh copy of the same
      host file: ``defineXML`` + ``create`` of the very XML documents the VMs generate, then
      ``destroy`` + ``undefine`` of each. No events, no ownership checks, no actors: what creating
      the same domains costs at the least.
    * real guests: ``virsh create`` of the same domain XML documents, one after the other (as the
      Compound starts its VMs), then ``virsh destroy`` of each.

Usage: ``.venv/bin/python bench/vms.py`` (``make bench`` runs it); ``--vms 1000 --repeat 5 --guests 4``;
``--part daemons`` for the figures through daemons alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from _machine import machine  # bench/ is on sys.path when a benchmark runs as a script

TARGET_RATIO: Final = 3.0
TARGET_REAL_RATIO: Final = 1.2
GROUP_SIZE: Final = 100
VM_MEMORY_MIB: Final = 64
HOST_CPUS: Final = 64
HOST_MEMORY_KIB: Final = 1024**3  # 1 TiB
QEMU_HYPERVISOR: Final = "qemu:///system"
GUEST_CACHE: Final = Path("/var/cache/sd-actors/test-guest")
"""Where tests/plugins/test_guest_boot.py builds the guest too: built once, for both."""
GUEST_MEMORY_MIB: Final = 128


def write_host(folder: Path) -> str:
    """A test-driver host file in ``folder``; its libvirt URI."""
    path = folder / "host.xml"
    path.write_text(f"<node><cpu><mhz>2000</mhz><model>x86_64</model><active>{HOST_CPUS}</active><nodes>1</nodes>"
                    f"<sockets>1</sockets><cores>{HOST_CPUS}</cores><threads>1</threads></cpu>"
                    f"<memory>{HOST_MEMORY_KIB}</memory></node>")
    return f"test://{path}"


def vm_description(vms: int, endpoints: list[str], *, parallel: bool = False) -> str:
    """A pool of ``vms`` library VMs, one group per daemon of ``endpoints`` (none named when there is one);
    the root a Compound, or with ``parallel`` a Parallel that brings the groups up at the same time."""
    groups = []
    per_daemon = -(-vms // len(endpoints))
    for daemon, endpoint in enumerate(endpoints):
        placed = f'sfProcessHost "{endpoint}"; ' if len(endpoints) > 1 else ""
        machines = " ".join(f'vm{index} extends VM {{ domainName "{vm_name(index)}"; memory {VM_MEMORY_MIB}; }}'
                            for index in range(daemon * per_daemon, min(vms, (daemon + 1) * per_daemon)))
        groups.append(f"    g{daemon} extends Compound {{ {placed}{machines} }}")
    body = "\n".join(groups)
    if parallel:
        return ('#include "ch/cern/openlab/smartdomains/components.sf"\n'
                '#include "org/smartfrog/sfcore/workflow/combinators/parallel.sf"\n'
                f'sfConfig extends Parallel {{\n    asynchCreateChild true;\n{body}\n}}\n')
    return f'#include "ch/cern/openlab/smartdomains/components.sf"\nsfConfig extends Compound {{\n{body}\n}}\n'


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


def real_guests_missing() -> str | None:
    """Why real guests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("qemu-system-x86_64") is None or shutil.which("virsh") is None:
        return "needs qemu-system-x86_64 and virsh (scripts/setup.sh installs them)"
    for daemon, path in (("libvirtd", "/run/libvirt/libvirt-sock"), ("virtlogd", "/run/libvirt/virtlogd-sock")):
        with socket.socket(socket.AF_UNIX) as client:
            try:
                client.connect(path)
            except OSError:
                return f"no {daemon} answers on {path}: start one (as root: {daemon} -d), or run make demo first"
    return None


def guest_specs(guests: int, folder: Path) -> list[Any]:
    """The guests' DomainSpecs, each with a root file of its own in ``folder`` (qemu's user reads it)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for tests/plugins/guest.py
    from sd_actors.plugins._domain_xml import Disk, DomainSpec, Owner
    from tests.plugins.guest import build_guest

    guest = build_guest(GUEST_CACHE)
    specs = []
    for index in range(guests):
        root = folder / f"root{index}.img"
        with open(root, "wb") as image:
            image.truncate(16 * 1024**2)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(root)], check=True)
        name = f"bench-guest{index}"
        specs.append(DomainSpec(
            name=name, memory=GUEST_MEMORY_MIB, vcpus=1, domain_type="qemu", kernel=str(guest.kernel),
            ramdisk=str(guest.initrd), extra="sd.stay", disks=(Disk(source=str(root), target="vda", kind="root"),),
            owner=Owner(app="bench", component=f"bench:{name}", host=socket.gethostname(), process="rootProcess")))
    return specs


def guest_folder() -> tempfile.TemporaryDirectory[str]:
    folder = tempfile.TemporaryDirectory(prefix="sd-actors-bench-", dir="/var/tmp")
    os.chmod(folder.name, 0o755)  # noqa: S103 (qemu, another user, reads the root files)
    return folder


def measure_guests_system(guests: int) -> dict[str, Any]:
    from sd_actors.actors import open_system
    from sd_actors.descriptions import ComponentDescription
    from sd_actors.plugins import make_plugin_manager

    with guest_folder() as folder:
        root = ComponentDescription()
        root.set("sfClass", "sd_actors.actors.Compound")
        for spec in guest_specs(guests, Path(folder)):
            vm = ComponentDescription()
            for name, value in (("sfClass", "sd_actors.plugins.VM"), ("domainName", spec.name),
                                ("hypervisor", QEMU_HYPERVISOR), ("domainType", "qemu"), ("memory", spec.memory),
                                ("vcpus", 1), ("kernel", spec.kernel), ("ramdisk", spec.ramdisk),
                                ("extra", spec.extra), ("disks", [[spec.disks[0].source, "vda", "root"]])):
                vm.set(name, value)
            root.set(spec.name, vm)
        with open_system(plugin_manager=make_plugin_manager(load_entry_points=False), host=socket.gethostname(),
                         terminate_timeout=60.0) as system:
            started = time.perf_counter()
            system.deploy(root, name="bench")
            deployed = time.perf_counter()
            record = system.terminate("bench")
            terminated = time.perf_counter()
    if not record.is_normal:
        raise RuntimeError(f"the guests did not end cleanly: {record}")
    return {"up": deployed - started, "down": terminated - deployed}


def measure_guests_virsh(guests: int) -> dict[str, Any]:
    from sd_actors.plugins._domain_xml import domain_xml

    with guest_folder() as folder:
        specs = guest_specs(guests, Path(folder))
        documents = []
        for spec in specs:
            document = Path(folder) / f"{spec.name}.xml"
            document.write_text(domain_xml(spec))
            documents.append(document)
        virsh = ["virsh", "--quiet", "-c", QEMU_HYPERVISOR]
        started = time.perf_counter()
        for document in documents:
            subprocess.run([*virsh, "create", str(document)], check=True, capture_output=True)
        deployed = time.perf_counter()
        for spec in specs:
            subprocess.run([*virsh, "destroy", spec.name], check=True, capture_output=True)
        terminated = time.perf_counter()
    return {"up": deployed - started, "down": terminated - deployed}


def measure_daemons(vms: int, daemons: int, *, parallel: bool = False) -> dict[str, Any]:
    # bench/net.py's daemons: keys, authorizations, start and stop (bench/ is on sys.path).
    from net import check, count_started, free_port, make_pool, start_daemon, stop, wait_for_members

    with tempfile.TemporaryDirectory(prefix="sd-actors-bench-") as folder:
        root = Path(folder)
        endpoints = [f"tcp://127.0.0.1:{free_port()}" for _ in range(daemons)]
        pool = make_pool(root, endpoints)
        pool.env["SD_ACTORS_HYPERVISOR"] = write_host(root)  # each daemon process: a test-driver host of its own
        pool_file = root / "vms.sf"
        pool_file.write_text(vm_description(vms, endpoints, parallel=parallel))
        running: list[Any] = []
        try:
            running.extend(start_daemon(pool, index) for index in range(daemons))
            if daemons > 1:
                wait_for_members(pool)
            up, result = pool.cli("up", str(pool_file), "--host", endpoints[0], "--name", "vms", "--settle", "0")
            check(result, "up")
            # up says how long it took from sending the request to the last start; the rest of its
            # wall time is its own: interpreter start, imports, the local parse, connecting.
            said = re.search(r"^vms is up: \d+ components started in ([\d.]+) s$", result.stdout, re.MULTILINE)
            started = sum(count_started(pool, endpoint, "vms") for endpoint in endpoints)
            down, result = pool.cli("down", "vms", "--host", endpoints[0])
            check(result, "down")
        finally:
            for process in running:
                stop(process)
    if started != vms or said is None:
        raise RuntimeError(f"{started} of {vms} VMs were started; up said: {result.stdout[-300:]}")
    return {"up": up, "down": down, "request": float(said.group(1))}


CHILDREN: Final = {"system": measure_system, "plain": measure_plain, "guests-system": measure_guests_system,
                   "guests-virsh": measure_guests_virsh, "daemon": lambda vms: measure_daemons(vms, 1),
                   "daemons": lambda vms: measure_daemons(vms, 3),
                   "daemons-parallel": lambda vms: measure_daemons(vms, 3, parallel=True)}


PARTS: Final = ("system", "daemons", "guests")
"""What ``--part`` chooses: the System figure, the figures through daemons, the real guests."""


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


def compare(runs: dict[str, list[dict[str, Any]]], count: int, what: str, target: float) -> None:
    """Rows for the best up and down of sd-actors (first in ``runs``) and of its baseline (second)."""
    (ours, our_runs), (baseline, baseline_runs) = runs.items()
    for half in ("up", "down"):
        mine, theirs = min(run[half] for run in our_runs), min(run[half] for run in baseline_runs)
        ratio = mine / theirs
        verdict = "meets the target" if ratio <= target else "MISSES the target"
        row(f"{count:,} {what} {half} {ours}", f"{mine:.3f} s",
            f"{count / mine:,.1f}/s; {ratio:.2f}× the baseline" + (f"; target ≤ {target:g}×: {verdict}"
                                                                   if half == "up" else ""))
        row(f"  baseline: {baseline}", f"{theirs:.3f} s", f"{count / theirs:,.1f}/s")


def report(args: argparse.Namespace) -> None:
    import libvirt

    print(f"machine: {machine()}")
    print(f"libvirt {libvirt.getVersion() // 1_000_000}.{libvirt.getVersion() // 1000 % 1000}; every figure "
          f"from a fresh process; best of {args.repeat} runs each, interleaved with its baseline's\n")
    parts = args.part or list(PARTS)
    runs: dict[str, list[dict[str, Any]]]
    if "system" in parts:
        print(f"== {args.vms:,} VMs up and down on the test driver")
        runs = {"through a System": [], "plain libvirt-python loop": []}
        for _ in range(args.repeat):  # interleaved, so that both see the same machine state
            runs["through a System"].append(in_child("system", args.vms))
            runs["plain libvirt-python loop"].append(in_child("plain", args.vms))
        compare(runs, args.vms, "VMs", TARGET_RATIO)

    for child, daemons in (("daemon", "1 daemon"), ("daemons", "3 daemons"),
                           ("daemons-parallel", "3 daemons, Parallel")) if "daemons" in parts else ():
        print(f"\n== {args.vms:,} VMs up and down with sd-actors up/down, {daemons} (wall time of each command)")
        runs = {f"through {daemons}": [], "plain libvirt-python loop": []}
        for _ in range(args.repeat):
            runs[f"through {daemons}"].append(in_child(child, args.vms))
            runs["plain libvirt-python loop"].append(in_child("plain", args.vms))
        compare(runs, args.vms, "VMs", TARGET_RATIO)
        best = min(runs[f"through {daemons}"], key=lambda run: run["up"])
        row("  of the best up, after its request", f"{best['request']:.3f} s",
            f"to the last start; before it (interpreter, imports, parse, connection): "
            f"{best['up'] - best['request']:.3f} s")

    if "guests" not in parts:
        return
    print(f"\n== {args.guests} real guests (QEMU, TCG) up and down on {QEMU_HYPERVISOR}")
    missing = real_guests_missing()
    if missing is not None:
        print(f"skipped: {missing}")
        return
    runs = {"through a System": [], "virsh create / destroy": []}
    for _ in range(args.repeat):
        runs["through a System"].append(in_child("guests-system", args.guests))
        runs["virsh create / destroy"].append(in_child("guests-virsh", args.guests))
    compare(runs, args.guests, "guests", TARGET_REAL_RATIO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=1_000, help="VMs per deployment (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="runs to take the best of (default %(default)s)")
    parser.add_argument("--guests", type=int, default=4, help="real guests (default %(default)s)")
    parser.add_argument("--part", choices=PARTS, action="append",
                        help="measure only this part (repeatable; default: all of %(choices)s)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(CHILDREN[args.child](args.vms)))
        return
    report(args)


if __name__ == "__main__":
    main()
