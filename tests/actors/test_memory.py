"""Memory: a finished application costs the System little more than what it ended as.

A daemon runs for months and deploys many applications of distinct names. What a component
held while it ran (its Component, its actor, a VM's libvirt handles and timers) must be let go
when its application ends, not when an application of the same name comes along; what is kept
until then is a slim ComponentRef per component, with its state and record, for ``lookup``.
Each test keeps weak references to what ran and checks, after a full collection, that nothing
else holds it.
"""

from __future__ import annotations

import gc
import threading
import uuid
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Final

import pytest

from sd_actors.actors import (
    ABNORMAL,
    ComponentRef,
    ComponentSpec,
    Compound,
    FakeClock,
    Prim,
    RealClock,
    State,
    System,
    TerminationRecord,
    open_system,
)
from sd_actors.plugins import make_plugin_manager

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

APPS: Final = 5
"""Applications deployed and terminated, each under a name of its own."""

BELOW_ROOT: Final = ("app:front", "app:front:web0", "app:front:web1", "app:db")

TEST_HYPERVISOR: Final = "test:///default"


class Worker(Prim):
    """A Prim with a timer pending while it runs, cancelled when it ends (as a VM's liveness poll)."""

    def start(self) -> None:
        self._timer = self.context.call_later(3600, self.ping)

    def terminate(self, record: TerminationRecord) -> None:
        self._timer.cancel()


def application() -> ComponentSpec:
    """A root Compound over a nested Compound and Workers: three levels below the process."""
    worker = ComponentSpec(Worker)
    return ComponentSpec(Compound, children={
        "front": ComponentSpec(Compound, children={"web0": worker, "web1": worker}),
        "db": worker,
    })


def quiet_system(**options: Any) -> AbstractContextManager[System]:
    """open_system without third-party plugins, so only the runtime is under test."""
    return open_system(plugin_manager=make_plugin_manager(load_entry_points=False), **options)


def below_root(system: System, app: str) -> list[ComponentRef]:
    return [system.lookup(path.replace("app", app, 1)) for path in BELOW_ROOT]


def what_runs(refs: list[ComponentRef]) -> list[weakref.ref[object]]:
    """Weak references to what each component needs only while it runs: its Component and actor."""
    held: list[weakref.ref[object]] = []
    for ref in refs:
        assert ref.component is not None
        assert ref.actor is not None
        held += [weakref.ref(ref.component), weakref.ref(ref.actor)]
    return held


def let_pool_workers_move_on(system: System) -> None:
    """Have each worker of the System's pool run one more task.

    An idle worker still holds the last task it ran (an actor's ``_drain``: the actor, and through
    it its ComponentRef) until it runs another one or exits after its idle timeout: the pool's,
    bounded by its size, and not what these tests are about."""
    pool = system.runtime.pool
    workers = pool.threads
    together = threading.Barrier(workers + 1)  # each one busy until all are: one task per worker
    for _ in range(workers):
        pool.submit(lambda: together.wait(WAIT))
    together.wait(WAIT)


def still_held(references: list[weakref.ref[object]], system: System | None = None) -> list[object]:
    if system is not None:
        let_pool_workers_move_on(system)
    gc.collect()
    return [thing for thing in (reference() for reference in references) if thing is not None]


@pytest.fixture(params=[FakeClock, RealClock], ids=["fake clock", "real clock"])
def system(request: pytest.FixtureRequest, no_leftover_threads: None) -> Iterator[System]:
    """A System whose clock still has each Worker's timer and liveness ping, due in an hour, when its
    application ends."""
    with quiet_system(clock=request.param(), liveness_delay=3600) as opened:
        yield opened


def test_finished_applications_let_go_of_their_components_and_actors(system: System) -> None:
    held: list[weakref.ref[object]] = []
    for index in range(APPS):
        system.deploy(application(), name=f"app{index}")
        held += what_runs(below_root(system, f"app{index}"))
        system.terminate(f"app{index}")

    assert still_held(held, system) == []


def test_an_application_ended_by_a_child_lets_go_of_its_components_and_actors(system: System) -> None:
    held: list[weakref.ref[object]] = []
    for index in range(APPS):
        system.deploy(application(), name=f"app{index}")
        held += what_runs(below_root(system, f"app{index}"))
        web1 = system.lookup(f"app{index}:front:web1")
        web1.terminate(TerminationRecord(ABNORMAL, "disk full", web1.path))  # the Compounds share its fate
        system.wait_for_state(f"app{index}", State.FAILED, timeout=WAIT)

    assert still_held(held, system) == []


def test_a_finished_application_still_tells_what_each_component_ended_as(system: System) -> None:
    system.deploy(application(), name="app")
    record = system.terminate("app")

    root = system.apps()["app"]
    assert root is system.lookup("app")
    assert system.wait_for_state("app", State.TERMINATED, timeout=WAIT) is root
    assert root.record == record
    for path in BELOW_ROOT:
        ref = system.wait_for_state(path, State.TERMINATED, timeout=WAIT)
        assert ref.record == record
        assert ref.component is None
    assert system.statistics().by_state == {"terminated": 5}


def test_an_application_deployed_again_under_its_name_leaves_nothing_of_the_first(system: System) -> None:
    system.deploy(application(), name="app")
    first = [system.lookup("app"), *below_root(system, "app")]
    held = [weakref.ref(ref) for ref in first] + what_runs(first)
    system.terminate("app")
    del first

    system.deploy(application(), name="app")
    system.terminate("app")

    assert still_held(held, system) == []
    assert system.statistics().by_state == {"terminated": 5}


@pytest.mark.usefixtures("no_leftover_threads")
def test_a_supervisors_restarted_children_are_let_go_while_it_runs() -> None:
    supervisor = ComponentSpec("sd_actors.actors.Supervisor", {"intensity": 100},
                               children={"worker": ComponentSpec(Worker)})
    with quiet_system(clock=FakeClock()) as system:
        system.deploy(supervisor, name="app")
        held: list[weakref.ref[object]] = []
        for _ in range(APPS):
            worker = system.lookup("app:worker")
            held += [weakref.ref(worker), *what_runs([worker])]
            worker.terminate(TerminationRecord(ABNORMAL, "crashed", worker.path))
            system.lookup("app").call(lambda _: None)  # the Supervisor has reacted: a new worker runs
            del worker

        assert system.lookup("app:worker").state is State.STARTED
        assert still_held(held, system) == []


# -- the clock -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("clock", [FakeClock, RealClock], ids=["fake clock", "real clock"])
def test_a_cancelled_timer_lets_go_of_its_callback_before_it_is_due(clock: type[FakeClock | RealClock]) -> None:
    class Callback:
        def __call__(self) -> None:
            pass

    opened = clock()
    try:
        callback = Callback()
        held = weakref.ref(callback)
        opened.call_later(3600, callback).cancel()
        del callback

        assert still_held([held]) == []
    finally:
        opened.close()


def test_a_clock_mostly_holding_cancelled_timers_drops_them() -> None:
    clock = FakeClock()
    pending = [clock.call_later(3600, lambda: None) for _ in range(10)]

    for _ in range(1000):
        clock.call_later(3600, lambda: None).cancel()

    # It keeps some cancelled ones (it compacts once they are most of a few dozen), not 1,000.
    timers = sum(1 for thing in gc.get_objects() if type(thing) is type(pending[0]))
    assert timers < 100
    clock.close()


# -- with libvirt ------------------------------------------------------------------------------------


def test_a_finished_vm_lets_go_of_its_component_and_its_domains_handle() -> None:
    # The VM's liveness poll, cancelled when it terminated, stays on the fake clock (never advanced).
    with quiet_system(clock=FakeClock()) as system:
        held: list[weakref.ref[object]] = []
        for index in range(APPS):
            attributes = {"domainName": f"sd-{uuid.uuid4().hex[:10]}", "memory": 64, "vcpus": 1,
                          "hypervisor": TEST_HYPERVISOR}
            system.deploy(ComponentSpec(Compound, children={"vm": ComponentSpec("sd_actors.plugins.VM", attributes)}),
                          name=f"app{index}")
            vm = system.lookup(f"app{index}:vm")
            held += [*what_runs([vm]), weakref.ref(vm.call(lambda component: component._domain))]
            del vm
            system.terminate(f"app{index}")

        assert still_held(held, system) == []
