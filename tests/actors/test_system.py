"""The System: several side by side in one process, no thread left behind, events for every change."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    ComponentFailed,
    ComponentSpec,
    Compound,
    DeploymentError,
    FakeClock,
    LifecycleEvent,
    Prim,
    State,
    System,
    TerminationRecord,
    open_system,
)
from sd_actors.descriptions import parse_string
from sd_actors.plugins import hookimpl, make_plugin_manager

pytestmark = pytest.mark.usefixtures("no_leftover_threads")

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

PRIM: Final = "sd_actors.actors.Prim"


class Failing(Prim):
    def start(self) -> None:
        raise RuntimeError("no route to host")


def workers(count: int) -> ComponentSpec:
    """A Compound of ``count`` Prims."""
    return ComponentSpec(Compound, children={f"worker{index}": ComponentSpec(PRIM) for index in range(count)})


def quiet_system(**options: Any) -> AbstractContextManager[System]:
    """open_system without third-party plugins, so only the runtime is under test."""
    return open_system(plugin_manager=make_plugin_manager(load_entry_points=False), **options)


# -- side by side ------------------------------------------------------------------------------------


def test_two_systems_run_applications_of_the_same_name_side_by_side() -> None:
    with quiet_system() as first, quiet_system() as second:
        one = first.deploy(workers(3), name="app")
        other = second.deploy(workers(3), name="app")

        assert one is not other
        assert first.lookup("app:worker0") is not second.lookup("app:worker0")
        assert (one.state, other.state) == (State.STARTED, State.STARTED)


def test_terminating_an_application_in_one_system_leaves_the_other_system_alone() -> None:
    with quiet_system() as first, quiet_system() as second:
        first.deploy(workers(3), name="app")
        second.deploy(workers(3), name="app")
        seen_by_second: list[LifecycleEvent] = []
        second.subscribe(seen_by_second.append)

        first.terminate("app")

        assert first.lookup("app").state is State.TERMINATED
        assert [second.lookup(f"app:worker{index}").state for index in range(3)] == [State.STARTED] * 3
        assert seen_by_second == []


def test_a_failure_in_one_system_is_not_seen_by_the_other() -> None:
    with quiet_system() as first, quiet_system() as second:
        second.deploy(workers(3), name="app")
        seen_by_second: list[LifecycleEvent] = []
        second.subscribe(seen_by_second.append)

        with pytest.raises(ComponentFailed):
            first.deploy(ComponentSpec(Compound, children={"bad": ComponentSpec(Failing)}), name="app")

        assert second.lookup("app").state is State.STARTED
        assert seen_by_second == []


def test_a_system_keeps_working_after_another_one_closed() -> None:
    with quiet_system() as second:
        with quiet_system() as first:
            first.deploy(workers(3), name="app")
            second.deploy(workers(3), name="app")

        again = second.deploy(workers(3), name="again")

        assert second.lookup("app").state is State.STARTED
        assert again.state is State.STARTED


def test_a_closed_system_refuses_deployments_with_a_deployment_error() -> None:
    with quiet_system() as system:
        pass

    with pytest.raises(DeploymentError, match="the System is closed"):
        system.deploy(ComponentSpec(PRIM), name="late")


def test_a_closed_system_refuses_background_deployments_with_a_deployment_error() -> None:
    with quiet_system() as system:
        pass

    with pytest.raises(DeploymentError, match="the System is closed"):
        system.deploy_nowait(ComponentSpec(PRIM), name="late").result(WAIT)


# -- threads -----------------------------------------------------------------------------------------


def deploy_and_terminate_200(system: System) -> None:
    system.deploy(workers(199), name="app")
    system.terminate("app")


def leave_200_running(system: System) -> None:
    system.deploy(workers(199), name="app")


def fail_a_deployment(system: System) -> None:
    with pytest.raises(ComponentFailed):
        system.deploy(ComponentSpec(Compound, children={"ok": workers(10), "bad": ComponentSpec(Failing)}),
                      name="app")


def deploy_from_asyncio(system: System) -> None:
    async def deploy() -> None:
        await system.deploy_async(workers(20), name="app")

    asyncio.run(deploy())


@pytest.mark.parametrize("run", [deploy_and_terminate_200, leave_200_running, fail_a_deployment, deploy_from_asyncio],
                         ids=["200-deployed-and-terminated", "200-left-running", "failed-deployment", "asyncio"])
def test_no_thread_outlives_a_system(run: Callable[[System], None]) -> None:
    before = set(threading.enumerate())

    with quiet_system(liveness_delay=1.0) as system:
        run(system)
        during = set(threading.enumerate()) - before

    after = {thread.name for thread in set(threading.enumerate()) - before}
    assert during, "the System started no thread: nothing was checked"
    assert after == set()


# -- events ------------------------------------------------------------------------------------------


def test_events_carry_the_path_the_old_and_new_state_the_record_and_the_time() -> None:
    clock = FakeClock(start=100.0)
    events: list[LifecycleEvent] = []

    with quiet_system(clock=clock, host="node7") as system:
        system.subscribe(events.append)
        system.deploy(ComponentSpec(PRIM), name="app")
        clock.advance(2.5)
        system.terminate("app")

    record = TerminationRecord(NORMAL, "terminated on request", ("app",))
    assert events == [
        LifecycleEvent(("app",), None, State.CREATED, 100.0, None, "node7", PRIM),
        LifecycleEvent(("app",), State.CREATED, State.DEPLOYED, 100.0, None, "node7", PRIM),
        LifecycleEvent(("app",), State.DEPLOYED, State.STARTED, 100.0, None, "node7", PRIM),
        LifecycleEvent(("app",), State.STARTED, State.TERMINATING, 102.5, None, "node7", PRIM),
        LifecycleEvent(("app",), State.TERMINATING, State.TERMINATED, 102.5, record, "node7", PRIM),
    ]


def test_the_event_of_a_failed_component_carries_its_record() -> None:
    events: list[LifecycleEvent] = []

    with quiet_system() as system:
        system.subscribe(events.append)
        with pytest.raises(ComponentFailed):
            system.deploy(ComponentSpec(Compound, children={"bad": ComponentSpec(Failing)}), name="app")

    failed = {event.name: event.record for event in events if event.new is State.FAILED}
    record = TerminationRecord(ABNORMAL, "start failed: no route to host", ("app", "bad"),
                               "RuntimeError")
    assert failed == {"app": record, "app:bad": record}


def test_an_unsubscribed_function_receives_no_more_events() -> None:
    events: list[LifecycleEvent] = []

    with quiet_system() as system:
        unsubscribe = system.subscribe(events.append)
        system.deploy(ComponentSpec(PRIM), name="first")
        unsubscribe()
        system.deploy(ComponentSpec(PRIM), name="second")

    assert {event.name for event in events} == {"first"}


def test_a_subscriber_that_raises_does_not_break_the_lifecycle(caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: LifecycleEvent) -> None:
        raise ValueError("subscriber bug")

    with quiet_system() as system:
        system.subscribe(broken)
        app = system.deploy(workers(2), name="app")

        assert app.state is State.STARTED
    assert "subscriber bug" in caplog.text


# -- memory ------------------------------------------------------------------------------------------


def test_a_system_lets_go_of_an_application_replaced_by_one_of_the_same_name() -> None:
    with quiet_system() as system:
        first = system.deploy(ComponentSpec(PRIM), name="app")
        component = weakref.ref(first.component) if first.component is not None else None
        system.terminate("app")
        del first

        system.deploy(ComponentSpec(PRIM), name="app")
        system.terminate("app")
        gc.collect()

        assert component is not None
        assert component() is None


def test_a_shared_object_is_made_once_per_system_and_closed_with_it() -> None:
    class Connection:
        closed = False

        def close(self) -> None:
            self.closed = True

    made: list[Connection] = []

    def factory() -> Connection:
        made.append(Connection())
        return made[-1]

    with open_system() as system:
        first = system.shared(("libvirt", "test:///default"), factory)
        again = system.shared(("libvirt", "test:///default"), factory)
        with open_system() as other:
            theirs = other.shared(("libvirt", "test:///default"), factory)

        assert first is again
        assert theirs is not first
        assert [c.closed for c in made] == [False, True]
    assert made[0].closed


def test_closing_with_detach_lets_components_that_can_outlive_the_process_detach_instead_of_terminating() -> None:
    calls: list[str] = []

    class Domain(Prim):
        def detach(self) -> bool:
            calls.append(f"detach {self.context.name}")
            return True

        def terminate(self, record: TerminationRecord) -> None:
            calls.append(f"terminate {self.context.name}")

    class Helper(Prim):
        def terminate(self, record: TerminationRecord) -> None:
            calls.append(f"terminate {self.context.name} ({record.kind})")

    class Types:
        @hookimpl
        def sd_actors_component_types(self) -> dict[str, type[Prim]]:
            return {"t.Domain": Domain, "t.Helper": Helper}

    manager = make_plugin_manager(load_entry_points=False, plugins=[Types()])
    with open_system(plugin_manager=manager) as system:
        system.deploy(parse_string("""#include "org/smartfrog/components.sf"
        sfConfig extends Compound {
            sfSyncTerminate true;
            helper extends Prim { sfClass "t.Helper"; }
            vm extends Prim { sfClass "t.Domain"; }
        }"""), name="pool")
        system.close(detach=True)

    assert calls == ["detach vm", "terminate helper (detached)"]
