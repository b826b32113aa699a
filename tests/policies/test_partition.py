"""HARestarter across three hosts (network namespaces), each daemon with its own in-memory
hypervisor (libvirt's test driver lives in the daemon's process): a host killed or cut off, its
VMs running on the others, and never two running copies of one VM.

A checker runs inside each host's namespace and asks its daemon, every few milliseconds, which
domains its hypervisor runs (``ListDomains``, what ``sd-actors domains`` prints), stamping each
answer with the monotonic clock the namespaces share. Inside its namespace it still reaches its
daemon when the host's link to the others is down, so the cut-off host is watched throughout.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sd_actors.actors._client_commands import trust_daemon
from sd_actors.net import authorize, load_or_create_keypair
from tests.hosts import LineReader, TestHosts, open_test_hosts

pytest_plugins = ["tests.hosts.fixtures"]
pytestmark = pytest.mark.usefixtures("requires_netns")

SD_ACTORS = Path(sys.executable).with_name("sd-actors")
PORT = 3800
WAIT = 20.0
TIMINGS = ("--heartbeat-interval", "0.2", "--suspect-after", "0.6", "--dead-after", "1.0")
"""Liveness 0.2 s × 3, and a lease of 1 s (a daemon's lease lasts its --dead-after)."""
TEST_DRIVER_DOMAIN = "test"
EVACUATION_PLUGINS = Path(__file__).with_name("plugins")
"""Plugin modules a test's daemons load with --plugin: evacuate_to_highest.py."""
"""The domain libvirt's test driver starts with: every hypervisor runs it, it is none of ours."""

CHECKER = """
import argparse, json, sys, time
from sd_actors.actors import client
from sd_actors.net._peer_protocol import ListDomains
arguments = argparse.Namespace(host=sys.argv[1], state_dir=None, insecure=False, server_key=None)
with client.connect(arguments, sys.stdout) as connection:
    print(json.dumps({"ready": True}), flush=True)
    while True:
        sent = time.monotonic()
        try:
            reply = client.request(connection, ListDomains(), timeout=0.5)
        except client.CommandError:
            continue
        print(json.dumps({"sent": sent, "received": time.monotonic(), "running": list(reply.running)}), flush=True)
        time.sleep(0.02)
"""


@dataclass
class Sighting:
    host: str
    sent: float
    received: float
    running: tuple[str, ...]


@dataclass
class Pool:
    hosts: TestHosts
    env: dict[str, str]
    state: dict[str, Path]
    daemons: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    checkers: dict[str, tuple[subprocess.Popen[str], LineReader]] = field(default_factory=dict)
    sightings: list[Sighting] = field(default_factory=list)

    def endpoint(self, name: str) -> str:
        return f"tcp://{self.hosts[name].address}:{PORT}"

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SD_ACTORS), *arguments], capture_output=True, text=True, env=self.env,
                              timeout=60, check=False)

    def watch(self, name: str) -> None:
        """Start the checker of host ``name``, inside its namespace."""
        process = self.hosts[name].popen([sys.executable, "-c", CHECKER, self.endpoint(name)], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=self.env)
        assert process.stdout is not None
        reader = LineReader(process.stdout)
        assert json.loads(reader.read_line(timeout=WAIT)) == {"ready": True}
        self.checkers[name] = (process, reader)

    def collect(self) -> None:
        """Take in what every checker has printed so far."""
        for name, (_, reader) in self.checkers.items():
            while True:
                try:
                    seen = json.loads(reader.read_line(timeout=0))
                except (TimeoutError, EOFError):
                    break
                ours = tuple(domain for domain in seen["running"] if domain != TEST_DRIVER_DOMAIN)
                self.sightings.append(Sighting(name, seen["sent"], seen["received"], ours))

    def wait_for(self, condition: Callable[[dict[str, tuple[str, ...]]], bool], what: str) -> float:
        """Wait until ``condition`` holds of the latest answer of each host; return when it first did."""
        deadline = time.monotonic() + WAIT
        latest: dict[str, tuple[str, ...]] = {}
        while time.monotonic() < deadline:
            self.collect()
            for sighting in sorted(self.sightings, key=lambda s: s.received):
                latest[sighting.host] = sighting.running
                if sighting.received > deadline - WAIT and condition(latest):
                    return sighting.received
            time.sleep(0.05)  # the checkers poll on their own; this only reads what they printed
        raise AssertionError(f"not {what} within {WAIT} s; the hosts run {latest}")

    def copies(self) -> dict[str, list[tuple[str, float, float]]]:
        """For each domain, each host it was seen running on: (host, first asked, last answered)."""
        self.collect()
        spans: dict[tuple[str, str], tuple[float, float]] = {}
        for sighting in self.sightings:
            for domain in sighting.running:
                first, last = spans.get((domain, sighting.host), (sighting.sent, sighting.received))
                spans[(domain, sighting.host)] = (min(first, sighting.sent), max(last, sighting.received))
        result: dict[str, list[tuple[str, float, float]]] = {}
        for (domain, host), (first, last) in sorted(spans.items()):
            result.setdefault(domain, []).append((host, first, last))
        return result


def _start_daemon(pool: Pool, name: str) -> None:
    host = pool.hosts[name]
    peers = [arg for other in pool.hosts if other.name != name for arg in ("--peer", pool.endpoint(other.name))]
    with (pool.state[name] / "daemon.log").open("w") as log:  # the daemon keeps its own copy of the file
        plugins = [f"--plugin={path.stem}" for path in sorted(Path(pool.env.get("PYTHONPATH", "/-")).glob("*.py"))]
        process = host.popen([str(SD_ACTORS), "daemon", "--bind", pool.endpoint(name), "--state-dir",
                              str(pool.state[name]), *TIMINGS, *peers, *plugins], stdout=subprocess.PIPE,
                             stderr=log, text=True, env=pool.env)
    assert process.stdout is not None
    line = LineReader(process.stdout).read_line(timeout=WAIT)
    assert "ready" in line, line
    pool.daemons[name] = process


@pytest.fixture
def plugin_folder() -> Path | None:
    """A folder of plugin modules every daemon may load (``--plugin``); None: none."""
    return None


@pytest.fixture
def pool(tmp_path: Path, plugin_folder: Path | None) -> Iterator[Pool]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    if plugin_folder is not None:
        env["PYTHONPATH"] = str(plugin_folder)
    with open_test_hosts(3) as hosts:
        pool = Pool(hosts, env, {host.name: tmp_path / host.name for host in hosts})
        daemon_keys = {name: load_or_create_keypair(folder).public.decode() for name, folder in pool.state.items()}
        user_key = load_or_create_keypair(tmp_path / "config" / "sd-actors").public.decode()
        for name, folder in pool.state.items():
            for other, key in daemon_keys.items():
                authorize(folder, key, other)
                trust_daemon(pool.endpoint(other), key, folder)
            authorize(folder, user_key, "the test user")
            trust_daemon(pool.endpoint(name), daemon_keys[name], tmp_path / "config" / "sd-actors")
        for host in hosts:
            _start_daemon(pool, host.name)
        for host in hosts:
            _wait_for_hosts(pool, host.name, {pool.endpoint(other.name): "alive" for other in hosts})
            pool.watch(host.name)
        yield pool
        for process, _ in pool.checkers.values():
            process.kill()
            process.wait(WAIT)
        for process in pool.daemons.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(WAIT)


def _wait_for_hosts(pool: Pool, name: str, states: dict[str, str]) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        result = pool.cli("hosts", "--json", "--host", pool.endpoint(name))
        seen = {h["address"]: h["state"] for h in json.loads(result.stdout)} if result.returncode == 0 else {}
        if all(seen.get(address) == state for address, state in states.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} sees {seen}, not {states}")
        time.sleep(0.1)  # polling a daemon in another namespace: nothing to wait on here


def _description(pool: Pool, folder: Path, body: str) -> Path:
    path = folder / "ha.sf"
    h2, h3 = pool.hosts["h2"].address, pool.hosts["h3"].address
    path.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
#include "org/smartfrog/sfcore/workflow/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay 0.2;
    sfLivenessFactor 3;
    ha extends HARestarter {{
        {body.replace("H2", h2).replace("H3", h3)}
    }}
}}
""")
    return path


VMS = """
        vm1 extends VM { domainName "vm1"; memory 64; sfProcessHost "H2"; domainLivenessDelay 200; }
        vm2 extends VM { domainName "vm2"; memory 64; sfProcessHost "H3"; domainLivenessDelay 200; }
        vm3 extends VM { domainName "vm3"; memory 64; sfProcessHost "H3"; domainLivenessDelay 200; }
"""


NESTED = """
        group extends Compound {
            vm1 extends VM { domainName "vm1"; memory 64; sfProcessHost "H2"; domainLivenessDelay 200; }
            vm2 extends VM { domainName "vm2"; memory 64; sfProcessHost "H3"; domainLivenessDelay 200; }
            vm3 extends VM { domainName "vm3"; memory 64; sfProcessHost "H3"; domainLivenessDelay 200; }
        }
"""
"""The same VMs one level down, in a Compound the HARestarter's own host runs: the Compound is
restarted whole, and its parts on the cut-off host are stopped there and moved."""


def _up(pool: Pool, description: Path) -> None:
    result = pool.cli("up", str(description), "--name", "ha", "--host", pool.endpoint("h1"))
    assert result.returncode == 0, result.stdout + result.stderr


def _each_once_on(hosts: set[str], domains: set[str]) -> Callable[[dict[str, tuple[str, ...]]], bool]:
    def check(latest: dict[str, tuple[str, ...]]) -> bool:
        counted = [domain for host in hosts for domain in latest.get(host, ())]
        return sorted(counted) == sorted(domains)
    return check


def _assert_never_two_copies(pool: Pool) -> None:
    """Each domain's sightings on one host end before those on the next one begin."""
    for domain, spans in pool.copies().items():
        ordered = sorted(spans, key=lambda span: span[1])
        for (host, _, last), (other, first, _) in itertools.pairwise(ordered):
            assert last < first, f"{domain} ran on {host} until {last:.3f} and on {other} from {first:.3f}"


def test_the_vms_of_a_host_whose_daemon_is_killed_run_once_on_the_survivors(pool: Pool, tmp_path: Path) -> None:
    _up(pool, _description(pool, tmp_path, VMS))
    pool.wait_for(lambda latest: latest.get("h2") == ("vm1",) and latest.get("h3") == ("vm2", "vm3"), "deployed")

    killed = time.monotonic()
    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)
    restarted = pool.wait_for(_each_once_on({"h1", "h2"}, {"vm1", "vm2", "vm3"}), "running on h1 and h2")

    _assert_never_two_copies(pool)
    status = json.loads(pool.cli("status", "ha", "--json", "--host", pool.endpoint("h1")).stdout)
    states = {":".join(c["path"]): (c["state"], c["host"]) for c in status["applications"][0]["components"]}
    assert status["applications"][0]["status"] == "running"
    assert {states[f"ha:ha:{vm}"][0] for vm in ("vm1", "vm2", "vm3")} == {"started"}
    assert pool.hosts["h3"].address not in {states[f"ha:ha:{vm}"][1] for vm in ("vm2", "vm3")}
    listed = [json.loads(pool.cli("domains", "--json", "--host", pool.endpoint(host)).stdout) for host in ("h1", "h2")]
    assert sorted(name for reply in listed for name in reply["running"] if name != TEST_DRIVER_DOMAIN) == [
        "vm1", "vm2", "vm3"]
    assert {reply["hypervisor"] for reply in listed} == {"test:///default"}
    print(f"host death to its VMs running elsewhere: {restarted - killed:.2f} s")


@pytest.mark.parametrize("body", [VMS, NESTED], ids=["children", "grandchildren"])
def test_a_cut_off_host_fences_itself_and_the_majority_restarts_its_vms_never_two_at_once(
        pool: Pool, tmp_path: Path, body: str) -> None:
    _up(pool, _description(pool, tmp_path, body))
    pool.wait_for(lambda latest: latest.get("h2") == ("vm1",) and latest.get("h3") == ("vm2", "vm3"), "deployed")

    pool.hosts["h3"].link_down()
    pool.wait_for(lambda latest: latest.get("h3") == (), "fenced on h3")
    pool.wait_for(_each_once_on({"h1", "h2"}, {"vm1", "vm2", "vm3"}), "restarted on h1 and h2")
    pool.hosts["h3"].link_up()
    _wait_for_hosts(pool, "h1", {pool.endpoint("h3"): "alive"})
    healed = time.monotonic()
    pool.wait_for(lambda latest: time.monotonic() > healed + 1.5, "watched for a while after the heal")

    _assert_never_two_copies(pool)
    after = [s for s in pool.sightings if s.host == "h3" and s.sent > healed]
    assert after
    assert all(s.running == () for s in after)
    everywhere = sorted(domain for host in ("h1", "h2", "h3") for domain in
                        next(s.running for s in reversed(pool.sightings) if s.host == host))
    assert everywhere == ["vm1", "vm2", "vm3"]


def test_a_child_failing_more_than_its_intensity_stays_failed_in_status_and_down_is_not_repaired(
        pool: Pool, tmp_path: Path) -> None:
    description = _description(pool, tmp_path, """
        intensity 2;
        vm1 extends VM { domainName "vm1"; memory 64; sfProcessHost "H2"; domainLivenessDelay 200; }
        flaky extends Compound {
            sfProcessHost "H3";
            crash extends Terminator { kill LAZY PARENT; type "abnormal"; description "crashed on purpose"; }
        }
""")
    _up(pool, description)

    deadline = time.monotonic() + WAIT
    while "gave up" not in (shown := pool.cli("status", "ha", "--host", pool.endpoint("h1")).stdout):
        assert time.monotonic() < deadline, shown
        time.sleep(0.1)  # polling a daemon in another namespace
    down = pool.cli("down", "ha", "--host", pool.endpoint("h1"))
    gone = pool.wait_for(lambda latest: all(latest.get(host) == () for host in ("h1", "h2", "h3")), "gone")
    later = pool.wait_for(lambda latest: time.monotonic() > gone + 1.5, "watched for a while after down")

    flaky = next(line for line in shown.splitlines() if line.split()[0] == "flaky")
    vm1 = next(line for line in shown.splitlines() if line.split()[0] == "vm1")
    assert flaky.split()[1] == "failed"
    assert "HARestarter gave up on 'flaky': it failed 3 times within 60 s (intensity 2)" in flaky
    assert vm1.split()[1] == "started"
    assert down.returncode == 0, down.stdout + down.stderr
    assert later > gone
    assert all(s.running == () for s in pool.sightings if s.sent > gone)


def test_a_host_taken_out_of_the_pool_is_forgotten_by_every_daemon_and_rejoins_when_it_comes_back(
        pool: Pool) -> None:
    h3 = pool.endpoint("h3")
    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)
    _wait_for_hosts(pool, "h1", {h3: "dead"})
    _wait_for_hosts(pool, "h2", {h3: "dead"})

    forgotten = pool.cli("forget-host", pool.hosts["h3"].address, "--host", pool.endpoint("h1"))
    views = {name: {h["address"] for h in json.loads(pool.cli("hosts", "--json", "--host", pool.endpoint(name)).stdout)}
             for name in ("h1", "h2")}
    refused = pool.cli("forget-host", pool.endpoint("h2"), "--host", pool.endpoint("h1"))
    _start_daemon(pool, "h3")
    _wait_for_hosts(pool, "h1", {h3: "alive"})

    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr
    assert forgotten.stdout == f"forgot {h3} on {pool.endpoint('h1')}, {pool.endpoint('h2')}\n"
    assert views == {"h1": {pool.endpoint("h1"), pool.endpoint("h2")}, "h2": {pool.endpoint("h1"), pool.endpoint("h2")}}
    assert refused.returncode == 1
    assert f"cannot forget {pool.endpoint('h2')}: {pool.endpoint('h2')} is alive: only a dead member" in refused.stderr


def test_vms_a_scheduler_placed_are_placed_again_by_it_when_their_host_dies(pool: Pool, tmp_path: Path) -> None:
    hosts = ", ".join(f'"{host.address}"' for host in pool.hosts)
    description = tmp_path / "scheduled.sf"
    description.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay 0.2;
    sfLivenessFactor 3;
    spreader extends Scheduler {{ hosts [| {hosts} |]; }}
    ha extends HARestarter {{
        vms extends Schedulee {{
            scheduler LAZY ATTRIB spreader;
            vm1 extends VM {{ domainName "vm1"; memory 64; domainLivenessDelay 200; }}
            vm2 extends VM {{ domainName "vm2"; memory 64; domainLivenessDelay 200; }}
            vm3 extends VM {{ domainName "vm3"; memory 64; domainLivenessDelay 200; }}
        }}
    }}
}}
""")
    _up(pool, description)
    pool.wait_for(_each_once_on({"h1", "h2", "h3"}, {"vm1", "vm2", "vm3"}), "placed")
    pool.collect()
    on_h3 = next(s.running for s in reversed(pool.sightings) if s.host == "h3")

    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)
    pool.wait_for(_each_once_on({"h1", "h2"}, {"vm1", "vm2", "vm3"}), "placed again on h1 and h2")

    assert on_h3  # the scheduler spread them: h3 ran some
    _assert_never_two_copies(pool)


def test_when_the_restarters_own_host_is_cut_off_its_vms_elsewhere_keep_running_and_never_run_twice(
        pool: Pool, tmp_path: Path) -> None:
    _up(pool, _description(pool, tmp_path, VMS))
    pool.wait_for(lambda latest: latest.get("h2") == ("vm1",) and latest.get("h3") == ("vm2", "vm3"), "deployed")

    pool.hosts["h1"].link_down()  # the HARestarter's host: the VMs it placed on h2 and h3 go on without it
    cut = time.monotonic()
    pool.wait_for(lambda latest: time.monotonic() > cut + 2.5, "watched while cut off (longer than --dead-after)")
    pool.hosts["h1"].link_up()
    pool.wait_for(_each_once_on({"h1", "h2", "h3"}, {"vm1", "vm2", "vm3"}), "running once each after the heal")

    _assert_never_two_copies(pool)
    during = [s for s in pool.sightings if s.host in ("h2", "h3") and cut + 1.5 < s.sent < cut + 2.5]
    assert during
    assert all(s.running == (("vm1",) if s.host == "h2" else ("vm2", "vm3")) for s in during)


def test_when_the_restarters_own_daemon_is_killed_its_vms_elsewhere_run_untouched_through_the_takeover_and_its_return(
        pool: Pool, tmp_path: Path) -> None:
    """h1, the HARestarter's host, stays dead for 2.5 s, longer than the lease and its margin
    (1.25 s): a survivor takes the HARestarter over and adopts the VMs where they run. h1, started
    again, re-deploys the application from its journal, learns it was taken over and runs it without
    the HARestarter's children. Throughout, h2 and h3 run the very VMs they ran before the kill,
    never stopped and never two copies. (test_takeover.py checks who took it over and what h1 shows.)"""
    _up(pool, _description(pool, tmp_path, VMS))
    pool.wait_for(lambda latest: latest.get("h2") == ("vm1",) and latest.get("h3") == ("vm2", "vm3"), "deployed")

    pool.hosts["h1"].kill(pool.daemons["h1"], signal.SIGKILL)
    killed = time.monotonic()
    pool.wait_for(lambda latest: time.monotonic() > killed + 2.5, "watched with h1 dead (longer than --dead-after)")
    _start_daemon(pool, "h1")  # it re-deploys from its journal; h2 and h3 hand their running VMs over

    status = _wait_for_status(pool, "h1", "ha", "running")
    assert {c["state"] for c in status["components"]} == {"started"}
    _assert_never_two_copies(pool)
    after = [(s.host, round(s.sent - killed, 2), s.running) for s in pool.sightings
             if s.host in ("h2", "h3") and s.sent > killed]
    odd = [entry for entry in after if entry[2] != (("vm1",) if entry[0] == "h2" else ("vm2", "vm3"))]
    assert not odd, odd[:20]


def _wait_for_status(pool: Pool, name: str, app: str, wanted: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT
    while True:
        result = pool.cli("status", app, "--json", "--host", pool.endpoint(name))
        if result.returncode == 0:
            # The application as this daemon runs it (a daemon also lists the HARestarters it keeps a replica of).
            for application in json.loads(result.stdout)["applications"]:
                if application["status"] == wanted and {c["state"] for c in application["components"]} == {"started"}:
                    return application  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"{app} on {name}: {result.stdout or result.stderr}")
        time.sleep(0.1)  # polling a daemon in another namespace: nothing to wait on here


@pytest.mark.parametrize("plugin_folder", [EVACUATION_PLUGINS], ids=["evacuate_to_highest"])
def test_hook_sd_actors_evacuate_to_decides_where_the_parts_of_a_dead_host_move(
        pool: Pool, tmp_path: Path) -> None:
    _up(pool, _description(pool, tmp_path, VMS))
    pool.wait_for(lambda latest: latest.get("h2") == ("vm1",) and latest.get("h3") == ("vm2", "vm3"), "deployed")

    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)

    # The default would move vm2 and vm3 to h1, which runs none of the HARestarter's children; the
    # plugin loaded with --plugin picks the highest address among the live hosts: h2.
    assert ipaddress.ip_address(pool.hosts["h2"].address) > ipaddress.ip_address(pool.hosts["h1"].address)
    pool.wait_for(lambda latest: set(latest.get("h2", ())) == {"vm1", "vm2", "vm3"} and not latest.get("h1"),
                  "vm1, vm2 and vm3 on h2")
    _assert_never_two_copies(pool)
