"""Benchmark: a host's daemon killed (SIGKILL) to its VMs running on the other hosts.

What is measured
    Three ``sd-actors daemon`` processes on this machine (127.0.0.1, three ports, ``--insecure``),
    each with libvirt's test driver in its own process, at liveness 0.2 s × 3
    (``--heartbeat-interval 0.2 --suspect-after 0.6``, ``sfLivenessDelay 0.2``, ``sfLivenessFactor
    3``) and a 1 s lease (``--dead-after 1``). An application on the first daemon: an HARestarter
    with one VM on the second daemon and three on the third. The third daemon is killed with
    SIGKILL (its domains die with it); the clock runs until the other two hypervisors run all four
    VMs, each once, as ``ListDomains`` (``sd-actors domains``) polled every 10 ms says. Fresh
    daemons for each run. Target: p50 ≤ 3 s.

Breakdown, from the first daemon's log (times since the kill)
    detection: the HARestarter hears that the first of the dead host's VMs failed (liveness: no
    heartbeat for 0.6 s); grant: the pool granted the last of their restarts, which it does only
    once every grantor has heard nothing from the dead host for the lease plus its margin
    (1 s + 0.25 s; policies/README.md); running: all four run on the survivors.

Baseline, measured in the same run
    The detection alone (the failure detector's time, which any failover pays), and for
    reference the floor the safety rules add: no grant before the lease plus its margin has passed
    since the dead host's last heartbeat (1.25 s).

Usage: ``.venv/bin/python bench/ha.py`` (``make bench`` runs it); ``--runs 10``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from _machine import machine  # bench/ is on sys.path when a benchmark runs as a script

from sd_actors.actors._daemon import make_registry
from sd_actors.net._node import Client
from sd_actors.net._peer_protocol import DomainsReply, ListDomains

SD_ACTORS: Final = Path(sys.executable).with_name("sd-actors")
TIMINGS: Final = ("--heartbeat-interval", "0.2", "--suspect-after", "0.6", "--dead-after", "1.0")
FLOOR: Final = 1.0 + 0.25
VMS: Final = {"vm1": 1, "vm2": 2, "vm3": 2, "vm4": 2}
"""Each VM and the daemon (0, 1 or 2) that runs it first; daemon 2 is killed."""
_LOG_TIME: Final = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _pool(folder: Path) -> Iterator[tuple[list[str], list[subprocess.Popen[str]], list[Path]]]:
    endpoints = [f"tcp://127.0.0.1:{_free_port()}" for _ in range(3)]
    processes, logs = [], []
    env = {**os.environ, "HOME": str(folder), "XDG_STATE_HOME": str(folder / "state"),
           "XDG_CONFIG_HOME": str(folder / "config")}
    try:
        for number, endpoint in enumerate(endpoints):
            peers = [arg for other in endpoints if other != endpoint for arg in ("--peer", other)]
            log = folder / f"daemon{number}.log"
            with log.open("w") as stderr:
                process = subprocess.Popen([str(SD_ACTORS), "daemon", "--insecure", "--bind", endpoint, "--state-dir",
                                            str(folder / f"state{number}"), *TIMINGS, *peers],
                                           stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
            assert process.stdout is not None
            line = process.stdout.readline()
            if "ready" not in line:
                raise RuntimeError(f"daemon {number} did not start: {line!r}; see {log}")
            processes.append(process)
            logs.append(log)
        yield endpoints, processes, logs
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)


def _running(client: Client) -> tuple[str, ...]:
    reply = client.request(ListDomains(), timeout=2)
    assert isinstance(reply, DomainsReply)
    return tuple(name for name in reply.running if name in VMS)


def _description(folder: Path, endpoints: list[str]) -> Path:
    children = "\n".join(
        f'        {name} extends VM {{ domainName "{name}"; memory 64; domainLivenessDelay 200; '
        f'sfProcessHost "{endpoints[daemon]}"; }}' for name, daemon in VMS.items())
    path = folder / "ha.sf"
    path.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay 0.2;
    sfLivenessFactor 3;
    ha extends HARestarter {{
{children}
    }}
}}
""")
    return path


def _log_times(log: Path, pattern: str) -> list[float]:
    times = []
    for line in log.read_text().splitlines():
        match = _LOG_TIME.match(line)
        if match and re.search(pattern, line):
            # logging writes local time: astimezone() reads it as such
            times.append(datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp())
    return times


def one_run(folder: Path) -> tuple[float, float, float]:
    """(detection, grant, running) in seconds since the kill."""
    with _pool(folder) as (endpoints, processes, logs):
        clients = [Client(endpoint, registry=make_registry(), keypair=None, server_public=None)
                   for endpoint in endpoints]
        try:
            time.sleep(1.0)  # the daemons hear each other and take their leases (heartbeats every 0.2 s)
            up = subprocess.run([str(SD_ACTORS), "up", str(_description(folder, endpoints)), "--name", "ha",
                                 "--insecure", "--host", endpoints[0]], capture_output=True, text=True, check=False)
            if up.returncode != 0:
                raise RuntimeError(f"up failed: {up.stdout}{up.stderr}")
            moved = sorted(name for name, daemon in VMS.items() if daemon == 2)
            while sorted(_running(clients[2])) != moved:
                time.sleep(0.01)
            killed_wall, killed = time.time(), time.monotonic()
            processes[2].send_signal(signal.SIGKILL)
            while True:
                seen = sorted(_running(clients[0]) + _running(clients[1]))
                if seen == sorted(VMS):
                    break
                if time.monotonic() - killed > 30:
                    raise RuntimeError(f"after 30 s the survivors run {seen}; see {logs[0]}")
                time.sleep(0.01)
            running = time.monotonic() - killed
        finally:
            for client in clients:
                client.close()
        pattern = "|".join(f"ha:ha:{name}" for name in moved)
        detection = min(_log_times(logs[0], rf"({pattern}) failed")) - killed_wall
        grant = max(_log_times(logs[0], rf"({pattern}): the pool granted")) - killed_wall
        return detection, grant, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    arguments = parser.parse_args()
    print(machine())
    results = []
    for run in range(arguments.runs):
        with tempfile.TemporaryDirectory(prefix="sd-actors-bench-ha-") as folder:
            results.append(one_run(Path(folder)))
        print(f"  run {run + 1}: running elsewhere after {results[-1][2]:.2f} s", flush=True)
    detections, grants, runnings = (list(column) for column in zip(*results, strict=True))
    p50 = statistics.median(runnings)
    print(f"host death (SIGKILL) to its {sum(d == 2 for d in VMS.values())} VMs running elsewhere, "
          f"{arguments.runs} runs, liveness 0.2 s × 3, lease 1 s: p50 {p50:.2f} s, max {max(runnings):.2f} s "
          f"(target: p50 ≤ 3 s)")
    detection, grant = statistics.median(detections), statistics.median(grants)
    print(f"  breakdown (p50 since the kill): detection {detection:.2f} s, granted {grant:.2f} s "
          f"(lease wait {grant - detection:.2f} s), running {p50:.2f} s (restart {p50 - grant:.2f} s)")
    print(f"  baseline: detection alone, p50 {detection:.2f} s (failover {p50 / detection:.1f}× it); the safety "
          f"floor, lease + margin after the last heartbeat: {FLOOR:.2f} s (failover {p50 / FLOOR:.1f}× it)")


if __name__ == "__main__":
    main()
