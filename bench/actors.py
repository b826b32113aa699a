"""Benchmark: the actor runtime — deploying and terminating many components, asks, liveness.

What is measured (each figure in a fresh Python process, so one cannot warm up or slow down
another, and so that the peak memory is that of the measurement alone)
    deploy+terminate
        One System, one application of N components (a root Compound, N/100 group Compounds and
        Prims under them; N = 1,000 and 5,000): ``System.deploy`` (create, deploy and start the whole
        tree, phase by phase) then ``System.terminate`` (children in reverse order, every actor
        stopped). The description is built before the clock starts. Printed: seconds for each half
        and both, and the process's peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) next to
        its RSS once sd_actors was imported, so the runtime's share shows.
        Target: 5,000 components up and down in under 5 s.
    ask round trip
        ``ComponentRef.call`` of a trivial function on a started component (a message to its actor,
        run in the actor's turn, the result back to the caller), one at a time from the main thread.
        Printed: microseconds per round trip, the best of ``--repeat`` runs of ``--asks`` asks.
        Target: at most 2× the baseline below.
    liveness
        1,000 started components with ``sfLivenessDelay 1`` (each pinged every second, by the real
        clock's single timer thread) for ``--seconds`` seconds of wall time, measured after the
        deployment: the process's CPU time (user + system, all threads) over the wall time, as a
        percentage of one core. The pings actually answered are counted, to show they happened.
        Target: under 5% of one core.

Baselines, measured in the same run on the same machine (seconds depend on the machine; the ratios
compare across machines and runs where seconds do not)
    * ask: a bare ``pykka.ThreadingActor`` (one thread per actor, pykka's own loop) asked to call
      the same trivial function. The ratio sd-actors/pykka is the overhead of the runtime (the
      shared worker pool, the RunInActor message, the ComponentFailed translation).
    * deploy+terminate: N bare ``pykka.ThreadingActor`` instances started and stopped, which is
      what a thread per component would cost before doing any lifecycle work at all.
    * liveness: the same 1,000 components with liveness off (``sfLivenessDelay 0``) over the same
      window: the CPU an idle System costs without pings.

Usage: ``.venv/bin/python bench/actors.py`` (``make bench`` runs it); ``--sizes 1000 5000 20000``,
``--seconds 10``, ``--asks 50000``, ``--repeat 5``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from _machine import machine  # bench/ is on sys.path when a benchmark runs as a script

TARGET_UP_AND_DOWN_SECONDS: Final = 5.0
TARGET_UP_AND_DOWN_COMPONENTS: Final = 5_000
TARGET_ASK_RATIO: Final = 2.0
TARGET_LIVENESS_PERCENT: Final = 5.0
LIVENESS_COMPONENTS: Final = 1_000
GROUP_SIZE: Final = 100


# ----------------------------------------------------------------------------------- measurements
# Each runs in a child process (``bench/actors.py --child NAME ...``) and returns a JSON-able dict.

def rss_now() -> int:
    """Current resident set size in bytes (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss() -> int:
    """Peak resident set size in bytes, from getrusage (kilobytes on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def tree(components: int, component_class: str = "sd_actors.actors.Prim", **root_attributes: object) -> Any:
    """A root Compound, group Compounds of up to GROUP_SIZE, and Prims: ``components`` in all."""
    from sd_actors.descriptions import ComponentDescription

    def node(sf_class: str) -> ComponentDescription:
        description = ComponentDescription()
        description.set("sfClass", sf_class)
        return description

    root = node("sd_actors.actors.Compound")
    for name, value in root_attributes.items():
        root.set(name, value)
    groups = max(1, (components - 1) // GROUP_SIZE)
    prims = components - 1 - groups
    for group_index in range(groups):
        group = node("sd_actors.actors.Compound")
        share = prims // groups + (1 if group_index < prims % groups else 0)
        for prim_index in range(share):
            group.set(f"c{prim_index}", node(component_class))
        root.set(f"g{group_index}", group)
    return root


def count_components(description: Any) -> int:
    from sd_actors.descriptions import ComponentDescription

    return 1 + sum(count_components(value) for _, value in description.items()
                   if isinstance(value, ComponentDescription))


def measure_deploy(components: int) -> dict[str, Any]:
    from sd_actors.actors import open_system
    from sd_actors.plugins import make_plugin_manager

    rss_after_imports = rss_now()
    description = tree(components)
    assert count_components(description) == components
    with open_system(plugin_manager=make_plugin_manager(load_entry_points=False)) as system:
        started = time.perf_counter()
        system.deploy(description, name="bench")
        deployed = time.perf_counter()
        record = system.terminate("bench")
        terminated = time.perf_counter()
        states = system.statistics().by_state
    if not record.is_normal or states != {"terminated": components}:
        raise RuntimeError(f"the benchmark's application did not terminate cleanly: {record}; {states}")
    return {"up": deployed - started, "down": terminated - deployed, "rss_after_imports": rss_after_imports,
            "peak_rss": peak_rss()}


def measure_bare_pykka_actors(components: int) -> dict[str, Any]:
    import pykka

    class Bare(pykka.ThreadingActor):
        pass

    started = time.perf_counter()
    refs = [Bare.start() for _ in range(components)]
    up = time.perf_counter()
    for ref in refs:
        ref.stop(block=False)
    for ref in refs:
        ref.actor_stopped.wait()
    down = time.perf_counter()
    pykka.ActorRegistry.stop_all()
    return {"up": up - started, "down": down - up}


def best_per_call(run: Callable[[], object], calls: int, repeat: int) -> float:
    """Seconds per call: the best of ``repeat`` runs of ``calls`` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def trivial(_: object) -> int:
    return 1


def measure_ask(asks: int, repeat: int) -> dict[str, Any]:
    import pykka

    from sd_actors.actors import ComponentSpec, open_system
    from sd_actors.plugins import make_plugin_manager

    class Bare(pykka.ThreadingActor):
        def on_receive(self, message: Any) -> Any:
            return message(self)

    bare = Bare.start()
    try:
        # Interleaved, so that both see the same machine state (frequency, other load).
        bare_seconds = sd_seconds = float("inf")
        with open_system(plugin_manager=make_plugin_manager(load_entry_points=False)) as system:
            ref = system.deploy(ComponentSpec("sd_actors.actors.Prim"), name="bench")
            for _ in range(repeat):
                bare_seconds = min(bare_seconds, best_per_call(lambda: bare.ask(trivial), asks, 1))
                sd_seconds = min(sd_seconds, best_per_call(lambda: ref.call(trivial), asks, 1))
    finally:
        bare.stop()
    return {"sd_actors": sd_seconds, "pykka": bare_seconds}


def measure_liveness(components: int, seconds: float, delay: float) -> dict[str, Any]:
    import itertools

    from sd_actors.actors import Prim, open_system
    from sd_actors.plugins import hookimpl, make_plugin_manager

    answered = itertools.count()

    class Pinged(Prim):
        def ping(self) -> None:
            next(answered)

    class Types:
        @hookimpl
        def sd_actors_component_types(self) -> dict[str, type]:
            return {"bench.Pinged": Pinged}

    manager = make_plugin_manager(load_entry_points=False, plugins=[Types()])
    description = tree(components, "bench.Pinged", sfLivenessDelay=delay, sfLivenessFactor=2)
    with open_system(plugin_manager=manager) as system:
        system.deploy(description, name="bench")
        first_pings = next(answered)
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        time.sleep(seconds)  # the benchmark's window: the System works (or idles) meanwhile
        cpu, wall = time.process_time() - cpu_started, time.perf_counter() - wall_started
        pings = next(answered) - first_pings - 1
        failed = system.statistics().by_state.get("failed", 0)
    return {"cpu": cpu, "wall": wall, "pings": pings, "failed": failed}


CHILDREN: Final[dict[str, Callable[..., dict[str, Any]]]] = {
    "deploy": lambda args: measure_deploy(args.components),
    "bare": lambda args: measure_bare_pykka_actors(args.components),
    "ask": lambda args: measure_ask(args.asks, args.repeat),
    "liveness": lambda args: measure_liveness(LIVENESS_COMPONENTS, args.seconds, args.delay),
}


def in_child(name: str, *arguments: str) -> dict[str, Any]:
    """Run measurement ``name`` in a fresh interpreter and return its result."""
    result = subprocess.run([sys.executable, __file__, "--child", name, *arguments], capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench/actors.py: the {name!r} measurement failed:\n{result.stderr}")
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


# ------------------------------------------------------------------------------------------ report

def megabytes(size: float) -> str:
    return f"{size / 1e6:.0f} MB"


def row(label: str, value: str, note: str = "") -> None:
    print(f"{label:<44}{value:>12}   {note}".rstrip(), flush=True)


def verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def report(args: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    from importlib.metadata import version

    print(f"pykka {version('pykka')}; every figure from a fresh process\n")

    print("== deploy+start+terminate of one application, one System")
    for size in args.sizes:
        result = in_child("deploy", "--components", str(size))
        total = result["up"] + result["down"]
        row(f"{size:,} components: deploy+start", f"{result['up']:.3f} s", f"{size / result['up']:,.0f} /s")
        row(f"{size:,} components: terminate", f"{result['down']:.3f} s", f"{size / result['down']:,.0f} /s")
        note = ""
        if size == TARGET_UP_AND_DOWN_COMPONENTS:
            note = f"target < {TARGET_UP_AND_DOWN_SECONDS:g} s: {verdict(total < TARGET_UP_AND_DOWN_SECONDS)}"
        row(f"{size:,} components: up and down", f"{total:.3f} s", note)
        row(f"{size:,} components: peak RSS (getrusage)", megabytes(result["peak_rss"]),
            f"{megabytes(result['peak_rss'] - result['rss_after_imports'])} above the "
            f"{megabytes(result['rss_after_imports'])} after imports; "
            f"{(result['peak_rss'] - result['rss_after_imports']) / size / 1e3:.1f} kB per component")
        bare = in_child("bare", "--components", str(size))
        row(f"  baseline: {size:,} bare pykka actors", f"{bare['up'] + bare['down']:.3f} s",
            f"started {bare['up']:.3f} s, stopped {bare['down']:.3f} s (a thread each)")

    print(f"\n== ask round trip, best of {args.repeat} × {args.asks:,}")
    ask = in_child("ask", "--asks", str(args.asks), "--repeat", str(args.repeat))
    ratio = ask["sd_actors"] / ask["pykka"]
    row("ComponentRef.call(trivial)", f"{ask['sd_actors'] * 1e6:.1f} µs")
    row("  baseline: pykka ThreadingActor ask", f"{ask['pykka'] * 1e6:.1f} µs")
    row("  ratio sd-actors / pykka", f"{ratio:.2f}×",
        f"target ≤ {TARGET_ASK_RATIO:g}×: {verdict(ratio <= TARGET_ASK_RATIO)}")

    print(f"\n== liveness of {LIVENESS_COMPONENTS:,} started components, real clock, {args.seconds:g} s window")
    on = in_child("liveness", "--seconds", str(args.seconds), "--delay", str(args.delay))
    off = in_child("liveness", "--seconds", str(args.seconds), "--delay", "0")
    on_percent = 100 * on["cpu"] / on["wall"]
    off_percent = 100 * off["cpu"] / off["wall"]
    expected = LIVENESS_COMPONENTS * on["wall"] / args.delay
    row(f"CPU with sfLivenessDelay {args.delay:g}", f"{on_percent:.2f} %",
        f"of one core; target < {TARGET_LIVENESS_PERCENT:g}%: {verdict(on_percent < TARGET_LIVENESS_PERCENT)}")
    row("  pings answered in the window", f"{on['pings']:,}",
        f"≈ {expected:,.0f} expected; {on['failed']} components failed")
    row("  baseline: CPU with liveness off", f"{off_percent:.2f} %", "of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 5_000],
                        help="components per deployment (default %(default)s)")
    parser.add_argument("--asks", type=int, default=20_000, help="asks per run (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="ask runs to take the best of (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="liveness window (default %(default)s)")
    parser.add_argument("--delay", type=float, default=1.0, help="sfLivenessDelay (default %(default)s)")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--components", type=int, default=1_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    report(args)


if __name__ == "__main__":
    main()
