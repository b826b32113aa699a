"""Membership without a master: daemons learn each other by gossip, decide who is alive, suspect or
dead from their own clocks, and a daemon cut off from the others knows it has lost the majority.

A fake clock and a small in-memory network stand in for time and ZeroMQ: each step moves the clock
one interval, lets every running daemon tick, and delivers what the ticks returned, except over
links the test has cut.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from random import Random
from typing import Final

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sd_actors.net import (
    BadField,
    Heartbeat,
    InvalidAddress,
    MemberInfo,
    Membership,
    MembershipChange,
    MessageRegistry,
    generate_keypair,
)

INTERVAL: Final = 1.0
SUSPECT_AFTER: Final = 3.0
DEAD_AFTER: Final = 10.0
START: Final = 1000.0
MAX_SIZE: Final = 1 << 20

A: Final = "tcp://10.0.0.1:3800"
B: Final = "tcp://10.0.0.2:3800"
C: Final = "tcp://10.0.0.3:3800"
D: Final = "tcp://10.0.0.4:3800"


class FakeClock:
    """Monotonic seconds that move only when the test moves them."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_membership(address: str, clock: FakeClock, *, incarnation: int = 1, public_key: str = "",
                    fanout: int = 3) -> Membership:
    return Membership(address, public_key, incarnation=incarnation, clock=clock, interval=INTERVAL,
                      suspect_after=SUSPECT_AFTER, dead_after=DEAD_AFTER, fanout=fanout, random=Random(address))


def beat(sender: str, *members: MemberInfo, incarnation: int = 1, sent: float | None = None) -> Heartbeat:
    """A heartbeat written by hand, as a daemon at ``sender`` would send it."""
    return Heartbeat(sender=MemberInfo(address=sender, incarnation=incarnation), members=members, sent=sent)


class Network:
    """Membership objects joined by links that deliver at once, unless a test cuts, holds or pauses them."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.daemons: dict[str, Membership] = {}
        self.changes: dict[str, list[MembershipChange]] = {}
        self.isolated: set[str] = set()
        self.cut_links: set[frozenset[str]] = set()
        self.paused: set[str] = set()
        self.to_hold: set[tuple[str, str]] = set()
        self.held: list[tuple[str, Heartbeat]] = []

    def start(self, address: str, *, seeds: Iterable[str] = (), incarnation: int = 1,
              public_key: str = "") -> Membership:
        membership = make_membership(address, self.clock, incarnation=incarnation, public_key=public_key)
        membership.seed(seeds)
        changes: list[MembershipChange] = []
        self.changes[address] = changes
        membership.subscribe(changes.append)
        self.daemons[address] = membership
        return membership

    def stop(self, address: str) -> None:
        """kill -9: the daemon says nothing more."""
        del self.daemons[address]

    def cut_link(self, first: str, second: str) -> None:
        self.cut_links.add(frozenset((first, second)))

    def hold_next(self, sender: str, target: str) -> None:
        """Keep the next heartbeat from sender to target in a queue, as TCP does over a dead link."""
        self.to_hold.add((sender, target))

    def release_held(self) -> None:
        for target, heartbeat in self.held:
            self.daemons[target].receive(heartbeat)
        self.held.clear()

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            self.clock.advance(INTERVAL)
            running = [(address, daemon) for address, daemon in sorted(self.daemons.items())
                       if address not in self.paused]
            outgoing = [(address, target, heartbeat) for address, daemon in running
                        for target, heartbeat in daemon.tick()]
            for sender, target, heartbeat in outgoing:
                self._deliver(sender, target, heartbeat)

    def states(self, observer: str) -> dict[str, str]:
        return {member.address: member.state for member in self.daemons[observer].members()}

    def _deliver(self, sender: str, target: str, heartbeat: Heartbeat) -> None:
        if (sender, target) in self.to_hold:
            self.to_hold.discard((sender, target))
            self.held.append((target, heartbeat))
            return
        if {sender, target} & self.isolated or frozenset((sender, target)) in self.cut_links:
            return
        receiver = self.daemons.get(target)
        if receiver is not None and target not in self.paused:
            receiver.receive(heartbeat)


@pytest.fixture
def pool() -> Network:
    """Three daemons that know each other, every change so far forgotten."""
    network = Network()
    network.start(A, seeds=[B])
    network.start(B, seeds=[C])
    network.start(C, seeds=[B])
    network.step(3)
    for changes in network.changes.values():
        changes.clear()
    return network


# -- learning the pool ---------------------------------------------------------------------------------


def test_three_daemons_seeded_with_one_peer_each_learn_of_each_other_within_a_few_intervals() -> None:
    network = Network()
    keys = {address: generate_keypair().public.decode() for address in (A, B, C)}
    network.start(A, seeds=[B], public_key=keys[A])
    network.start(B, seeds=[C], public_key=keys[B])
    network.start(C, seeds=[B], public_key=keys[C])

    network.step(2)

    for observer in (A, B, C):
        assert network.states(observer) == {A: "alive", B: "alive", C: "alive"}
        assert network.daemons[observer].unheard_seeds() == ()
        for address in (A, B, C):
            assert network.daemons[observer].public_key(address) == keys[address]
    assert sorted(change.address for change in network.changes[A]) == [B, C]


def test_a_member_learnt_by_gossip_comes_with_its_public_key_before_it_is_heard_directly() -> None:
    clock = FakeClock()
    membership = make_membership(A, clock)
    key = generate_keypair().public.decode()

    membership.receive(beat(B, MemberInfo(address=C, public_key=key, incarnation=7, heard=0.5)))

    member = membership.member(C)
    assert member is not None
    assert (member.state, member.incarnation, member.public_key) == ("alive", 7, key)
    assert (member.last_heard, member.heard_directly) == (START - 0.5, None)
    assert membership.public_key(C) == key


def test_members_are_sorted_by_address_and_this_daemon_is_among_them_once(pool: Network) -> None:
    members = pool.daemons[B].members()

    assert [member.address for member in members] == [A, B, C]
    assert [member.is_self for member in members] == [False, True, False]
    assert members[1].last_heard is None
    assert pool.daemons[B].alive_addresses() == (A, B, C)
    assert pool.daemons[B].member("tcp://10.0.0.9:3800") is None
    assert pool.daemons[B].public_key("tcp://10.0.0.9:3800") is None


def test_seeds_are_contacted_every_interval_until_they_answer_and_are_no_members_before() -> None:
    network = Network()
    a = network.start(A, seeds=[B, C, A])
    network.start(B)

    contacted = [sorted(target for target, _ in a.tick()) for _ in range(2)]
    network.step(1)
    network.step(1)

    assert contacted == [[B, C], [B, C]]
    assert a.unheard_seeds() == (C,)
    assert [member.address for member in a.members()] == [A, B]
    assert sorted(target for target, _ in a.tick()) == [B, C]
    assert a.majority_visible()


def test_a_seed_with_a_bad_address_is_refused_with_a_hint_and_no_seed_is_added() -> None:
    membership = make_membership(A, FakeClock())

    with pytest.raises(InvalidAddress) as excinfo:
        membership.seed([B, "10.0.0.3:3800"])

    assert excinfo.value.address == "10.0.0.3:3800"
    assert "tcp://HOST:PORT" in excinfo.value.hint
    assert membership.unheard_seeds() == ()


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("tcp://*:3800", "every interface"),
        ("tcp://10.0.0.1:99999", "between 1 and 65535"),
        ("tcp://10.0.0.1", "tcp://HOST:PORT"),
        ("http://10.0.0.1:3800", "tcp://HOST:PORT"),
        ("tcp://host name:3800", "tcp://HOST:PORT"),
    ],
    ids=["wildcard", "port-too-big", "no-port", "not-zeromq", "space"],
)
def test_addresses_others_could_not_connect_to_are_refused(address: str, problem: str) -> None:
    with pytest.raises(InvalidAddress, match=problem):
        MemberInfo(address=address, incarnation=1)


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"interval": 0.0}, "interval must be a number of seconds above 0"),
        ({"interval": 1.0, "suspect_after": 1.0}, "suspect_after .* must be longer than interval"),
        ({"suspect_after": 3.0, "dead_after": 3.0}, "dead_after .* must be longer than suspect_after"),
        ({"dead_after": math.inf}, "dead_after must be a number of seconds above 0"),
        ({"fanout": 0}, "fanout must be an int of 1 or more"),
    ],
    ids=["no-interval", "suspect-within-one-interval", "dead-before-suspect", "never-dead", "no-fanout"],
)
def test_timings_that_cannot_work_are_refused_with_the_rule_they_break(
    settings_: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Membership(A, "", incarnation=1, clock=FakeClock(), **settings_)  # type: ignore[arg-type]


# -- detecting failures --------------------------------------------------------------------------------


def test_a_silent_member_is_suspect_after_suspect_after_and_dead_after_dead_after_each_announced_once(
    pool: Network,
) -> None:
    announced: list[tuple[float, MembershipChange]] = []
    pool.daemons[A].subscribe(lambda change: announced.append((pool.clock.now, change)))
    last_heard = pool.clock.now

    pool.stop(C)
    pool.step(30)

    assert announced == [
        (last_heard + SUSPECT_AFTER, MembershipChange(address=C, old_state="alive", new_state="suspect",
                                                      old_incarnation=1, new_incarnation=1)),
        (last_heard + DEAD_AFTER, MembershipChange(address=C, old_state="suspect", new_state="dead",
                                                   old_incarnation=1, new_incarnation=1)),
    ]
    member = pool.daemons[A].member(C)
    assert member is not None
    assert member.last_heard == last_heard
    assert pool.states(B)[C] == "dead"


def test_a_restarted_daemon_rejoins_with_its_new_incarnation_and_is_alive_everywhere(pool: Network) -> None:
    pool.stop(C)
    pool.step(11)
    assert pool.states(A)[C] == pool.states(B)[C] == "dead"

    pool.start(C, seeds=[A], incarnation=2)
    pool.step(3)

    for observer in (A, B, C):
        assert pool.states(observer) == {A: "alive", B: "alive", C: "alive"}
    for observer in (A, B):
        member = pool.daemons[observer].member(C)
        assert member is not None
        assert member.incarnation == 2
        rejoined = [change for change in pool.changes[observer] if change.old_state == "dead"]
        assert rejoined == [MembershipChange(address=C, old_state="dead", new_state="alive",
                                             old_incarnation=1, new_incarnation=2)]
        assert rejoined[0].restarted


def test_a_daemon_restarted_before_anyone_suspected_it_is_announced_as_restarted(pool: Network) -> None:
    pool.stop(C)
    pool.start(C, seeds=[A], incarnation=2)

    pool.step(2)

    for observer in (A, B):
        assert pool.changes[observer] == [MembershipChange(address=C, old_state="alive", new_state="alive",
                                                           old_incarnation=1, new_incarnation=2)]


def test_a_heartbeat_from_an_earlier_life_is_ignored_with_its_gossip() -> None:
    membership = make_membership(A, FakeClock())
    membership.receive(beat(C, incarnation=2))

    membership.receive(beat(C, MemberInfo(address=D, incarnation=1), incarnation=1))

    member = membership.member(C)
    assert member is not None
    assert member.incarnation == 2
    assert membership.member(D) is None


def test_a_cut_off_daemon_sees_it_lost_the_majority_while_the_others_keep_it_and_rejoins_when_healed(
    pool: Network,
) -> None:
    pool.isolated.add(C)

    pool.step(2)
    assert pool.daemons[C].majority_visible()
    pool.step(1)

    assert not pool.daemons[C].majority_visible()
    assert pool.states(C) == {A: "suspect", B: "suspect", C: "alive"}
    assert pool.daemons[A].majority_visible()
    assert pool.daemons[B].majority_visible()
    pool.step(7)
    assert pool.states(A)[C] == pool.states(B)[C] == "dead"
    assert pool.daemons[A].majority_visible()

    pool.isolated.clear()
    pool.step(1)

    for observer in (A, B, C):
        assert pool.states(observer) == {A: "alive", B: "alive", C: "alive"}
        assert pool.daemons[observer].majority_visible()


def test_a_daemon_that_outlives_most_of_the_pool_has_no_majority_left(pool: Network) -> None:
    pool.stop(B)
    pool.stop(C)

    pool.step(int(SUSPECT_AFTER))

    assert not pool.daemons[A].majority_visible()
    assert pool.daemons[A].alive_addresses() == (A,)


def test_a_member_another_daemon_still_hears_is_kept_alive_by_its_gossip(pool: Network) -> None:
    cut_at = pool.clock.now
    pool.cut_link(A, C)

    pool.step(15)

    for observer in (A, B, C):
        assert pool.states(observer) == {A: "alive", B: "alive", C: "alive"}
        assert pool.daemons[observer].majority_visible()
    member = pool.daemons[A].member(C)
    assert member is not None
    assert member.heard_directly == cut_at
    assert pool.changes[A] == pool.changes[C] == []


def test_a_pause_of_this_daemon_is_not_held_against_the_others(pool: Network) -> None:
    pool.paused.add(A)
    pool.step(20)

    pool.paused.clear()
    pool.step(1)

    assert pool.changes[A] == []
    assert pool.states(A) == {A: "alive", B: "alive", C: "alive"}
    assert pool.states(B)[A] == "alive"


# -- gossip that must not be believed --------------------------------------------------------------------


def test_gossip_never_makes_a_member_look_more_silent_than_we_heard_it_directly() -> None:
    clock = FakeClock()
    membership = make_membership(A, clock)
    membership.receive(beat(C))
    clock.advance(1.0)

    membership.receive(beat(B, MemberInfo(address=C, incarnation=1, state="dead", heard=60.0)))
    membership.tick()

    member = membership.member(C)
    assert member is not None
    assert (member.state, member.last_heard) == ("alive", START)


def test_gossip_brings_a_dead_member_back_only_with_news_from_after_it_was_declared_dead() -> None:
    clock = FakeClock()
    membership = make_membership(A, clock)
    changes: list[MembershipChange] = []
    membership.subscribe(changes.append)
    membership.receive(beat(C))
    for _ in range(int(DEAD_AFTER)):
        clock.advance(INTERVAL)
        membership.receive(beat(B))
        membership.tick()
    declared_dead_at = clock.now
    assert [change.new_state for change in changes] == ["alive", "alive", "suspect", "dead"]

    # Fresher than our own news of C, but from before our verdict: a gossiper that lagged behind.
    membership.receive(beat(D, MemberInfo(address=C, incarnation=1, heard=DEAD_AFTER - 0.5)))
    membership.receive(beat(B, MemberInfo(address=C, incarnation=1, heard=0.5)))
    assert membership.member(C).state == "dead"  # type: ignore[union-attr]
    clock.advance(INTERVAL)
    membership.receive(beat(B, MemberInfo(address=C, incarnation=1, heard=0.5)))

    member = membership.member(C)
    assert member is not None
    assert (member.state, member.last_heard) == ("alive", declared_dead_at + 0.5)
    assert changes[-1] == MembershipChange(address=C, old_state="dead", new_state="alive",
                                           old_incarnation=1, new_incarnation=1)


def test_a_heartbeat_held_in_a_queue_does_not_resurrect_a_member_that_died_meanwhile(pool: Network) -> None:
    pool.hold_next(B, A)
    pool.step(1)
    pool.stop(C)
    pool.step(12)
    assert pool.states(A)[C] == "dead"
    pool.changes[A].clear()

    pool.release_held()

    assert pool.states(A)[C] == "dead"
    assert pool.changes[A] == []


def test_gossip_about_this_daemon_is_refuted_by_sending_its_own_view_next() -> None:
    clock = FakeClock()
    membership = make_membership(A, clock, fanout=1)
    for address in (B, C, D, "tcp://10.0.0.5:3800", "tcp://10.0.0.6:3800"):
        membership.receive(beat(address))
    membership.tick()

    membership.receive(beat(D, MemberInfo(address=A, incarnation=1, state="dead", heard=30.0)))
    clock.advance(INTERVAL)
    heartbeats = dict(membership.tick())

    assert membership.member(A) == membership.members()[0]
    assert membership.members()[0].state == "alive"
    assert heartbeats[D].members != ()
    assert heartbeats[D].sender == MemberInfo(address=A, incarnation=1, state="alive", heard=0.0)


# -- forgetting a member (sd-actors forget-host) -------------------------------------------------------------


def _dead_everywhere(pool: Network, address: str) -> None:
    pool.stop(address)
    pool.step(int(DEAD_AFTER / INTERVAL) + 1)
    assert all(pool.states(observer)[address] == "dead" for observer in pool.daemons)


def test_a_forgotten_member_counts_in_no_majority_and_gossip_of_the_life_it_was_forgotten_in_is_ignored(
        pool: Network) -> None:
    _dead_everywhere(pool, C)
    pool.daemons[A].forget(C)

    pool.step(3)  # B still gossips about C, dead, in the life A forgot

    assert C not in pool.states(A)
    assert pool.daemons[A].forgotten() == {C: 1}
    assert pool.daemons[A].majority_visible()


def test_forgetting_a_member_already_forgotten_changes_nothing_and_an_unknown_one_is_refused(pool: Network) -> None:
    _dead_everywhere(pool, C)
    pool.daemons[A].forget(C)

    pool.daemons[A].forget(C)

    assert pool.daemons[A].forgotten() == {C: 1}
    with pytest.raises(ValueError, match=f"{D} is not a member; members: {B}"):
        pool.daemons[A].forget(D)


def test_a_forgotten_member_back_with_a_new_life_rejoins_every_daemon_and_leaves_their_forgotten_lists(
        pool: Network) -> None:
    _dead_everywhere(pool, C)
    for observer in (A, B):
        pool.daemons[observer].forget(C)

    pool.start(C, seeds=[A], incarnation=2)
    pool.step(3)

    assert pool.states(A) == pool.states(B) == {A: "alive", B: "alive", C: "alive"}
    assert pool.daemons[A].forgotten() == pool.daemons[B].forgotten() == {}


def test_a_seed_never_heard_from_is_forgotten_in_whatever_life_it_has_so_far() -> None:
    membership = make_membership(A, FakeClock())
    membership.seed([B, C])

    membership.forget(C)

    assert membership.unheard_seeds() == (B,)
    assert membership.forgotten() == {C: -1}


def test_what_an_earlier_life_of_this_daemon_forgot_stays_forgotten_though_given_again_as_a_seed() -> None:
    membership = Membership(A, "", incarnation=1, clock=FakeClock(), interval=INTERVAL, suspect_after=SUSPECT_AFTER,
                            dead_after=DEAD_AFTER, forgotten={C: 5, D: -1})
    membership.seed([B, C, D])

    membership.receive(beat(B, MemberInfo(address=C, incarnation=5, state="dead", heard=20.0)))

    assert membership.unheard_seeds() == ()
    assert [member.address for member in membership.members()] == [A, B]
    assert membership.forgotten() == {C: 5, D: -1}
    assert [target for target, _ in membership.tick()] == [B]


@pytest.mark.parametrize(("news", "back"), [
    (beat(C, incarnation=5), C),
    (beat(B, MemberInfo(address=C, incarnation=6, heard=0.5)), C),
    (beat(B, MemberInfo(address=D, incarnation=1, heard=0.5)), D),
], ids=["a heartbeat from it", "gossip of a later life", "gossip of a seed forgotten unheard"])
def test_what_an_earlier_life_forgot_rejoins_on_news_of_it_from_after_the_forget(news: Heartbeat, back: str) -> None:
    membership = Membership(A, "", incarnation=1, clock=FakeClock(), interval=INTERVAL, suspect_after=SUSPECT_AFTER,
                            dead_after=DEAD_AFTER, forgotten={C: 5, D: -1})

    membership.receive(news)

    assert membership.member(back) is not None
    assert back not in membership.forgotten()
    assert len(membership.forgotten()) == 1


# -- what a tick sends -------------------------------------------------------------------------------------


def test_after_the_first_exchange_only_fanout_members_get_the_full_view_each_interval() -> None:
    clock = FakeClock()
    membership = make_membership(A, clock, fanout=2)
    peers = [f"tcp://10.0.1.{number}:3800" for number in range(1, 11)]
    for peer in peers:
        membership.receive(beat(peer))

    first = membership.tick()
    clock.advance(INTERVAL)
    for peer in peers:
        membership.receive(beat(peer))
    second = membership.tick()

    assert [target for target, _ in first] == sorted(peers)
    # The view is one tuple for all: each receiver also reads what we think of it.
    assert all(len(heartbeat.members) == len(peers) for _, heartbeat in first)
    assert sorted(len(heartbeat.members) for _, heartbeat in second) == [0] * 8 + [10] * 2


def test_dead_members_are_probed_at_most_fanout_per_tick_each_in_turn() -> None:
    clock = FakeClock()
    membership = make_membership(A, clock, fanout=2)
    dead = [f"tcp://10.0.2.{number}:3800" for number in range(1, 6)]
    membership.receive(beat(B, *(MemberInfo(address=address, incarnation=1, heard=100.0) for address in dead)))

    probed = []
    for _ in range(5):
        clock.advance(INTERVAL)
        membership.receive(beat(B))
        targets = [target for target, _ in membership.tick()]
        assert B in targets
        probed.append([target for target in targets if target != B])

    assert all(len(targets) == 2 for targets in probed)
    assert {target for targets in probed[:3] for target in targets} == set(dead)
    assert all(sum(target in targets for targets in probed) == 2 for target in dead)


def test_the_same_clock_and_random_give_the_same_heartbeats() -> None:
    def run() -> list[list[tuple[str, Heartbeat]]]:
        network = Network()
        network.start(A, seeds=[B])
        network.start(B, seeds=[C])
        network.start(C, seeds=[D])
        network.start(D, seeds=[A])
        sent = []
        for _ in range(6):
            network.step(1)
            sent.append(network.daemons[A].tick())
        return sent

    assert run() == run()


# -- subscribers -----------------------------------------------------------------------------------------


def test_a_failing_subscriber_is_logged_and_the_others_still_hear_of_the_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    membership = make_membership(A, FakeClock())
    heard: list[MembershipChange] = []
    later: list[MembershipChange] = []

    def broken(change: MembershipChange) -> None:
        raise RuntimeError("subscriber bug")

    membership.subscribe(broken)
    membership.subscribe(heard.append)
    unsubscribe = membership.subscribe(later.append)
    unsubscribe()
    unsubscribe()
    with caplog.at_level(logging.ERROR, logger="sd_actors.net._membership"):
        membership.receive(beat(B))

    assert [change.address for change in heard] == [B]
    assert later == []
    assert "a membership subscriber failed" in caplog.text
    assert "subscriber bug" in caplog.text


# -- on the wire -----------------------------------------------------------------------------------------


def test_a_heartbeat_travels_through_a_message_registry_and_comes_back_equal(pool: Network) -> None:
    registry = MessageRegistry([Heartbeat])
    key = generate_keypair().public.decode()
    written = Heartbeat(
        sender=MemberInfo(address=A, public_key=key, incarnation=1_760_000_000_000),
        members=(MemberInfo(address=B, incarnation=3, state="suspect", heard=4.25),
                 MemberInfo(address="ipc:///run/sd-actors/daemon.sock", incarnation=1, state="dead", heard=12.0)),
        sent=123.5,
    )
    from_a_tick = [heartbeat for _, heartbeat in pool.daemons[A].tick()]

    for heartbeat in [written, *from_a_tick]:
        assert registry.decode(registry.encode(heartbeat), max_size=MAX_SIZE).message == heartbeat
    assert registry.kinds == ("membership.heartbeat", "membership.member")


def _edit_first_member(field: str, value: object) -> Callable[[dict[str, object]], None]:
    def edit(body: dict[str, object]) -> None:
        members = body["members"]
        assert isinstance(members, list)
        members[0]["b"][field] = value

    return edit


@pytest.mark.parametrize(
    "edit",
    [
        _edit_first_member("state", "zombie"),
        _edit_first_member("heard", -1.0),
        _edit_first_member("heard", math.nan),
        _edit_first_member("address", "tcp://*:3800"),
        _edit_first_member("public_key", "not a key"),
        _edit_first_member("incarnation", -5),
        lambda body: body.update(sent=math.inf),
    ],
    ids=["unknown-state", "negative-heard", "nan-heard", "wildcard-address", "bad-key", "negative-incarnation",
         "infinite-sent"],
)
def test_a_heartbeat_with_a_member_no_daemon_could_use_is_refused_by_the_registry(
    edit: Callable[[dict[str, object]], None],
) -> None:
    registry = MessageRegistry([Heartbeat])
    good = Heartbeat(sender=MemberInfo(address=A, incarnation=1), members=(MemberInfo(address=B, incarnation=1),))
    frame = msgpack.unpackb(registry.encode(good), raw=False)
    edit(frame["b"])

    with pytest.raises(BadField):
        registry.decode(msgpack.packb(frame, use_bin_type=True), max_size=MAX_SIZE)


# -- whatever the network does ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    chaos=st.randoms(use_true_random=False),
    size=st.integers(min_value=2, max_value=5),
    drop=st.floats(min_value=0.0, max_value=0.6),
    max_delay=st.integers(min_value=0, max_value=14),
    silence=st.floats(min_value=0.0, max_value=0.2),
    steps=st.integers(min_value=5, max_value=40),
)
def test_a_member_heard_directly_within_suspect_after_is_never_reported_dead(
    chaos: Random, size: int, drop: float, max_delay: int, silence: float, steps: int
) -> None:
    clock = FakeClock()
    addresses = [f"tcp://10.0.3.{number}:3800" for number in range(1, size + 1)]
    daemons = {address: make_membership(address, clock) for address in addresses}
    heard_directly: dict[tuple[str, str], float] = {}
    violations: list[str] = []

    def check(observer: str, address: str, state: str) -> None:
        received = heard_directly.get((observer, address))
        if received is None:
            return
        if clock.now - received < DEAD_AFTER and state == "dead":
            violations.append(f"{observer} reports {address} dead {clock.now - received} s after hearing it")
        if clock.now - received < SUSPECT_AFTER and state != "alive":
            violations.append(f"{observer} reports {address} {state} {clock.now - received} s after hearing it")

    def check_all() -> None:
        for observer, daemon in daemons.items():
            for member in daemon.members():
                check(observer, member.address, member.state)
            assert daemon.member(observer).state == "alive"  # type: ignore[union-attr]

    def checker(observer: str) -> Callable[[MembershipChange], None]:
        return lambda change: check(observer, change.address, change.new_state)

    for observer, daemon in daemons.items():
        daemon.seed([chaos.choice(addresses)])
        daemon.subscribe(checker(observer))
    in_flight: list[tuple[int, str, Heartbeat]] = []
    silent_until = dict.fromkeys(addresses, 0)

    for step in range(steps):
        clock.advance(INTERVAL)
        for address, daemon in daemons.items():
            if chaos.random() < silence:
                silent_until[address] = step + chaos.randint(1, 15)
            if step >= silent_until[address]:
                for target, heartbeat in daemon.tick():
                    if chaos.random() >= drop:
                        in_flight.append((step + chaos.randint(0, max_delay), target, heartbeat))
        check_all()
        chaos.shuffle(in_flight)
        arriving = [message for message in in_flight if message[0] <= step]
        in_flight = [message for message in in_flight if message[0] > step]
        for _, target, heartbeat in arriving:
            daemons[target].receive(heartbeat)
            heard_directly[(target, heartbeat.sender.address)] = clock.now
            check_all()

    assert violations == []
