"""``sd-actors forget-host`` survives restarts: three daemons on this machine (insecure, 127.0.0.1
ports of their own, a simulated hypervisor each). A host forgotten by the pool is not counted again
by a survivor restarted with its old ``--peer`` list, and rejoins every daemon when it comes back.

``sd-actors hosts`` lists what a daemon counts a majority over: its members, and the ``--peer``
seeds it has not heard from yet (``unheard``). A forget needs a majority of that pool to confirm
it, so the minority side of a partition forgets nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sd_actors.actors._forgotten_hosts import FORGOTTEN_HOSTS_FILE
from sd_actors.policies._takeover import REPLICAS_FILE_NAME, ReplicaStore
from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of
from tests.plugins.hosts_xml import write_test_host

TIMINGS = ("--heartbeat-interval", "0.2", "--suspect-after", "0.6", "--dead-after", "1.0")
WAIT = 20.0


@dataclass
class Pool:
    user: User
    daemons: dict[str, DaemonProcess]

    def cli(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return self.user.run(*arguments, "--insecure")

    def hosts(self, name: str) -> dict[str, str]:
        """Address → state of every host daemon ``name`` counts a majority over."""
        listed = json_of(self.cli("hosts", "--json", "--host", self.daemons[name].host))
        assert isinstance(listed, list)
        return {host["address"]: host["state"] for host in listed}

    def endpoint(self, name: str) -> str:
        return self.daemons[name].endpoint

    def forgotten(self, name: str) -> object:
        return json.loads((self.daemons[name].state_dir / FORGOTTEN_HOSTS_FILE).read_text())

    def wait_for(self, name: str, states: dict[str, str]) -> None:
        seen: dict[str, str] = {}

        def shows_states() -> bool:
            seen.clear()
            seen.update(self.hosts(name))
            return seen == states

        try:
            eventually(shows_states, timeout=WAIT, what=f"{name} sees {states}")
        except AssertionError:
            raise AssertionError(f"{name} sees {seen}, not {states}, after {WAIT:g} s") from None


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[Pool]:
    """Daemons a, b and c, each told of the two others by --peer, each seeing all three alive."""
    yield from _pool(tmp_path, "abc")


@pytest.fixture
def pool_of_five(tmp_path: Path) -> Iterator[Pool]:
    """Daemons a to e, each told of the others by --peer, each seeing all five alive."""
    yield from _pool(tmp_path, "abcde")


def _pool(tmp_path: Path, names: str) -> Iterator[Pool]:
    user = User.make(tmp_path / "user")
    ports = {name: free_port() for name in names}
    daemons = {name: DaemonProcess(user, tmp_path / f"state-{name}", port, "--insecure", *TIMINGS, "--hypervisor",
                                   write_test_host(tmp_path, name=f"host-{name}", cpus=2, memory_mib=2048),
                                   *(option for other, other_port in ports.items() if other != name
                                     for option in ("--peer", f"tcp://127.0.0.1:{other_port}")))
               for name, port in ports.items()}
    pool = Pool(user, daemons)
    try:
        for daemon in daemons.values():
            daemon.start()
        every = {pool.endpoint(name): "alive" for name in daemons}
        for name in daemons:
            pool.wait_for(name, every)
        yield pool
    finally:
        for daemon in daemons.values():
            if daemon.process is not None:
                os.kill(daemon.pid, signal.SIGCONT)  # a test may leave one frozen
                daemon.stop()


def test_a_forgotten_host_is_not_counted_by_a_survivor_restarted_with_its_old_peers_and_rejoins_when_back(
        pool: Pool) -> None:
    a, b, c = (pool.endpoint(name) for name in "abc")
    pool.daemons["c"].kill()
    pool.wait_for("a", {a: "alive", b: "alive", c: "dead"})
    pool.wait_for("b", {a: "alive", b: "alive", c: "dead"})
    forgotten = pool.cli("forget-host", c, "--host", pool.daemons["a"].host)
    kept = {name: pool.forgotten(name) for name in "ab"}

    assert pool.daemons["a"].stop() == 0
    pool.daemons["a"].start()  # with --peer b and --peer c, as before
    at_start = pool.hosts("a")
    pool.wait_for("a", {a: "alive", b: "alive"})
    shown = pool.cli("hosts", "--host", pool.daemons["a"].host).stdout
    log = pool.daemons["a"].log()

    pool.daemons["c"].start()
    everyone = {a: "alive", b: "alive", c: "alive"}
    for name in "abc":
        pool.wait_for(name, everyone)

    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr
    assert forgotten.stdout == f"forgot {c} on {', '.join(sorted((a, b)))}\n"
    assert kept["a"] == kept["b"]  # c's incarnation: gossip of that life of c counts for neither
    assert isinstance(kept["a"], dict)
    assert list(kept["a"]) == [c]
    assert c not in at_start
    assert shown.endswith("a majority is 2 of these 2\n"), shown
    assert ("forgotten on purpose (sd-actors forget-host), counted in no majority until heard from again: "
            f"{c}") in log
    assert f"--peer {c} was forgotten (sd-actors forget-host): it counts again once it is heard from" in log
    assert pool.forgotten("a") == pool.forgotten("b") == {}


def test_a_forget_needs_a_majority_of_the_pool_so_the_minority_side_of_a_partition_forgets_nothing(
        pool_of_five: Pool) -> None:
    pool = pool_of_five
    a, b, c, d, e = (pool.endpoint(name) for name in "abcde")
    for name in "cde":  # frozen: a and b see them dead, as across a partition {a, b} | {c, d, e}
        os.kill(pool.daemons[name].pid, signal.SIGSTOP)
    cut_off = {a: "alive", b: "alive", c: "dead", d: "dead", e: "dead"}
    pool.wait_for("a", cut_off)
    pool.wait_for("b", cut_off)
    refused = pool.cli("forget-host", d, "--host", pool.daemons["a"].host)
    after_refusal = {name: pool.hosts(name) for name in "ab"}
    folders = [pool.daemons[name].state_dir / FORGOTTEN_HOSTS_FILE for name in "ab"]
    nothing_written = not any(folder.exists() for folder in folders)

    pool.daemons["d"].kill()  # d is really gone now; c comes back, e stays cut off
    os.kill(pool.daemons["c"].pid, signal.SIGCONT)
    for name in "abc":
        pool.wait_for(name, {a: "alive", b: "alive", c: "alive", d: "dead", e: "dead"})
    forgotten = pool.cli("forget-host", d, "--host", pool.daemons["a"].host)
    kept = {name: pool.forgotten(name) for name in "abc"}
    left = pool.hosts("b")

    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (f"{a} cannot forget {d}: only 2 of the 5 daemons of the pool confirmed it, and a majority is 3; "
            "nothing was forgotten") in refused.stderr, refused.stderr
    for other in (c, e):
        assert f"{other}: no answer" in refused.stderr
    assert after_refusal == {"a": cut_off, "b": cut_off}
    assert nothing_written
    assert forgotten.returncode == 1, forgotten.stdout + forgotten.stderr  # e was not told
    assert forgotten.stdout.startswith(f"forgot {d} on {', '.join(sorted((a, b, c)))}\n"), forgotten.stdout
    assert f"not forgotten on {e}: no answer" in forgotten.stdout
    assert kept["a"] == kept["b"] == kept["c"]
    assert isinstance(kept["a"], dict)
    assert list(kept["a"]) == [d]
    assert left == {a: "alive", b: "alive", c: "alive", e: "dead"}


def test_a_peer_not_heard_from_yet_is_listed_as_unheard_and_counts_for_the_majority(tmp_path: Path) -> None:
    user = User.make(tmp_path / "user")
    silent = f"tcp://127.0.0.1:{free_port()}"
    daemon = DaemonProcess(user, tmp_path / "state", free_port(), "--insecure", *TIMINGS, "--peer", silent,
                           "--hypervisor", write_test_host(tmp_path, name="host", cpus=2, memory_mib=2048))
    daemon.start()
    try:
        listed = json_of(user.run("hosts", "--json", "--insecure", "--host", daemon.host))
        shown = user.run("hosts", "--insecure", "--host", daemon.host).stdout
    finally:
        assert daemon.stop() == 0

    assert isinstance(listed, list)
    assert {host["address"]: (host["state"], host["self"]) for host in listed} == {
        silent: ("unheard", False), daemon.endpoint: ("alive", True)}
    assert next(host["last_heard"] for host in listed if host["address"] == silent) is None
    assert f"{silent:32s} unheard  heard never\n" in shown
    assert shown.endswith("a majority is 2 of these 2\n")


def test_a_daemon_whose_list_of_forgotten_hosts_is_damaged_does_not_start_and_says_how_to_fix_it(
        tmp_path: Path) -> None:
    user = User.make(tmp_path / "user")
    state = tmp_path / "state"
    state.mkdir()
    (state / FORGOTTEN_HOSTS_FILE).write_text('{"10.0.0.3": 7}')

    started = user.run("daemon", "--insecure", "--bind", f"tcp://127.0.0.1:{free_port()}", "--state-dir", str(state),
                       "--hypervisor", "test:///default")

    assert started.returncode != 0
    assert (f"sd-actors daemon: {state / FORGOTTEN_HOSTS_FILE}: invalid daemon address '10.0.0.3': it is not "
            "tcp://HOST:PORT, ipc://PATH or inproc://NAME; fix it, or delete it") in started.stderr


def test_a_daemon_counted_in_an_earlier_run_is_in_the_pool_again_after_a_restart_so_it_can_be_forgotten(
        pool: Pool) -> None:
    a, b, c = (pool.endpoint(name) for name in "abc")
    gone = f"tcp://127.0.0.1:{free_port()}"  # decommissioned without forget-host: each daemon counted it
    for name in "abc":
        assert pool.daemons[name].stop() == 0
        store = ReplicaStore(pool.daemons[name].state_dir / REPLICAS_FILE_NAME)
        store.remember_electorate({gone})
        store.close()
    for name in "abc":
        pool.daemons[name].start()  # with --peer of the two others only
    for name in "abc":
        pool.wait_for(name, {a: "alive", b: "alive", c: "alive", gone: "unheard"})
    shown = pool.cli("hosts", "--host", pool.daemons["a"].host).stdout
    forgotten = pool.cli("forget-host", gone, "--host", pool.daemons["a"].host)
    assert pool.daemons["b"].stop() == 0
    pool.daemons["b"].start()
    pool.wait_for("b", {a: "alive", b: "alive", c: "alive"})

    assert shown.endswith("a majority is 3 of these 4\n"), shown
    assert forgotten.returncode == 0, forgotten.stdout + forgotten.stderr
    assert forgotten.stdout == f"forgot {gone} on {', '.join(sorted((a, b, c)))}\n"
    for name in "ac":
        assert pool.hosts(name) == {a: "alive", b: "alive", c: "alive"}
