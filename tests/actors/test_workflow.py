"""The workflow components: SmartFrog's semantics for Sequence, Parallel, Retry, Repeat, Timeout,
During, Delay, Try, Run, Terminator and DoNothing.

Descriptions are real ``.sf`` text including the component library, or ComponentSpecs. Time is a
FakeClock moved by hand: a timer is set in ``start()``, so each test waits for the component
that sets it to be started before it advances the clock. The test components note what they
did in the test's :class:`Journal`; the runtime's view is read from states, records and events.
"""

from __future__ import annotations

import logging
import threading
from typing import ClassVar, Final

import pluggy
import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    Component,
    ComponentFailed,
    ComponentRef,
    ComponentSpec,
    FakeClock,
    LifecycleEvent,
    Prim,
    State,
    System,
    TerminationRecord,
    UnknownComponent,
    open_system,
)
from sd_actors.actors.workflow import (
    Delay,
    DoNothing,
    During,
    Parallel,
    Repeat,
    Retry,
    Run,
    Sequence,
    Terminator,
    Timeout,
    Try,
)
from sd_actors.descriptions import ComponentDescription, parse_string
from sd_actors.plugins import collect_component_types, hookimpl, make_plugin_manager

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

FINAL: Final = (State.TERMINATED, State.FAILED)

HEADER: Final = """\
#include "org/smartfrog/components.sf"
#include "org/smartfrog/sfcore/workflow/components.sf"

Finishes extends Prim { sfClass "test.Finishes"; }
FailsToStart extends Prim { sfClass "test.FailsToStart"; }
Noting extends Prim { sfClass "test.Noting"; }
MeetsOnDeploy extends Prim { sfClass "test.MeetsOnDeploy"; }
"""


class Journal:
    """What the test's components did, in order, whichever thread they ran in.

    It is also the plugin that contributes their types, each bound to this journal (one per test).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[str, str]] = []
        self.meeting = threading.Barrier(2, timeout=WAIT)

    def note(self, step: str, path: tuple[str, ...]) -> int:
        """Note ``step`` of the component at ``path``; return how many times ``step`` happened."""
        with self._lock:
            self._entries.append((step, ":".join(path)))
            return sum(1 for entry in self._entries if entry[0] == step)

    def paths(self, step: str) -> list[str]:
        with self._lock:
            return [path for noted, path in self._entries if noted == step]

    @hookimpl
    def sd_actors_component_types(self) -> dict[str, type[Component]]:
        def bound(component_type: type[Component]) -> type[Component]:
            return type(component_type.__name__, (component_type,), {"journal": self})

        return {
            "test.Noting": bound(Noting),
            "test.Finishes": bound(Finishes),
            "test.FailsToStart": bound(FailsToStart),
            "test.Flaky": bound(Flaky),
            "test.MeetsOnDeploy": bound(MeetsOnDeploy),
        }


class Noting(Prim):
    """Notes ``deploy``, ``start`` and ``terminate <kind>`` in the journal; lives until told."""

    journal: ClassVar[Journal]

    def deploy(self) -> None:
        self.journal.note("deploy", self.context.path)

    def start(self) -> None:
        self.journal.note("start", self.context.path)

    def terminate(self, record: object) -> None:
        kind = getattr(record, "kind", "?")
        self.journal.note(f"terminate {kind}", self.context.path)


class Finishes(Noting):
    """Terminates itself when started, with a record of kind ``kind`` (normal by default)."""

    def start(self) -> None:
        super().start()
        kind = self.context.typed_attribute("kind", str, NORMAL)
        assert isinstance(kind, str)
        self.context.terminate_self(self.context.record(kind, f"finished on start ({kind})"))


class FailsToStart(Noting):
    """Raises in ``start()``."""

    def start(self) -> None:
        super().start()
        raise RuntimeError("cannot start")


class Flaky(Noting):
    """Terminates abnormally on the first ``failures`` starts of any Flaky, normally after."""

    def start(self) -> None:
        super().start()
        failures = self.context.typed_attribute("failures", int)
        assert isinstance(failures, int)
        attempt = self.journal.note("flaky start", self.context.path)
        kind = ABNORMAL if attempt <= failures else NORMAL
        self.context.terminate_self(self.context.record(kind, f"attempt {attempt}"))


class MeetsOnDeploy(Noting):
    """Its ``deploy()`` waits until another MeetsOnDeploy is deploying at the same time."""

    def deploy(self) -> None:
        super().deploy()
        self.journal.meeting.wait()


class Events:
    """Every lifecycle event of a System, as (path, new state) pairs, in the order published."""

    def __init__(self, system: System) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, str]] = []
        system.subscribe(self._add)

    def _add(self, event: LifecycleEvent) -> None:
        with self._lock:
            self._events.append((event.name, event.new.value))

    def of(self, *paths: str) -> list[tuple[str, str]]:
        with self._lock:
            return [event for event in self._events if event[0] in paths]


def sf(config: str) -> ComponentDescription:
    """The resolved sfConfig of a description that includes the library and the test components."""
    return parse_string(f"{HEADER}\nsfConfig extends {config}\n")


def plugins(journal: Journal) -> pluggy.PluginManager:
    return make_plugin_manager(load_entry_points=False, plugins=[journal])


def wait_final(system: System, path: str) -> ComponentRef:
    return system.wait_for_state(path, FINAL, timeout=WAIT)


def started(system: System, path: str) -> ComponentRef:
    return system.wait_for_state(path, State.STARTED, timeout=WAIT)


def record(ref: ComponentRef) -> TerminationRecord:
    assert ref.record is not None, f"{ref} has no termination record"
    return ref.record


def settled(system: System, path: str) -> ComponentRef:
    """Wait until the component at ``path`` has terminated and its parent has reacted to that."""
    ref = wait_final(system, path)
    # Its actor stops after telling the parent; whatever the parent is asked next comes after.
    assert ref.actor_ref is not None
    assert ref.actor_ref.actor_stopped.wait(WAIT)
    assert ref.parent is not None
    ref.parent.call(lambda component: None, timeout=WAIT)
    return ref


def absent(system: System, path: str) -> bool:
    try:
        system.lookup(path)
    except UnknownComponent:
        return True
    return False


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- Sequence ------------------------------------------------------------------------------------


def test_a_sequence_runs_its_children_one_at_a_time_in_definition_order(clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf("Sequence { first extends DoNothing { time 10; } second extends DoNothing { time 20; } }"),
                      name="app")
        started(system, "app:first")
        second_before = absent(system, "app:second")

        clock.advance(0.010)
        started(system, "app:second")
        first = system.lookup("app:first")
        clock.advance(0.020)
        app = wait_final(system, "app")

    assert second_before
    assert first.state is State.TERMINATED
    assert app.state is State.TERMINATED
    assert record(app).is_normal
    assert record(app).path == ("app", "second")


def test_a_sequence_stops_at_the_first_child_that_terminates_abnormally(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Sequence { a extends Finishes; b extends Finishes { kind "abnormal"; } '
                         "c extends Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:a", "app:b"]
    assert app.state is State.FAILED
    assert record(app).kind == ABNORMAL
    assert record(app).path == ("app", "b")


def test_a_sequence_without_children_terminates_normally_at_once() -> None:
    with open_system(clock=FakeClock()) as system:
        system.deploy(sf("Sequence;"), name="app")
        app = wait_final(system, "app")

    assert app.state is State.TERMINATED
    assert record(app).is_normal


def test_a_sequence_whose_next_child_fails_to_start_terminates_abnormally_with_its_record(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Sequence { a extends Finishes; b extends FailsToStart; c extends Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:a", "app:b"]
    assert app.state is State.FAILED
    assert record(app).path == ("app", "b")
    assert "cannot start" in record(app).description


def test_a_sequence_whose_first_child_fails_to_start_fails_to_deploy(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system, \
            pytest.raises(ComponentFailed) as excinfo:
        system.deploy(sf("Sequence { a extends FailsToStart; b extends Finishes; }"), name="app")

    assert excinfo.value.record.path == ("app", "a")
    assert journal.paths("start") == ["app:a"]


def test_a_sequence_runs_lazy_templates_too_and_keeps_data_as_data(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Sequence { a extends LAZY Finishes; settings extends DATA { retries 3; } "
                         "b extends Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:a", "app:b"]
    assert app.state is State.TERMINATED


def test_a_sequence_with_sfShouldTerminate_false_stays_after_its_last_child(journal: Journal) -> None:  # noqa: N802
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Sequence { sfShouldTerminate false; a extends Finishes; }"), name="app")
        settled(system, "app:a")
        state = system.lookup("app").state

    assert state is State.STARTED


# -- Parallel ------------------------------------------------------------------------------------


def test_a_parallel_steps_its_children_together_and_terminates_when_all_terminated_normally(
        clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        events = Events(system)
        system.deploy(sf("Parallel { a extends DoNothing { time 10; } b extends DoNothing { time 20; } }"), name="app")
        clock.advance(0.010)
        settled(system, "app:a")
        still = system.lookup("app").state
        clock.advance(0.010)
        app = wait_final(system, "app")

    steps = [state for _, state in events.of("app:a", "app:b")][:6]
    assert steps == ["created", "created", "deployed", "deployed", "started", "started"]
    assert still is State.STARTED
    assert app.state is State.TERMINATED
    assert record(app).path == ("app", "b")


def test_an_asynchronous_parallel_deploys_its_children_concurrently(journal: Journal) -> None:
    # Each child's deploy() waits for the other's: one after the other, the first would time out.
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Parallel { asynchCreateChild true; a extends MeetsOnDeploy; b extends MeetsOnDeploy; }"),
                      name="app")
        children = [system.lookup("app:a").state, system.lookup("app:b").state]

    assert sorted(journal.paths("start")) == ["app:a", "app:b"]
    assert children == [State.STARTED, State.STARTED]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["together", "asynchronous"])
def test_a_parallel_child_that_terminates_abnormally_terminates_the_parallel(
        journal: Journal, asynchronous: bool) -> None:
    flag = "true" if asynchronous else "false"
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf(f"Parallel {{ asynchCreateChild {flag}; a extends Noting; "
                         'b extends Finishes { kind "abnormal"; } }'), name="app")
        app = wait_final(system, "app")

    assert app.state is State.FAILED
    assert record(app).path == ("app", "b")
    assert sorted(journal.paths("terminate abnormal")) == ["app:a", "app:b"]


def test_a_parallel_told_to_tolerate_abnormal_children_forgets_them_and_ends_normally(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Parallel { terminateOnAbnormalChildTermination false; '
                         'a extends Noting; b extends Finishes { kind "abnormal"; } }'), name="app")
        settled(system, "app:b")
        system.terminate("app:a")
        app = wait_final(system, "app")

    assert app.state is State.TERMINATED
    assert record(app).is_normal


@pytest.mark.parametrize("asynchronous", [False, True], ids=["together", "asynchronous"])
def test_a_parallel_child_that_fails_to_start_fails_the_parallel(journal: Journal, asynchronous: bool) -> None:
    flag = "true" if asynchronous else "false"
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        with pytest.raises(ComponentFailed) as excinfo:
            system.deploy(sf(f"Parallel {{ asynchCreateChild {flag}; a extends Noting; b extends FailsToStart; }}"),
                          name="app")
        app = wait_final(system, "app")

    assert excinfo.value.record.path == ("app", "b")
    assert app.state is State.FAILED
    assert sorted(journal.paths("terminate abnormal")) == ["app:a", "app:b"]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["together", "asynchronous"])
def test_a_parallel_told_to_tolerate_deploy_failures_leaves_the_child_out(journal: Journal, asynchronous: bool) -> None:
    flag = "true" if asynchronous else "false"
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf(f"Parallel {{ asynchCreateChild {flag}; terminateOnAbnormalChildDeploy false; "
                         "a extends Noting; b extends FailsToStart; }"), name="app")
        failed = wait_final(system, "app:b")
        a = system.lookup("app:a").state
        system.terminate("app:a")
        app = wait_final(system, "app")

    assert failed.state is State.FAILED
    assert a is State.STARTED
    assert app.state is State.TERMINATED


@pytest.mark.parametrize(("terminate_on_empty", "expected"), [("false", State.STARTED), ("true", State.TERMINATED)],
                         ids=["stays", "terminates"])
def test_an_empty_parallel_terminates_at_once_only_with_terminateOnEmptyDeploy(  # noqa: N802
        terminate_on_empty: str, expected: State) -> None:
    with open_system(clock=FakeClock()) as system:
        system.deploy(sf(f"Parallel {{ terminateOnEmptyDeploy {terminate_on_empty}; }}"), name="app")
        state = system.wait_for_state("app", expected, timeout=WAIT).state

    assert state is expected


# -- Retry and Repeat ----------------------------------------------------------------------------


def test_retry_deploys_the_action_again_after_each_abnormal_termination_until_one_succeeds(journal: Journal) -> None:
    spec = ComponentSpec("sd_actors.actors.workflow.Retry", {"retry": 3},
                         children={"action": ComponentSpec("test.Flaky", {"failures": 2})})
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(spec, name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:running_0", "app:running_1", "app:running_2"]
    assert app.state is State.TERMINATED
    assert record(app).path == ("app", "running_2")
    assert app.description["count"] == 2


def test_retry_gives_up_after_its_retries_with_the_last_record(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Retry { retry 2; action extends LAZY Finishes { kind "abnormal"; } }'), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:running_0", "app:running_1", "app:running_2"]
    assert app.state is State.FAILED
    assert record(app).path == ("app", "running_2")


def test_retry_counts_an_action_that_fails_to_start_as_a_failed_attempt(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system, \
            pytest.raises(ComponentFailed) as excinfo:
        system.deploy(sf("Retry { action extends FailsToStart; }"), name="app")

    assert journal.paths("start") == ["app:running_0", "app:running_1"]
    assert excinfo.value.record.path == ("app", "running_1")


def test_repeat_runs_the_action_the_given_number_of_times(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Repeat { repeat 3; action extends LAZY Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:running_0", "app:running_1", "app:running_2"]
    assert app.state is State.TERMINATED
    assert record(app).path == ("app", "running_2")


def test_repeat_stops_at_an_abnormal_termination(journal: Journal) -> None:
    spec = ComponentSpec(Repeat, {"repeat": 5}, children={"action": ComponentSpec("test.Finishes", {"kind": ABNORMAL})})
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(spec, name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:running_0"]
    assert app.state is State.FAILED
    assert record(app).path == ("app", "running_0")


def test_repeat_minus_one_runs_the_action_until_told_to_stop(clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf("Repeat { repeat -1; action extends LAZY DoNothing { time 10; } }"), name="app")
        for run in range(5):
            started(system, f"app:running_{run}")
            clock.advance(0.010)
        started(system, "app:running_5")
        record = system.terminate("app")

    assert record.is_normal


def test_repeat_zero_terminates_normally_at_once(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Repeat { repeat 0; action extends LAZY Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert app.state is State.TERMINATED
    assert journal.paths("start") == []


# -- Timeout, During, Delay ----------------------------------------------------------------------


def test_an_action_that_terminates_normally_in_time_ends_the_timeout_normally(clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf("Timeout { time 100; action extends LAZY DoNothing { time 99; } }"), name="app")
        clock.advance(0.099)
        app = wait_final(system, "app")
        clock.advance(1)

    assert app.state is State.TERMINATED
    assert record(app).path == ("app", "running")


def test_an_action_still_running_when_the_time_is_up_fails_the_timeout_and_is_terminated(clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf("Timeout { time 100; action extends LAZY DoNothing { time 200; } }"), name="app")
        clock.advance(0.099)
        before = system.lookup("app").state
        clock.advance(0.001)
        app = wait_final(system, "app")
        action = system.lookup("app:running")

    assert before is State.STARTED
    assert app.state is State.FAILED
    assert record(app).path == ("app",)
    assert "100 ms" in record(app).description
    assert action.state is State.FAILED


def test_an_action_that_terminates_abnormally_in_time_fails_the_timeout_with_its_record(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Timeout { time 100; action extends LAZY Finishes { kind "abnormal"; } }'), name="app")
        app = wait_final(system, "app")

    assert app.state is State.FAILED
    assert record(app).path == ("app", "running")


def test_during_terminates_its_action_and_itself_normally_when_the_time_is_up(
        clock: FakeClock, journal: Journal) -> None:
    with open_system(clock=clock, plugin_manager=plugins(journal)) as system:
        system.deploy(sf("During { time 50; action extends LAZY Noting; }"), name="app")
        clock.advance(0.049)
        before = system.lookup("app:running").state
        clock.advance(0.001)
        app = wait_final(system, "app")

    assert before is State.STARTED
    assert app.state is State.TERMINATED
    assert record(app).path == ("app",)
    assert journal.paths("terminate normal") == ["app:running"]


def test_during_terminates_with_the_record_of_an_action_that_ends_first(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('During { time 50; action extends LAZY Finishes { kind "abnormal"; } }'), name="app")
        app = wait_final(system, "app")

    assert app.state is State.FAILED
    assert record(app).path == ("app", "running")


def test_during_with_a_negative_time_runs_its_action_until_told_to_stop(
        clock: FakeClock, journal: Journal) -> None:
    with open_system(clock=clock, plugin_manager=plugins(journal)) as system:
        system.deploy(sf("During { time -1; action extends LAZY Noting; }"), name="app")
        clock.advance(3600)
        state = system.lookup("app").state
        system.terminate("app")

    assert state is State.STARTED
    assert journal.paths("terminate normal") == ["app:running"]


def test_delay_deploys_its_action_only_when_the_time_is_up(clock: FakeClock, journal: Journal) -> None:
    with open_system(clock=clock, plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Delay { time 30; action extends LAZY Finishes; }"), name="app")
        clock.advance(0.029)
        early = journal.paths("start")
        clock.advance(0.001)
        app = wait_final(system, "app")

    assert early == []
    assert journal.paths("start") == ["app:running"]
    assert app.state is State.TERMINATED
    assert record(app).path == ("app", "running")


def test_delay_without_an_action_terminates_normally_when_the_time_is_up(clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf("Delay { time 30; }"), name="app")
        clock.advance(0.029)
        before = system.lookup("app").state
        clock.advance(0.001)
        app = wait_final(system, "app")

    assert before is State.STARTED
    assert app.state is State.TERMINATED


def test_delay_whose_action_fails_to_start_terminates_with_the_failure(clock: FakeClock, journal: Journal) -> None:
    with open_system(clock=clock, plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Delay { time 30; action extends LAZY FailsToStart; }"), name="app")
        clock.advance(0.030)
        app = wait_final(system, "app")

    assert app.state is State.FAILED
    assert record(app).path == ("app", "running")


# -- Try -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [NORMAL, ABNORMAL, "diskFull"])
def test_try_runs_the_continuation_named_after_how_the_action_terminated(journal: Journal, kind: str) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf(f'Try {{ action extends LAZY Finishes {{ kind "{kind}"; }} '
                         "normal extends LAZY Finishes; abnormal extends LAZY Finishes; "
                         "diskFull extends LAZY Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:running", f"app:{kind}"]
    assert app.state is State.TERMINATED
    assert record(app).path == ("app", kind)


def test_try_without_a_continuation_for_the_kind_terminates_with_the_actions_record(journal: Journal) -> None:
    spec = ComponentSpec(Try, children={"action": ComponentSpec("test.Finishes", {"kind": ABNORMAL}),
                                        "normal": ComponentSpec("test.Finishes")})
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(spec, name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:running"]
    assert app.state is State.FAILED
    assert record(app).path == ("app", "running")


# -- Run -----------------------------------------------------------------------------------------


def test_run_deploys_its_action_as_an_independent_application_then_terminates(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Run { asName "worker"; action extends LAZY Noting; }'), name="launcher")
        launcher = wait_final(system, "launcher")
        worker = started(system, "worker")
        apps = sorted(system.apps())
        system.terminate("worker")

    assert launcher.state is State.TERMINATED
    assert worker.parent is not None
    assert worker.parent.path == ()
    assert apps == ["launcher", "worker"]
    assert journal.paths("start") == ["worker"]


def test_run_names_the_application_after_itself_without_asName(journal: Journal) -> None:  # noqa: N802
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf("Compound { launch extends Run { action extends LAZY Noting; } }"), name="app")
        app = wait_final(system, "app")
        worker = started(system, "app_launch_action").state

    assert record(app).path == ("app", "launch")
    assert worker is State.STARTED


# -- Terminator ----------------------------------------------------------------------------------


def test_terminator_terminates_the_component_its_kill_link_names_then_itself(
        clock: FakeClock, journal: Journal) -> None:
    with open_system(clock=clock, plugin_manager=plugins(journal)) as system:
        events = Events(system)
        system.deploy(sf("Parallel { worker extends Noting; later extends Delay { time 10; "
                         "action extends LAZY Terminator { kill LAZY ATTRIB worker; } } }"), name="app")
        clock.advance(0.010)
        app = wait_final(system, "app")

    order = events.of("app:worker", "app:later:running")
    assert order.index(("app:worker", "terminated")) < order.index(("app:later:running", "terminating"))
    assert journal.paths("terminate normal") == ["app:worker"]
    assert app.state is State.TERMINATED


def test_terminator_in_a_parallel_terminates_its_sibling_with_the_record_it_describes(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Parallel { worker extends Noting; stop extends Terminator { kill LAZY ATTRIB worker; '
                         'type "abnormal"; description "no longer needed"; } }'), name="app")
        app = wait_final(system, "app")
        stop = system.lookup("app:stop")

    assert journal.paths("terminate abnormal") == ["app:worker"]
    assert app.state is State.FAILED
    assert record(app).path == ("app", "worker")
    assert record(app).description == "no longer needed"
    assert stop.state is State.TERMINATED


def test_terminator_with_detachFirst_leaves_the_targets_parent_running(journal: Journal) -> None:  # noqa: N802
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Parallel { worker extends Noting; other extends Noting; '
                         'stop extends Terminator { kill LAZY ATTRIB worker; type "abnormal"; detachFirst true; } }'),
                      name="app")
        settled(system, "app:stop")
        worker = system.lookup("app:worker").state
        system.terminate("app:other")
        app = wait_final(system, "app")

    assert worker is State.FAILED
    assert app.state is State.TERMINATED
    assert record(app).path == ("app", "other")


def test_terminator_can_terminate_the_application_it_belongs_to(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Compound { worker extends Noting; stop extends Terminator { kill LAZY ROOT; '
                         'type "abnormal"; } }'), name="app")
        app = wait_final(system, "app")

    assert app.state is State.FAILED
    assert record(app).path == ("app",)
    assert journal.paths("terminate abnormal") == ["app:worker"]


def test_terminator_whose_kill_link_names_nothing_terminates_abnormally_saying_why() -> None:
    with open_system(clock=FakeClock()) as system:
        system.deploy(sf('Terminator { kill LAZY ATTRIB nothing; selftype "normal"; }'), name="app")
        app = wait_final(system, "app")

    assert app.state is State.FAILED
    assert record(app).path == ("app",)
    assert "LAZY nothing names nothing: no attribute 'nothing'" in record(app).description


def test_terminator_without_kill_only_terminates_itself() -> None:
    with open_system(clock=FakeClock()) as system:
        system.deploy(sf('Terminator { selftype "done"; description "finished"; }'), name="app")
        app = wait_final(system, "app")

    assert (record(app).kind, record(app).description) == ("done", "finished")


# -- DoNothing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "state"), [(NORMAL, State.TERMINATED), (ABNORMAL, State.FAILED)])
def test_do_nothing_terminates_with_its_termination_type_when_its_time_is_up(
        clock: FakeClock, kind: str, state: State) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf(f'DoNothing {{ time 1500; terminationType "{kind}"; }}'), name="app")
        clock.advance(1.499)
        before = system.lookup("app").state
        clock.advance(0.001)
        app = wait_final(system, "app")

    assert before is State.STARTED
    assert app.state is state
    assert record(app).kind == kind


def test_do_nothing_lives_until_told_to_stop_by_default(clock: FakeClock) -> None:
    with open_system(clock=clock) as system:
        system.deploy(sf("DoNothing;"), name="app")
        clock.advance(3600)
        state = system.lookup("app").state
        record = system.terminate("app")

    assert state is State.STARTED
    assert record.is_normal


def test_do_nothing_logs_its_message_after_its_name_when_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="sd_actors.actors.workflow"), open_system(clock=FakeClock()) as system:
        system.deploy(sf('Compound { greeter extends DoNothing { message "hello"; } }'), name="app")

    assert "app:greeter: hello" in caplog.messages


# -- component types and bad input --------------------------------------------------------------

WORKFLOW_TYPES: Final = {
    "Sequence": Sequence, "Parallel": Parallel, "Retry": Retry, "Repeat": Repeat, "Timeout": Timeout,
    "During": During, "Delay": Delay, "Try": Try, "Run": Run, "Terminator": Terminator, "DoNothing": DoNothing,
}


@pytest.mark.parametrize("name", sorted(WORKFLOW_TYPES))
def test_every_workflow_component_is_known_by_its_sd_actors_and_its_smartfrog_name(name: str) -> None:
    package = "components" if name in ("Terminator", "DoNothing") else "combinators"

    types = collect_component_types(make_plugin_manager(load_entry_points=False))

    assert types[f"sd_actors.actors.workflow.{name}"] is WORKFLOW_TYPES[name]
    assert types[f"org.smartfrog.sfcore.workflow.{package}.{name}"] is WORKFLOW_TYPES[name]


def test_a_description_naming_smartfrogs_java_classes_deploys_the_same_components(journal: Journal) -> None:
    with open_system(clock=FakeClock(), plugin_manager=plugins(journal)) as system:
        system.deploy(sf('Compound { sfClass "org.smartfrog.sfcore.workflow.combinators.Sequence"; '
                         "a extends Finishes; b extends Finishes; }"), name="app")
        app = wait_final(system, "app")

    assert journal.paths("start") == ["app:a", "app:b"]
    assert app.state is State.TERMINATED


@pytest.mark.parametrize(("spec", "message"), [
    (ComponentSpec(Timeout, {"time": 10}), "attribute 'action' is missing"),
    (ComponentSpec(Delay, {"time": "soon"}), "attribute 'time' must be int or float, found String 'soon'"),
    (ComponentSpec(Retry, {"action": "Finishes"}), "attribute 'action' must be a component description"),
    (ComponentSpec(Parallel, {"asynchCreateChild": "yes"}), "attribute 'asynchCreateChild' must be bool"),
], ids=["missing action", "time of the wrong type", "action not a description", "flag of the wrong type"])
def test_a_workflow_with_a_bad_attribute_fails_to_deploy_naming_it(spec: ComponentSpec, message: str) -> None:
    with open_system(clock=FakeClock()) as system:
        with pytest.raises(ComponentFailed) as excinfo:
            system.deploy(spec, name="app")
        app = wait_final(system, "app")

    assert message in str(excinfo.value)
    assert excinfo.value.record.path == ("app",)
    assert app.state is State.FAILED
