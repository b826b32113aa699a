"""Supervisor: OTP's restart strategies, restart types, intensity limits, backoff and escalation.

Children are made to end with ``ref.terminate(record)`` (their parent is told, as when they end
by themselves); a call to the Supervisor afterwards waits until it has reacted, because its actor
handles one message at a time, in order. Time is a FakeClock the tests advance by hand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Final, cast

import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    ComponentFailed,
    ComponentSpec,
    Compound,
    FakeClock,
    LifecycleEvent,
    Prim,
    State,
    System,
    TerminationRecord,
    open_system,
)
from sd_actors.actors._supervisor import Supervisor, SupervisorStatistics
from sd_actors.descriptions import parse_string
from sd_actors.plugins import make_plugin_manager

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

SUPERVISOR: Final = "sd_actors.actors.Supervisor"


class EventLog:
    """Every lifecycle event of a System, in the order they were published."""

    def __init__(self) -> None:
        self._events: list[LifecycleEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: LifecycleEvent) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return len(self._events)

    def transitions(self, since: int = 0, states: tuple[State, ...] = (State.STARTED, State.TERMINATED)
                    ) -> list[tuple[str, State]]:
        """(path, new state) of the events since ``since`` that entered one of ``states``."""
        with self._changed:
            return [(e.name, e.new) for e in self._events[since:] if e.new in states]

    def wait_for(self, path: str, state: State, *, since: int = 0) -> None:
        """Block until ``path`` entered ``state`` after mark ``since``."""
        def seen() -> bool:
            return any(e.name == path and e.new is state for e in self._events[since:])

        with self._changed:
            assert self._changed.wait_for(seen, WAIT), f"{path} did not become {state.value}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def system(clock: FakeClock, events: EventLog) -> Iterator[System]:
    with open_system(clock=clock, plugin_manager=make_plugin_manager(load_entry_points=False)) as system:
        unsubscribe = system.subscribe(events)
        yield system
        unsubscribe()


class Sick(Prim):
    """A child whose health check fails."""

    def ping(self) -> None:
        raise RuntimeError("out of memory")


class StartsOnce(Prim):
    """A child that cannot be started again: its restarts fail."""

    def start(self) -> None:
        if "started" in self.context.description:
            raise RuntimeError("the port is still in use")
        self.context.description.set("started", True)


def supervisor(children: Mapping[str, str], **attributes: object) -> ComponentSpec:
    """A Supervisor of plain components, each child given as name → restart type."""
    return ComponentSpec(SUPERVISOR, attributes, children={
        name: ComponentSpec("sd_actors.actors.Prim", {"restart": restart}) for name, restart in children.items()})


def end(system: System, path: str, kind: str = ABNORMAL) -> None:
    """Make the child at ``path`` terminate as if by itself."""
    child = system.lookup(path)
    child.terminate(TerminationRecord(kind, "it ended", child.path))


def statistics(system: System, path: str) -> SupervisorStatistics:
    """The Supervisor's statistics, once it has handled what it was told before."""
    snapshot: Callable[[object], SupervisorStatistics] = lambda s: cast(Supervisor, s).statistics()  # noqa: E731
    return cast(SupervisorStatistics, system.lookup(path).call(snapshot, timeout=WAIT))


# -- strategies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("strategy", "restarted"), [
    ("one_for_one", ["b"]),
    ("one_for_all", ["a", "b", "c"]),
    ("rest_for_one", ["b", "c"]),
], ids=["one_for_one", "one_for_all", "rest_for_one"])
def test_each_strategy_restarts_the_children_it_names(system: System, strategy: str, restarted: list[str]) -> None:
    system.deploy(supervisor({"a": "permanent", "b": "permanent", "c": "permanent"}, strategy=strategy), name="app")
    before = {name: system.lookup(f"app:{name}") for name in "abc"}

    end(system, "app:b")
    statistics(system, "app")

    after = {name: system.lookup(f"app:{name}") for name in "abc"}
    assert [name for name in "abc" if after[name] is not before[name]] == restarted
    assert {name: ref.state for name, ref in after.items()} == dict.fromkeys("abc", State.STARTED)


def test_one_for_all_terminates_the_others_in_reverse_order_then_starts_all_in_order(
        system: System, events: EventLog) -> None:
    system.deploy(supervisor({"a": "permanent", "b": "permanent", "c": "permanent"}, strategy="one_for_all"),
                  name="app")
    mark = events.mark()

    end(system, "app:b")
    statistics(system, "app")

    assert events.transitions(since=mark) == [
        ("app:c", State.TERMINATED), ("app:a", State.TERMINATED),
        ("app:a", State.STARTED), ("app:b", State.STARTED), ("app:c", State.STARTED),
    ]


def test_a_restarted_child_keeps_its_place_so_children_still_terminate_in_reverse_order(
        system: System, events: EventLog) -> None:
    system.deploy(supervisor({"a": "permanent", "b": "permanent", "c": "permanent"}, sfSyncTerminate=True),
                  name="app")
    end(system, "app:a")
    statistics(system, "app")
    mark = events.mark()

    system.terminate("app")

    assert events.transitions(since=mark) == [
        ("app:c", State.TERMINATED), ("app:b", State.TERMINATED), ("app:a", State.TERMINATED),
        ("app", State.TERMINATED),
    ]


def test_a_child_that_fails_its_liveness_check_is_restarted(system: System, clock: FakeClock,
                                                             events: EventLog) -> None:
    system.deploy(ComponentSpec(SUPERVISOR, children={"sick": ComponentSpec(Sick, {"sfLivenessDelay": 1})}),
                  name="app")
    mark = events.mark()

    clock.advance(1)

    events.wait_for("app:sick", State.FAILED, since=mark)
    events.wait_for("app:sick", State.STARTED, since=mark)
    assert events.transitions(since=mark, states=(State.FAILED,)) == [("app:sick", State.FAILED)]
    assert system.lookup("app").state is State.STARTED


# -- restart types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("restart", "kind", "restarted"), [
    ("permanent", NORMAL, True),
    ("permanent", ABNORMAL, True),
    ("transient", NORMAL, False),
    ("transient", ABNORMAL, True),
    ("transient", "externalReferenceDead", True),
    ("temporary", NORMAL, False),
    ("temporary", ABNORMAL, False),
], ids=lambda value: value if isinstance(value, str) else ("restarted" if value else "not-restarted"))
def test_the_restart_type_says_whether_a_child_comes_back(system: System, restart: str, kind: str,
                                                          restarted: bool) -> None:
    system.deploy(supervisor({"worker": restart, "other": "permanent"}), name="app")
    before = system.lookup("app:worker")

    end(system, "app:worker", kind)
    stats = statistics(system, "app")

    assert (system.lookup("app:worker") is not before) == restarted
    assert stats.running == (("worker", "other") if restarted else ("other",))
    assert system.lookup("app").state is State.STARTED


def test_a_temporary_sibling_terminated_by_a_restart_is_not_deployed_again(system: System) -> None:
    system.deploy(supervisor({"helper": "temporary", "worker": "permanent"}, strategy="one_for_all"), name="app")

    end(system, "app:worker")
    stats = statistics(system, "app")

    assert stats.running == ("worker",)
    assert system.lookup("app:helper").state is State.TERMINATED


# -- intensity and escalation -------------------------------------------------------------------------


def test_more_restarts_than_the_intensity_within_the_period_escalate_to_the_parent_naming_the_child(
        system: System, clock: FakeClock) -> None:
    workers = supervisor({"a": "permanent", "b": "permanent"}, intensity=2, period=5)
    system.deploy(ComponentSpec(Compound, children={"workers": workers}), name="app")
    for _ in range(2):
        end(system, "app:workers:a")
        assert statistics(system, "app:workers").running == ("a", "b")
        clock.advance(1)

    end(system, "app:workers:a")

    root = system.wait_for_state("app", State.FAILED, timeout=WAIT)
    assert root.record is not None
    assert root.record.path == ("app", "workers")
    assert root.record.description.startswith("child 'a' needed more than 2 restarts in 5 s")
    assert system.lookup("app:workers").state is State.FAILED
    assert system.lookup("app:workers:b").record == root.record


def test_a_restart_that_fails_counts_as_another_restart_until_the_supervisor_gives_up(system: System) -> None:
    system.deploy(ComponentSpec(SUPERVISOR, {"intensity": 3}, children={"server": ComponentSpec(StartsOnce)}),
                  name="app")

    end(system, "app:server")

    root = system.wait_for_state("app", State.FAILED, timeout=WAIT)
    assert root.record is not None
    assert root.record.description.startswith("child 'server' needed more than 3 restarts in 5 s")
    assert root.record.cause is not None
    assert "the port is still in use" in root.record.cause


def test_restarts_older_than_the_period_no_longer_count(system: System, clock: FakeClock) -> None:
    system.deploy(supervisor({"a": "permanent"}, intensity=1, period=5), name="app")

    for _ in range(3):
        end(system, "app:a")
        stats = statistics(system, "app")
        clock.advance(6)

    assert stats == SupervisorStatistics(running=("a",), waiting=(), restarts=3, recent_restarts=1)
    assert system.lookup("app").state is State.STARTED


def test_an_intensity_of_zero_escalates_the_first_restart(system: System) -> None:
    system.deploy(supervisor({"a": "permanent"}, intensity=0), name="app")

    end(system, "app:a")

    root = system.wait_for_state("app", State.FAILED, timeout=WAIT)
    assert root.record is not None
    assert "child 'a'" in root.record.description
    assert root.record.cause == "abnormal termination of app:a: it ended"


def test_a_supervisor_that_gives_up_is_restarted_by_the_supervisor_above_it(system: System,
                                                                              events: EventLog) -> None:
    inner = supervisor({"a": "permanent"}, intensity=0)
    system.deploy(ComponentSpec(SUPERVISOR, children={"inner": inner}), name="app")
    mark = events.mark()

    end(system, "app:inner:a")

    events.wait_for("app:inner", State.FAILED, since=mark)
    events.wait_for("app:inner:a", State.STARTED, since=mark)
    assert system.lookup("app").state is State.STARTED
    assert statistics(system, "app:inner").running == ("a",)


# -- backoff -----------------------------------------------------------------------------------------------


def test_backoff_delays_each_restart_until_the_clock_passes_it_doubling_up_to_the_maximum(
        system: System, clock: FakeClock, events: EventLog) -> None:
    system.deploy(supervisor({"a": "permanent", "b": "permanent"}, backoff=1, maxBackoff=3, intensity=10,
                             period=100), name="app")

    for expected_delay in (1, 2, 3):
        mark = events.mark()
        end(system, "app:a")
        assert statistics(system, "app").waiting == ("a",)

        clock.advance(expected_delay - 0.01)
        assert statistics(system, "app").waiting == ("a",)
        assert system.lookup("app:a").state is State.FAILED

        clock.advance(0.01)
        events.wait_for("app:a", State.STARTED, since=mark)
        assert statistics(system, "app").running == ("a", "b")


def test_a_supervisor_terminated_during_a_backoff_does_not_restart_anything(
        system: System, clock: FakeClock, events: EventLog) -> None:
    system.deploy(supervisor({"a": "permanent"}, backoff=1), name="app")
    end(system, "app:a")
    statistics(system, "app")

    system.terminate("app")
    mark = events.mark()
    clock.advance(2)

    assert events.transitions(since=mark) == []
    assert system.lookup("app:a").state is State.FAILED


# -- descriptions and bad input --------------------------------------------------------------------------------


def test_a_supervisor_described_in_sf_gets_the_library_defaults_and_supervises_its_children(system: System) -> None:
    description = parse_string(
        '#include "org/smartfrog/components.sf"\n'
        '#include "sd_actors/supervisor.sf"\n'
        'sfConfig extends Supervisor {\n'
        '    web extends Prim;\n'
        '    cache extends Prim { restart "temporary"; }\n'
        '}\n')
    system.deploy(description, name="app")

    end(system, "app:cache")
    end(system, "app:web")
    stats = statistics(system, "app")

    assert description["strategy"] == "one_for_one"
    assert (description["intensity"], description["period"]) == (3, 5)
    assert stats == SupervisorStatistics(running=("web",), waiting=(), restarts=1, recent_restarts=1)


@pytest.mark.parametrize(("attributes", "restart", "message"), [
    ({"strategy": "one_for_some"}, "permanent",
     "app: attribute 'strategy' is 'one_for_some'; it must be one of 'one_for_one', 'one_for_all', 'rest_for_one'"),
    ({"intensity": -1}, "permanent", "app: attribute 'intensity' is -1; it must be 0 or more"),
    ({"period": 0}, "permanent", "app: attribute 'period' is 0 seconds; it must be more than 0"),
    ({}, "sometimes",
     "app:a: attribute 'restart' is 'sometimes'; it must be one of 'permanent', 'transient', 'temporary'"),
], ids=["strategy", "intensity", "period", "restart"])
def test_a_wrong_setting_fails_the_deployment_saying_what_is_allowed(
        system: System, attributes: dict[str, object], restart: str, message: str) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(supervisor({"a": restart}, **attributes), name="app")

    assert excinfo.value.record.path == ("app",)
    assert message in excinfo.value.record.description
