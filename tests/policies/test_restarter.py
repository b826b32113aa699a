"""HARestarter in one System (libvirt's in-memory test driver), and the two pieces that keep its
restarts single across hosts: the restart ledger's majority and the lease. The same across
network namespaces is in test_partition.py."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest

from sd_actors.actors import ComponentFailed, ComponentRef, ComponentSpec, State, System, open_system
from sd_actors.net import Heartbeat, MemberInfo, Membership
from sd_actors.net._peer_protocol import ClaimAnswer, ClaimRestart
from sd_actors.plugins._libvirt_events import open_connection
from sd_actors.policies import (
    HA_GENERATION,
    HARestarterStatistics,
    RestartLedger,
    claim_majority,
    lease_expiry,
)

TEST_HYPERVISOR = "test:///default"
WAIT = 10.0


@pytest.fixture
def connection() -> Iterator[libvirt.virConnect]:
    """The test's own view of the in-memory hypervisor (shared by the whole process)."""
    opened = open_connection(TEST_HYPERVISOR)
    yield opened
    opened.close()


@pytest.fixture
def system() -> Iterator[System]:
    with open_system(host="host1") as opened:
        yield opened


@pytest.fixture
def name() -> str:
    return f"ha-{uuid.uuid4().hex[:10]}"


def restarter(name: str, **attributes: object) -> ComponentSpec:
    vm = ComponentSpec("sd_actors.plugins.VM", {"domainName": name, "memory": 64, "vcpus": 1,
                                                 "hypervisor": TEST_HYPERVISOR, "domainLivenessDelay": 100})
    return ComponentSpec("sd_actors.policies.HARestarter", attributes, children={"web": vm})


def statistics(system: System) -> HARestarterStatistics:
    stats = system.lookup("app").call(lambda component: component.statistics())
    assert isinstance(stats, HARestarterStatistics)
    return stats


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {WAIT} s")
        time.sleep(0.02)  # polling an actor's statistics and libvirt: nothing to wait on


def running(connection: libvirt.virConnect, name: str) -> bool:
    try:
        return bool(connection.lookupByName(name).isActive())
    except libvirt.libvirtError:
        return False


def replaced(system: System, old: ComponentRef) -> Callable[[], bool]:
    def check() -> bool:
        current = system.lookup("app:web")
        return current is not old and current.state is State.STARTED
    return check


def test_a_vm_destroyed_behind_its_back_is_deployed_again_as_the_next_generation(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(restarter(name), name="app")
    first = system.lookup("app:web")

    connection.lookupByName(name).destroy()
    wait_until(replaced(system, first), "restarted")

    assert running(connection, name)
    assert first.state is State.FAILED
    assert system.lookup("app:web").description[HA_GENERATION] == 1
    assert statistics(system) == HARestarterStatistics(running={"web": ""}, waiting={}, given_up=(), restarts=1)


def test_a_compound_is_restarted_whole_when_a_vm_inside_it_fails_and_every_part_carries_the_generation(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    inner = restarter(name).children["web"]
    system.deploy(ComponentSpec("sd_actors.policies.HARestarter", {}, children={
        "group": ComponentSpec("sd_actors.actors.Compound", {}, children={"web": inner})}), name="app")
    first = system.lookup("app:group")
    generations = [first.description[HA_GENERATION], system.lookup("app:group:web").description[HA_GENERATION]]

    connection.lookupByName(name).destroy()
    wait_until(lambda: system.lookup("app:group") is not first and system.lookup("app:group").state is State.STARTED,
               "restarted")

    assert generations == [0, 0]
    assert system.lookup("app:group:web").description[HA_GENERATION] == 1
    assert running(connection, name)


def test_a_guest_that_shuts_itself_down_is_not_restarted(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(restarter(name), name="app")
    first = system.lookup("app:web")

    connection.lookupByName(name).shutdown()
    system.wait_for_state("app:web", State.TERMINATED, timeout=WAIT)

    assert first.record is not None
    assert first.record.is_normal
    assert statistics(system) == HARestarterStatistics(running={}, waiting={}, given_up=(), restarts=0)
    assert system.lookup("app").state is State.STARTED
    assert not running(connection, name)


def test_down_terminates_the_children_and_nothing_is_restarted(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(restarter(name), name="app")

    record = system.terminate("app")

    assert record.is_normal
    assert system.lookup("app:web").state is State.TERMINATED
    assert not running(connection, name)


def test_more_failures_than_the_intensity_give_the_child_up_and_it_stays_failed_in_the_tree(
        system: System, connection: libvirt.virConnect, name: str) -> None:
    system.deploy(restarter(name, intensity=1, period=60), name="app")
    first = system.lookup("app:web")
    connection.lookupByName(name).destroy()
    wait_until(replaced(system, first), "restarted")
    second = system.lookup("app:web")

    connection.lookupByName(name).destroy()
    wait_until(lambda: statistics(system).given_up == ("web",), "given up")

    assert statistics(system) == HARestarterStatistics(running={}, waiting={}, given_up=("web",), restarts=1)
    assert second.state is State.FAILED
    assert second.record is not None
    assert "HARestarter gave up on 'web': it failed 2 times within 60 s (intensity 1)" in second.record.description
    wait_until(lambda: second in system.lookup("app").children, "shown among the children")
    assert system.lookup("app").state is State.STARTED
    assert not running(connection, name)


def test_a_negative_intensity_is_refused_with_what_to_write_instead(system: System, name: str) -> None:
    with pytest.raises(ComponentFailed) as failure:
        system.deploy(restarter(name, intensity=-1), name="app")

    assert "app: attribute 'intensity' is -1; it must be 0 or more" in failure.value.record.description


# -- the ledger -------------------------------------------------------------------------------------------
def test_a_ledger_grants_a_path_and_generation_once_and_remembers_it_after_a_restart(tmp_path: Path) -> None:
    ledger = RestartLedger(tmp_path / "ledger.sqlite3")
    first = ledger.grant(("app", "web"), 1, "tcp://a:3800")
    again = ledger.grant(("app", "web"), 1, "tcp://a:3800")
    ledger.close()

    reopened = RestartLedger(tmp_path / "ledger.sqlite3")
    other = reopened.grant(("app", "web"), 1, "tcp://b:3800")
    next_generation = reopened.grant(("app", "web"), 2, "tcp://b:3800")
    reopened.close()

    assert (first, again, other, next_generation) == ("tcp://a:3800", "tcp://a:3800", "tcp://a:3800", "tcp://b:3800")


def test_of_concurrent_claimants_at_most_one_wins_each_generation(tmp_path: Path) -> None:
    ledgers = [RestartLedger(tmp_path / f"member{n}.sqlite3") for n in range(5)]
    chooser = random.Random(6)
    delays = {(generation, member, claimant): chooser.random() * 0.004
              for generation in range(40) for member in range(5) for claimant in range(4)}

    def voter(member: int) -> Callable[[ClaimRestart], ClaimAnswer]:
        def vote(claim: ClaimRestart) -> ClaimAnswer:
            time.sleep(delays[(claim.generation, member, int(claim.claimant))])  # messages arrive in any order
            holder = ledgers[member].grant(claim.path, claim.generation, claim.claimant)
            return ClaimAnswer(granted=holder == claim.claimant, holder=holder)
        return vote

    voters = {f"member{n}": voter(n) for n in range(5)}
    winners: dict[int, list[str]] = {generation: [] for generation in range(40)}
    lock = threading.Lock()

    def claimant(who: str, start: threading.Barrier) -> None:
        for generation in range(40):
            start.wait()
            outcome = claim_majority(ClaimRestart(path=("app", "web"), generation=generation, claimant=who),
                                     voters, window=5.0)
            if outcome.won:
                with lock:
                    winners[generation].append(who)

    start = threading.Barrier(4)
    threads = [threading.Thread(target=claimant, args=(str(n), start)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    holders = {generation: [ledger.holder(("app", "web"), generation) for ledger in ledgers]
               for generation in range(40)}
    for ledger in ledgers:
        ledger.close()

    assert all(len(names) <= 1 for names in winners.values()), winners
    assert sum(len(names) for names in winners.values()) > 0
    for generation, names in winners.items():
        if names:  # the winner holds the grant of a majority of the members
            assert holders[generation].count(names[0]) >= 3


def test_grants_gathered_over_more_than_the_window_do_not_win() -> None:
    def slow(claim: ClaimRestart) -> ClaimAnswer:
        time.sleep(0.05)
        return ClaimAnswer(granted=True, holder=claim.claimant)

    def fast(claim: ClaimRestart) -> ClaimAnswer:
        return ClaimAnswer(granted=True, holder=claim.claimant)

    def unreachable(claim: ClaimRestart) -> ClaimAnswer:
        raise TimeoutError

    claim = ClaimRestart(path=("app", "web"), generation=1, claimant="a", unreachable=("tcp://c:3800",))
    late = claim_majority(claim, {"a": fast, "b": slow, "c": unreachable}, window=0.01)
    in_time = claim_majority(claim, {"a": fast, "b": slow, "c": unreachable}, window=1.0)
    minority = claim_majority(claim, {"a": fast, "b": unreachable, "c": unreachable}, window=1.0)

    assert not late.won
    assert "more than the 0.01 s allowed" in str(late)
    assert in_time.won
    assert in_time.granted_by == ("a", "b")
    assert not minority.won
    assert minority.refusals == ("b: no answer (TimeoutError)", "c: no answer (TimeoutError)")


# -- the lease ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("acknowledged", "electorate", "expected"), [
    ((), 1, 101.0),
    ((None, None), 3, -math.inf),
    ((99.0, None), 3, 100.0),
    ((99.0, 99.5), 3, 100.5),
    ((99.0, 99.5, None, None), 5, 100.0),
    ((99.5, None, None, None), 5, -math.inf),
    ((99.0,), 2, 100.0),
], ids=["alone", "nobody-answers", "one-of-two-answers", "newest-answer", "two-of-four", "one-of-four",
        "pair-needs-both"])
def test_the_lease_runs_from_the_sending_of_the_newest_heartbeat_a_majority_answered(
        acknowledged: tuple[float | None, ...], electorate: int, expected: float) -> None:
    assert lease_expiry(now=100.0, acknowledged=acknowledged, electorate=electorate, duration=1.0) == expected


# -- forgetting a host taken out of the pool -------------------------------------------------------------
def _membership(now: list[float], *others: str) -> Membership:
    membership = Membership("tcp://a:3800", "", incarnation=1, clock=lambda: now[0], interval=1.0, suspect_after=3.0,
                            dead_after=10.0)
    for address in others:
        membership.receive(Heartbeat(sender=MemberInfo(address=address, incarnation=1)))
    return membership


def test_forgetting_hosts_taken_out_of_the_pool_gives_the_others_their_majority_back() -> None:
    now = [0.0]
    membership = _membership(now, "tcp://b:3800", "tcp://c:3800", "tcp://d:3800")
    now[0] = 20.0  # c and d are gone for good; b still beats
    membership.receive(Heartbeat(sender=MemberInfo(address="tcp://b:3800", incarnation=1)))
    membership.tick()
    before = membership.majority_visible()

    membership.forget("tcp://c:3800")
    membership.forget("tcp://d:3800")
    membership.receive(Heartbeat(sender=MemberInfo(address="tcp://b:3800", incarnation=1), members=(
        MemberInfo(address="tcp://c:3800", incarnation=1, state="dead", heard=20.0),)))  # b still gossips of c

    assert not before  # two of four
    assert [member.address for member in membership.members()] == ["tcp://a:3800", "tcp://b:3800"]
    assert membership.majority_visible()


def test_a_forgotten_host_that_sends_a_heartbeat_is_a_member_again() -> None:
    now = [0.0]
    membership = _membership(now, "tcp://b:3800", "tcp://c:3800")
    now[0] = 20.0
    membership.tick()
    membership.forget("tcp://c:3800")

    membership.receive(Heartbeat(sender=MemberInfo(address="tcp://c:3800", incarnation=1)))

    assert "tcp://c:3800" in [member.address for member in membership.members()]


def test_forgetting_a_live_host_is_refused_saying_to_stop_it_first() -> None:
    membership = _membership([0.0], "tcp://b:3800")

    with pytest.raises(ValueError, match="tcp://b:3800 is alive: only a dead member can be forgotten; stop its daemon"):
        membership.forget("tcp://b:3800")
