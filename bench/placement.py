"""Benchmark: placing 1,000 VMs over 50 simulated hosts, as a Scheduler does it.

What is measured
    50 simulated hosts, each a System of its own with a libvirt test-driver host file (16 CPUs,
    64 GiB) and its host ledger; 1,000 placement requests (512 MiB, 1 vcpu each). For each
    request, what ``Scheduler`` does for a Schedulee's child: the filters over every host
    (``unfit_reason``), the ``sd_actors_place`` hook through a real plugin manager (the built-in
    ``spread`` policy) and the atomic reservation on the chosen host's ledger (its capacity read
    from its hypervisor, under its lock). The hosts' capacities are surveyed once before, as a
    Scheduler does once per Schedulee. Not included: the network round trip of a reservation on
    another host's daemon (one request each; bench/net.py measures its p50).
    Target: 1,000 placements within 1 s.

Baseline, measured in the same run
    A bare Python loop over 50 dicts: the host with the most free memory that fits, decremented.
    What choosing costs at the least, with no rules, hooks or reservations.

Usage: ``.venv/bin/python bench/placement.py`` (``make bench`` runs it); ``--vms 1000 --hosts 50 --repeat 5``.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _machine import machine  # bench/ is on sys.path when a benchmark runs as a script

from sd_actors.actors import open_system
from sd_actors.plugins import make_plugin_manager
from sd_actors.policies import Limits, PlacementRequest, host_ledger, unfit_reason

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout, for tests/plugins/hosts_xml.py
from tests.plugins.hosts_xml import write_test_host

MEMORY_MIB = 512


def place_all(vms: int, hosts: int, folder: Path) -> float:
    """Seconds to place ``vms`` requests over ``hosts`` simulated hosts (fresh hosts each time)."""
    manager = make_plugin_manager(load_entry_points=False)
    limits = Limits()
    with contextlib.ExitStack() as stack:
        ledgers = {}
        for index in range(hosts):
            uri = write_test_host(folder, name=f"host{index}", cpus=16, memory_mib=64 * 1024)
            system = stack.enter_context(open_system(properties={"sd_actors.hypervisor": uri}))
            ledgers[f"host{index}"] = host_ledger(system.runtime)
        requests = [PlacementRequest(name=f"app:vms:vm{i}", memory_mib=MEMORY_MIB, vcpus=1) for i in range(vms)]
        started = time.perf_counter()
        views = {name: ledger.capacity(name) for name, ledger in ledgers.items()}
        for request in requests:
            fits = [view for view in views.values() if unfit_reason(request, view, limits) is None]
            chosen = manager.hook.sd_actors_place(component=request, hosts=tuple(fits), policy="spread")
            token, refused, after = ledgers[chosen.host].reserve(("app", "vms", request.name), request, limits)
            assert token is not None, refused
            views[chosen.host] = replace(after, host=chosen.host)
        elapsed = time.perf_counter() - started
        spread = sorted(view.vms for view in views.values())
        assert spread[-1] - spread[0] <= 1, spread
    return elapsed


def baseline(vms: int, hosts: int) -> float:
    free = {f"host{i}": 64 * 1024 for i in range(hosts)}
    started = time.perf_counter()
    for _ in range(vms):
        best = max((name for name in free if free[name] >= MEMORY_MIB), key=free.__getitem__)
        free[best] -= MEMORY_MIB
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    print(machine())
    runs, bases = [], []
    for _ in range(arguments.repeat):
        with tempfile.TemporaryDirectory() as folder:
            runs.append(place_all(arguments.vms, arguments.hosts, Path(folder)))
        bases.append(baseline(arguments.vms, arguments.hosts))
    run, base = statistics.median(runs), statistics.median(bases)
    print(f"placement of {arguments.vms} VMs over {arguments.hosts} simulated hosts (median of {arguments.repeat}): "
          f"{run * 1000:.0f} ms, {run / arguments.vms * 1e6:.0f} µs per VM (target: within 1 s)")
    print(f"  baseline (a bare loop choosing the most free memory): {base * 1000:.1f} ms; ratio {run / base:.0f}×")
    print(f"  range over runs: {min(runs) * 1000:.0f}–{max(runs) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
