"""The lifecycle of a tree of components: SmartFrog's order, shared fate, bad input, LAZY links.

The trees are real ``.sf`` descriptions (they include the component library) whose components
note every lifecycle call in the test's :class:`Journal`; the runtime's own view is read from the
events a System publishes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import ClassVar, Final

import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    Component,
    ComponentContext,
    ComponentFailed,
    ComponentRef,
    ComponentSpec,
    Compound,
    DeploymentError,
    LifecycleEvent,
    Prim,
    State,
    System,
    TerminationRecord,
    UnknownComponent,
    open_system,
)
from sd_actors.descriptions import ComponentDescription, parse_string
from sd_actors.plugins import hookimpl, make_plugin_manager

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

FINAL: Final = (State.TERMINATED, State.FAILED)


class Journal:
    """What the test's components did, in order, whichever thread they ran in.

    It is also the plugin that contributes their types, each bound to this journal (one per test).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[str, str]] = []
        self.meeting = threading.Barrier(2, timeout=WAIT)
        self.creating = threading.Event()
        self.let_create = threading.Event()

    def note(self, step: str, path: tuple[str, ...]) -> None:
        with self._lock:
            self._entries.append((step, ":".join(path)))

    def entries(self, *steps: str) -> list[tuple[str, str]]:
        """The entries for ``steps`` (all of them when none is given), in the order they happened."""
        with self._lock:
            return [entry for entry in self._entries if not steps or entry[0] in steps]

    def paths(self, step: str) -> list[str]:
        return [path for _, path in self.entries(step)]

    @hookimpl
    def sd_actors_component_types(self) -> dict[str, type[Component]]:
        def bound(component_type: type[Component]) -> type[Component]:
            return type(component_type.__name__, (component_type,), {"journal": self})

        return {
            "test.RecordingPrim": bound(RecordingPrim),
            "test.RecordingCompound": bound(RecordingCompound),
            "test.SlowToCreate": bound(SlowToCreate),
            "test.Linked": Linked,
            "test.Typed": Typed,
        }


class RecordingPrim(Prim):
    """Notes each lifecycle call. ``failIn "deploy"`` (or ``"start"``) makes that step raise;
    ``meetSibling true`` makes ``terminate()`` wait until a sibling's ``terminate()`` runs too."""

    journal: ClassVar[Journal]

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self.journal.note("create", context.path)

    def deploy(self) -> None:
        self._step("deploy")

    def start(self) -> None:
        self._step("start")

    def terminate(self, record: TerminationRecord) -> None:
        self.journal.note("terminate", self.context.path)
        if self.context.attribute("meetSibling", False):
            self.journal.meeting.wait()
            self.journal.note("met", self.context.path)
        self.journal.note("terminated", self.context.path)

    def _step(self, step: str) -> None:
        self.journal.note(step, self.context.path)
        if self.context.attribute("failIn", None) == step:
            raise OSError("port 8080 is in use")


class RecordingCompound(RecordingPrim, Compound):
    """A Compound that notes each lifecycle call."""


class SlowToCreate(Prim):
    """Its construction waits until the test lets it go."""

    journal: ClassVar[Journal]

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self.journal.creating.set()
        self.journal.let_create.wait(WAIT)


class Linked(Prim):
    """Follows its LAZY link ``peer`` when it is deployed."""

    peer: object = None

    def deploy(self) -> None:
        self.peer = self.context.attribute("peer")


def peer_found_when_deployed(component: Component) -> object:
    assert isinstance(component, Linked)
    return component.peer


class Typed(Prim):
    """Reads its attribute ``port``, which must be an integer."""

    def deploy(self) -> None:
        self.context.typed_attribute("port", int)


TYPES: Final = """\
#include "org/smartfrog/components.sf"

RecordingPrim extends Prim { sfClass "test.RecordingPrim"; }
RecordingCompound extends Compound { sfClass "test.RecordingCompound"; }
Linked extends Prim { sfClass "test.Linked"; }
Typed extends Prim { sfClass "test.Typed"; }
"""


def tree(*, app: str = "", web: str = "", server: str = "", cache: str = "") -> ComponentDescription:
    """app { web { server cache } db }, with extra attributes for some of them."""
    return parse_string(TYPES + f"""
sfConfig extends RecordingCompound {{
    {app}
    web extends RecordingCompound {{
        {web}
        server extends RecordingPrim {{ {server} }}
        cache extends RecordingPrim {{ {cache} }}
    }}
    db extends RecordingPrim;
}}
""")


def after_first(component: str) -> ComponentDescription:
    """app { first, then ``component`` }."""
    return parse_string(TYPES + f"""
sfConfig extends RecordingCompound {{
    first extends RecordingPrim;
    {component}
}}
""")


TREE_PATHS: Final = ["app", "app:web", "app:web:server", "app:web:cache", "app:db"]
"""Every component of :func:`tree`, top-down in definition order."""


@pytest.fixture
def journal() -> Journal:
    return Journal()


@pytest.fixture
def system(journal: Journal, no_leftover_threads: None) -> Iterator[System]:
    manager = make_plugin_manager(load_entry_points=False, plugins=[journal])
    with open_system(plugin_manager=manager) as system:
        yield system
        journal.let_create.set()


@pytest.fixture
def events(system: System) -> Iterator[list[LifecycleEvent]]:
    received: list[LifecycleEvent] = []
    unsubscribe = system.subscribe(received.append)
    yield received
    unsubscribe()


# -- order ---------------------------------------------------------------------------------------


def test_every_component_is_created_then_every_one_deployed_then_every_one_started(
        system: System, journal: Journal) -> None:
    system.deploy(tree(), name="app")

    assert journal.entries("create", "deploy", "start") == (
        [("create", path) for path in TREE_PATHS]
        + [("deploy", path) for path in TREE_PATHS]
        + [("start", path) for path in TREE_PATHS])


def test_events_show_the_tree_stepped_phase_by_phase_top_down_in_definition_order(
        system: System, events: list[LifecycleEvent]) -> None:
    system.deploy(tree(), name="app")

    assert [(event.name, event.old, event.new) for event in events] == (
        [(path, None, State.CREATED) for path in TREE_PATHS]
        + [(path, State.CREATED, State.DEPLOYED) for path in TREE_PATHS]
        + [(path, State.DEPLOYED, State.STARTED) for path in TREE_PATHS])


def test_with_sfsyncterminate_children_terminate_one_after_another_in_reverse_order_then_their_compound(
        system: System, journal: Journal) -> None:
    system.deploy(tree(app="sfSyncTerminate true;", web="sfSyncTerminate true;"), name="app")

    system.terminate("app")

    assert journal.entries("terminate", "terminated") == [
        (step, path)
        for path in ["app:db", "app:web:cache", "app:web:server", "app:web", "app"]
        for step in ("terminate", "terminated")
    ]


def test_without_sfsyncterminate_the_children_of_a_compound_terminate_together_then_the_compound(
        system: System, journal: Journal) -> None:
    # Each of web's two children waits in terminate() for the other: they only both get
    # through if they are terminated at the same time.
    system.deploy(tree(server="meetSibling true;", cache="meetSibling true;"), name="app")

    system.terminate("app")

    assert sorted(journal.paths("met")) == ["app:web:cache", "app:web:server"]
    terminated = journal.paths("terminated")
    assert terminated.index("app:web") > max(terminated.index("app:web:cache"), terminated.index("app:web:server"))
    assert terminated[-1] == "app"


def test_children_end_before_their_compound_in_the_events(system: System, events: list[LifecycleEvent]) -> None:
    system.deploy(tree(), name="app")

    system.terminate("app")

    ended = [event.name for event in events if event.new in FINAL]
    assert sorted(ended) == sorted(TREE_PATHS)
    assert ended.index("app:web") > max(ended.index("app:web:server"), ended.index("app:web:cache"))
    assert ended[-1] == "app"


# -- shared fate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "final"), [(NORMAL, State.TERMINATED), (ABNORMAL, State.FAILED)],
                         ids=["normal", "abnormal"])
def test_a_child_that_terminates_terminates_its_compound_and_the_application_with_the_same_record(
        system: System, kind: str, final: State) -> None:
    system.deploy(tree(), name="app")
    cache = system.lookup("app:web:cache")
    record = TerminationRecord(kind, "cache evicted", cache.path)

    cache.call(lambda component: component.context.terminate_self(record))
    app = system.wait_for_state("app", FINAL, timeout=WAIT)

    assert app.state is final
    assert app.record == record
    assert system.lookup("app:web").record == record


@pytest.mark.parametrize("kind", [NORMAL, ABNORMAL])
def test_shared_fate_terminates_every_other_component_of_the_application_with_the_child_record(
        system: System, journal: Journal, kind: str) -> None:
    system.deploy(tree(), name="app")
    cache = system.lookup("app:web:cache")
    record = TerminationRecord(kind, "cache evicted", cache.path)

    cache.call(lambda component: component.context.terminate_self(record))
    system.wait_for_state("app", FINAL, timeout=WAIT)

    assert sorted(journal.paths("terminated")) == sorted(TREE_PATHS)
    assert {path: system.lookup(path).record for path in TREE_PATHS} == dict.fromkeys(TREE_PATHS, record)


def test_terminating_a_child_through_the_system_terminates_its_application_by_shared_fate(system: System) -> None:
    system.deploy(tree(), name="app")

    record = system.terminate("app:db")
    app = system.wait_for_state("app", FINAL, timeout=WAIT)

    assert record == TerminationRecord(NORMAL, "terminated on request", ("app", "db"))
    assert app.record == record


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["deploy", "start"])
def test_a_component_that_raises_fails_the_application_with_a_record_naming_it_and_why(
        system: System, step: str) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(tree(cache=f'failIn "{step}";'), name="app")

    assert excinfo.value.record == TerminationRecord(
        ABNORMAL, f"{step} failed: port 8080 is in use", ("app", "web", "cache"), "OSError")
    assert system.apps()["app"].record == excinfo.value.record


@pytest.mark.parametrize("step", ["deploy", "start"])
def test_when_a_component_raises_every_component_of_the_application_is_terminated_once(
        system: System, journal: Journal, step: str) -> None:
    with pytest.raises(ComponentFailed):
        system.deploy(tree(cache=f'failIn "{step}";'), name="app")

    assert sorted(journal.paths("terminated")) == sorted(TREE_PATHS)
    assert system.statistics().by_state == {"failed": len(TREE_PATHS)}


BAD_INPUT: Final = [
    pytest.param('client extends Prim { sfClass "test.RecordingPrm"; }', ("app", "client"),
                 "unknown sfClass 'test.RecordingPrm'", id="unknown-sfclass"),
    pytest.param("client extends Linked { peer LAZY ATTRIB server; }", ("app", "client"),
                 "names nothing: no attribute 'server'", id="lazy-link-to-nothing"),
    pytest.param('web extends Typed { port "8080"; }', ("app", "web"),
                 "attribute 'port' must be int, found String '8080'", id="attribute-of-the-wrong-type"),
]


@pytest.mark.parametrize(("component", "path", "reason"), BAD_INPUT)
def test_bad_input_fails_the_application_with_a_record_naming_the_component_and_the_reason(
        system: System, component: str, path: tuple[str, ...], reason: str) -> None:
    description = after_first(component)

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(description, name="app")

    assert excinfo.value.record.kind == ABNORMAL
    assert excinfo.value.record.path == path
    assert reason in excinfo.value.record.description


@pytest.mark.parametrize(("component", "path", "reason"), BAD_INPUT)
def test_after_bad_input_the_rest_terminates_cleanly_and_the_system_stays_usable(
        system: System, journal: Journal, component: str, path: tuple[str, ...], reason: str) -> None:
    description = after_first(component)
    with pytest.raises(ComponentFailed):
        system.deploy(description, name="app")

    again = system.deploy(tree(), name="app")
    other = system.deploy(tree(), name="other")

    assert journal.paths("terminated") == ["app:first", "app"]
    assert (again.state, other.state) == (State.STARTED, State.STARTED)


def test_an_unknown_sfclass_is_named_with_the_closest_and_every_known_class(system: System) -> None:
    description = parse_string(TYPES + 'sfConfig extends Compound { client extends Prim { sfClass "test.Linkd"; } }')

    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(description, name="app")

    message = excinfo.value.record.description
    assert "unknown sfClass 'test.Linkd'; did you mean 'test.Linked'?" in message
    for known in ("sd_actors.actors.Compound", "sd_actors.actors.Prim", "test.Linked", "test.Typed"):
        assert known in message
    assert excinfo.value.record.cause is not None
    assert excinfo.value.record.cause == "UnknownComponentClass"


# -- LAZY links ------------------------------------------------------------------------------------


LINKED: Final = TYPES + """
sfConfig extends Compound {
    client extends Linked {
        peer LAZY PARENT:server;
        serverPort LAZY PARENT:server:port;
    }
    server extends RecordingPrim { port 8080; }
}
"""


def test_a_lazy_link_resolves_at_run_time_to_the_running_component_it_names(system: System) -> None:
    system.deploy(parse_string(LINKED), name="app")

    peer = system.lookup("app:client").call(peer_found_when_deployed)

    assert isinstance(peer, ComponentRef)
    assert peer is system.lookup("app:server")


def test_a_component_reached_through_a_lazy_link_can_be_called(system: System) -> None:
    system.deploy(parse_string(LINKED), name="app")
    peer = system.lookup("app:client").call(lambda client: client.context.attribute("peer"))

    port = peer.call(lambda server: server.context.attribute("port"))

    assert port == 8080


def test_a_lazy_link_to_an_attribute_resolves_to_its_value(system: System) -> None:
    system.deploy(parse_string(LINKED), name="app")

    port = system.lookup("app:client").call(lambda client: client.context.attribute("serverPort"))

    assert port == 8080


def test_applications_deployed_from_one_description_each_resolve_lazy_links_within_themselves(
        system: System) -> None:
    description = parse_string(LINKED)
    system.deploy(description, name="first")
    system.deploy(description, name="second")

    peer = system.lookup("first:client").call(lambda client: client.context.attribute("peer"))

    assert peer is system.lookup("first:server")


@pytest.mark.parametrize("link", ["LAZY HOST localhost:other:web", "LAZY PROCESS:other:web"], ids=["host", "process"])
def test_a_lazy_link_through_the_process_reaches_a_component_of_another_application(system: System, link: str) -> None:
    system.deploy(parse_string(TYPES + "sfConfig extends Compound { web extends RecordingPrim; }"), name="other")
    system.deploy(parse_string(TYPES + f"sfConfig extends Compound {{ client extends Prim {{ peer {link}; }} }}"),
                  name="app")

    peer = system.lookup("app:client").call(lambda client: client.context.attribute("peer"))

    assert peer is system.lookup("other:web")


# -- the System ------------------------------------------------------------------------------------


def test_an_application_name_is_refused_while_that_application_runs(system: System) -> None:
    system.deploy(ComponentSpec(Prim), name="app")

    with pytest.raises(DeploymentError, match="an application named 'app' is already running"):
        system.deploy(ComponentSpec(Prim), name="app")


def test_an_application_name_can_be_used_again_once_that_application_terminated(system: System) -> None:
    first = system.deploy(ComponentSpec(Prim), name="app")
    system.terminate("app")

    second = system.deploy(ComponentSpec(Prim), name="app")

    assert first.state is State.TERMINATED
    assert second.state is State.STARTED
    assert system.lookup("app") is second


def test_an_application_name_is_refused_while_that_application_is_still_being_created(
        system: System, journal: Journal) -> None:
    first = system.deploy_nowait(ComponentSpec("test.SlowToCreate"), name="app")
    assert journal.creating.wait(WAIT)

    try:
        with pytest.raises(DeploymentError, match="already running"):
            system.deploy(ComponentSpec(Prim), name="app")
    finally:
        journal.let_create.set()
        first.result(WAIT)


def test_the_system_can_be_used_from_asyncio(system: System) -> None:
    async def deploy_and_terminate() -> tuple[State | None, TerminationRecord]:
        app = await system.deploy_async(tree(), name="app")
        state = app.state
        return state, await asyncio.to_thread(system.terminate, "app")

    state, record = asyncio.run(deploy_and_terminate())

    assert state is State.STARTED
    assert record.kind == NORMAL


def test_looking_up_an_unknown_path_suggests_the_closest_name(system: System) -> None:
    system.deploy(tree(), name="app")

    with pytest.raises(UnknownComponent, match=r"no component 'app:web:cahce'; did you mean 'app:web:cache'\?"):
        system.lookup("app:web:cahce")


def test_a_component_knows_its_complete_name_host_and_process(journal: Journal, no_leftover_threads: None) -> None:
    manager = make_plugin_manager(load_entry_points=False, plugins=[journal])

    with open_system(plugin_manager=manager, host="node7", process="workers") as system:
        system.deploy(tree(), name="app")
        known = system.lookup("app:web:cache").call(
            lambda cache: (cache.context.path, cache.context.host, cache.context.process))

    assert known == (("app", "web", "cache"), "node7", "workers")
