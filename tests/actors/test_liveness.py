"""Liveness: pings every sfLivenessDelay seconds, failures on a raising, hung or dead component,
and forced termination of a component that does not finish terminating.

Time is a FakeClock that only the test moves, so every ping happens when the test says so. The
terminate timeout is real time (it bounds how long the runtime waits for a thread), so the tests
that need it to expire use a small one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import ClassVar, Final

import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    Component,
    FakeClock,
    Prim,
    State,
    System,
    TerminationRecord,
    open_system,
)
from sd_actors.descriptions import ComponentDescription, parse_string
from sd_actors.plugins import hookimpl, make_plugin_manager

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

HUNG: Final = 30.0
"""How long a hung component stays hung if the test never releases it (it always does)."""

SHORT_TIMEOUT: Final = 0.5
"""The terminate timeout of the tests that wait for it to expire. Every healthy component must
terminate within it too, so it is kept well above a busy machine's scheduling delays."""


class Probe:
    """What the test holds of its components: the Event that keeps the hung ones hung, and the
    times they were pinged. Also the plugin contributing their types, bound to this probe."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.pinging = threading.Event()
        self.terminating = threading.Event()
        self.release = threading.Event()
        self.pings: queue.Queue[float] = queue.Queue()
        self.stuck_thread: threading.Thread | None = None

    @hookimpl
    def sd_actors_component_types(self) -> dict[str, type[Component]]:
        def bound(component_type: type[Component]) -> type[Component]:
            return type(component_type.__name__, (component_type,), {"probe": self})

        return {
            "test.Sick": bound(Sick),
            "test.Hung": bound(Hung),
            "test.Stuck": bound(Stuck),
            "test.Counted": bound(Counted),
        }


class Sick(Prim):
    """Its health check fails."""

    def ping(self) -> None:
        raise OSError("disk /var is full")


class Hung(Prim):
    """Stops answering pings: the first one blocks until the test releases it."""

    probe: ClassVar[Probe]

    def ping(self) -> None:
        self.probe.pinging.set()
        self.probe.release.wait(HUNG)


class Stuck(Prim):
    """Its terminate() blocks until the test releases it."""

    probe: ClassVar[Probe]

    def terminate(self, record: TerminationRecord) -> None:
        self.probe.stuck_thread = threading.current_thread()
        self.probe.terminating.set()
        self.probe.release.wait(HUNG)


class Counted(Prim):
    """Tells the test the clock's time at every ping."""

    probe: ClassVar[Probe]

    def ping(self) -> None:
        self.probe.pings.put(self.probe.clock.now())


def application(server_class: str, *, delay: str = "1", factor: int = 3, web: str = "") -> ComponentDescription:
    """app { web { server other } }: the liveness settings are on app, so server inherits them
    (unless ``web`` sets its own)."""
    return parse_string(f"""\
#include "org/smartfrog/components.sf"

sfConfig extends Compound {{
    sfLivenessDelay {delay};
    sfLivenessFactor {factor};
    web extends Compound {{
        {web}
        server extends Prim {{ sfClass "{server_class}"; }}
        other extends Prim;
    }}
}}
""")


SERVER: Final = ("app", "web", "server")
HEALTHY: Final = ("app", "app:web", "app:web:other")
"""The components of :func:`application` that answer pings, whatever the server does."""


def answered(system: System, *paths: str) -> None:
    """Wait until the components at ``paths`` have handled every message sent to them so far, the
    pings included: an actor handles its messages in order, so a call returns only after them.

    A FakeClock moves as fast as the test likes; without this, the next ``advance`` could find a
    healthy component's ping still queued and count it as unanswered.
    """
    for path in paths:
        system.lookup(path).call(lambda component: None, timeout=WAIT)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def probe(clock: FakeClock) -> Probe:
    return Probe(clock)


@pytest.fixture
def terminate_timeout() -> float:
    """Overridden with ``@pytest.mark.parametrize("terminate_timeout", [SHORT_TIMEOUT])`` by the
    tests that wait for it to expire."""
    return WAIT


@pytest.fixture
def system(clock: FakeClock, probe: Probe, terminate_timeout: float, no_leftover_threads: None) -> Iterator[System]:
    manager = make_plugin_manager(load_entry_points=False, plugins=[probe])
    with open_system(plugin_manager=manager, clock=clock, terminate_timeout=terminate_timeout) as system:
        yield system
        probe.release.set()  # a hung component's thread must be free to end before the System closes


def test_a_component_whose_ping_raises_fails_with_a_record_saying_the_ping_failed_and_why(
        system: System, clock: FakeClock) -> None:
    system.deploy(application("test.Sick"), name="app")

    clock.advance(1)
    app = system.wait_for_state("app", State.FAILED, timeout=WAIT)

    assert app.record is not None
    assert app.record.kind == ABNORMAL
    assert app.record.path == SERVER
    assert app.record.description == "liveness: ping failed: disk /var is full"
    assert app.record.cause == "OSError: disk /var is full"


def test_a_component_whose_ping_raises_is_not_failed_before_its_first_ping(
        system: System, clock: FakeClock) -> None:
    system.deploy(application("test.Sick", delay="1"), name="app")

    clock.advance(0.5)

    assert system.lookup(SERVER).state is State.STARTED


@pytest.mark.parametrize("terminate_timeout", [SHORT_TIMEOUT])
def test_a_hung_component_fails_when_factor_ping_periods_pass_without_an_answer(
        system: System, clock: FakeClock, probe: Probe) -> None:
    system.deploy(application("test.Hung", delay="1", factor=3), name="app")
    server = system.lookup(SERVER)
    clock.advance(1)  # the first ping: it never returns
    assert probe.pinging.wait(WAIT)
    answered(system, *HEALTHY)

    for _ in range(2):
        clock.advance(1)
        answered(system, *HEALTHY)
    still_started = server.state
    clock.advance(1)
    app = system.wait_for_state("app", State.FAILED, timeout=WAIT)
    probe.release.set()

    assert still_started is State.STARTED
    assert app.record is not None
    assert app.record.kind == ABNORMAL
    assert app.record.path == SERVER
    assert app.record.description.startswith("liveness: no answer to a ping for 3 s")
    assert "(sfLivenessDelay 1, sfLivenessFactor 3)" in app.record.description


@pytest.mark.parametrize("terminate_timeout", [SHORT_TIMEOUT])
def test_a_hung_component_that_cannot_terminate_either_is_recorded_as_stopped_forcibly(
        system: System, clock: FakeClock, probe: Probe) -> None:
    system.deploy(application("test.Hung", delay="1", factor=1), name="app")
    clock.advance(1)
    assert probe.pinging.wait(WAIT)
    answered(system, *HEALTHY)

    clock.advance(1)
    server = system.wait_for_state(SERVER, State.FAILED, timeout=WAIT)
    probe.release.set()

    assert server.record == TerminationRecord(
        ABNORMAL, "did not finish terminating within 0.5 s: stopped forcibly", SERVER, "terminate timeout")


def test_a_component_whose_actor_died_fails_with_a_record_saying_so(system: System, clock: FakeClock) -> None:
    system.deploy(application("sd_actors.actors.Prim"), name="app")
    actor = system.lookup(SERVER).actor_ref
    assert actor is not None
    actor.stop()

    clock.advance(1)
    app = system.wait_for_state("app", State.FAILED, timeout=WAIT)

    assert app.record is not None
    assert app.record.kind == ABNORMAL
    assert app.record.path == SERVER
    assert app.record.description == "liveness: its actor died"


@pytest.mark.parametrize("terminate_timeout", [SHORT_TIMEOUT])
def test_a_component_whose_terminate_hangs_is_stopped_forcibly_and_recorded_as_failed(
        system: System, probe: Probe) -> None:
    system.deploy(application("test.Stuck"), name="app")

    started = time.monotonic()
    system.terminate("app")
    elapsed = time.monotonic() - started
    probe.release.set()

    server = system.lookup(SERVER)
    assert server.state is State.FAILED
    assert server.record == TerminationRecord(
        ABNORMAL, "did not finish terminating within 0.5 s: stopped forcibly", SERVER, "terminate timeout")
    assert system.lookup("app:web:other").state is State.TERMINATED
    assert elapsed < WAIT


@pytest.mark.parametrize("terminate_timeout", [SHORT_TIMEOUT])
def test_the_ancestors_of_components_whose_terminate_hangs_still_terminate_normally(
        system: System, probe: Probe) -> None:
    web = 'sfSyncTerminate true; stuckToo extends Prim { sfClass "test.Stuck"; }'
    system.deploy(application("test.Stuck", web=web), name="app")

    record = system.terminate("app")
    probe.release.set()

    assert record == TerminationRecord(NORMAL, "terminated on request", ("app",))
    assert system.lookup("app").state is State.TERMINATED
    assert system.lookup("app:web").state is State.TERMINATED


@pytest.mark.parametrize("terminate_timeout", [SHORT_TIMEOUT])
def test_closing_a_system_does_not_wait_for_a_component_whose_terminate_hangs(
        clock: FakeClock, probe: Probe, terminate_timeout: float, no_leftover_threads: None) -> None:
    manager = make_plugin_manager(load_entry_points=False, plugins=[probe])

    started = time.monotonic()
    with open_system(plugin_manager=manager, clock=clock, terminate_timeout=terminate_timeout) as system:
        system.deploy(application("test.Stuck"), name="app")
        server = system.lookup(SERVER)
    elapsed = time.monotonic() - started
    probe.release.set()
    assert probe.stuck_thread is not None
    probe.stuck_thread.join(WAIT)

    assert server.state is State.FAILED
    assert elapsed < WAIT
    assert not probe.stuck_thread.is_alive()


def test_sflivenessdelay_may_be_a_fraction_of_a_second(system: System, clock: FakeClock, probe: Probe) -> None:
    system.deploy(application("test.Counted", delay="0.25"), name="app")

    pings = []
    for _ in range(3):
        clock.advance(0.25)
        pings.append(probe.pings.get(timeout=WAIT))
        answered(system, *HEALTHY)

    assert pings == [0.25, 0.5, 0.75]


def test_a_component_is_pinged_every_sflivenessdelay_seconds_of_its_closest_ancestor_that_sets_it(
        system: System, clock: FakeClock, probe: Probe) -> None:
    system.deploy(application("test.Counted", delay="2", web="sfLivenessDelay 0.5;"), name="app")

    clock.advance(0.5)
    first = probe.pings.get(timeout=WAIT)
    answered(system, *HEALTHY)
    clock.advance(0.5)
    second = probe.pings.get(timeout=WAIT)

    assert (first, second) == (0.5, 1.0)
