"""The machinery under a System: component actors, their references, links and liveness."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pykka

from sd_actors.actors._component import (
    Component,
    ComponentContext,
    Reaction,
    component_failed,
)
from sd_actors.actors._errors import (
    ComponentFailed,
    DeploymentError,
    LinkError,
    UnexpectedMessage,
    UnknownComponentClass,
)
from sd_actors.actors._events import EventBus, LifecycleEvent, State
from sd_actors.actors._messages import (
    ChildFailed,
    ChildTerminated,
    CreateComponent,
    DeployComponent,
    PingComponent,
    RunInActor,
    StartComponent,
    TerminateComponent,
)
from sd_actors.actors._pool import PooledActor, WorkerPool, ask
from sd_actors.actors._records import DETACHED, TerminationRecord
from sd_actors.descriptions import ComponentDescription, Reference, RefPart

if TYPE_CHECKING:
    import pluggy

    from sd_actors.actors._clock import Clock, Timer

logger = logging.getLogger(__name__)

DEFAULT_LIVENESS_FACTOR = 2


class ComponentRef:
    """A handle on one component of a System: its place, state and last record, and its actor.

    Safe to use from any thread. ``deploy()``, ``start()`` and ``call()`` block until the
    component's actor has done the work.
    """

    def __init__(self, path: tuple[str, ...], description: ComponentDescription, parent: ComponentRef | None,
                 runtime: Runtime) -> None:
        self.path = path
        self.description = description
        self.parent = parent
        self.children: list[ComponentRef] = []
        # The root of the tree this component belongs to (its application's, or that of a subtree
        # this System runs for a parent on another host); None for the process and stand-ins.
        self.top: ComponentRef | None = None
        self.state: State | None = None
        self.record: TerminationRecord | None = None
        self.component: Component | None = None
        self.actor_ref: pykka.ActorRef[Any] | None = None
        self.actor: ComponentActor | None = None
        self.abandoned = False
        # Set before a termination is queued, so a component busy in a long call can notice it
        # (a plain flag: one assignment, read from any thread; an Event per component cost ~1 kB).
        self.termination_requested = False
        self._runtime = runtime
        sf_class = description.get("sfClass")
        self.component_class = sf_class if isinstance(sf_class, str) else ""

    @property
    def name_text(self) -> str:
        return ":".join(self.path) if self.path else "<process>"

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def alive(self) -> bool:
        return self.state is not None and not self.state.is_final and self.state is not State.TERMINATING

    def __repr__(self) -> str:
        return f"<ComponentRef {self.name_text} {self.state.value if self.state else 'new'}>"

    # -- lifecycle steps, asked of the component's actor -----------------------------------------
    def deploy(self) -> None:
        self._ask(DeployComponent())

    def start(self) -> None:
        self._ask(StartComponent())

    def call(self, function: Callable[[Component], Any], *, timeout: float | None = None) -> Any:
        """Run ``function(component)`` in the component's actor thread and return its result."""
        def run() -> Any:
            if self.component is None:
                raise DeploymentError(f"{self.name_text} has no running component")
            return function(self.component)

        return self._ask(RunInActor(run), timeout=timeout)

    def invoke(self, method: str, *arguments: object, timeout: float | None = None) -> object:
        """Call the component's public ``method`` in its actor thread (also across hosts, unlike :meth:`call`)."""
        if method.startswith("_"):
            raise DeploymentError(f"{self.name_text}: {method!r} is not a public method")

        def run(component: Component) -> object:
            function = getattr(component, method, None)
            if not callable(function):
                raise DeploymentError(f"{self.name_text} ({self.component_class}) has no method {method!r}")
            return function(*arguments)

        return self.call(run, timeout=timeout)

    def terminate(self, record: TerminationRecord | None = None) -> None:
        """Terminate this component (and its subtree) and wait; its parent is told, as in SmartFrog.

        From inside a component, terminating itself or an ancestor this way would wait for itself:
        use :meth:`terminate_nowait` there.
        """
        self._runtime.terminate_component(self, record or TerminationRecord.normal("terminated on request", self.path),
                                          notify_parent=True)

    def terminate_nowait(self, record: TerminationRecord | None = None, *, notify_parent: bool = True) -> None:
        """Ask for this component's termination without waiting for it."""
        self._runtime.request_termination(
            self, record or TerminationRecord.normal("terminated on request", self.path), notify_parent=notify_parent)

    def _ask(self, message: object, timeout: float | None = None) -> Any:
        actor = self.actor  # read once: Runtime.release_below may let go of it meanwhile
        if actor is None:
            if self.record is not None:  # it ended, and its application after it
                raise ComponentFailed(self.record)
            raise DeploymentError(f"{self.name_text} has no actor")
        try:
            return ask(actor, message, timeout)
        except pykka.ActorDeadError:
            raise ComponentFailed(self.record or TerminationRecord.abnormal(
                "its actor is no longer running", self.path)) from None


class ComponentActor(PooledActor):
    """The pykka actor that runs one component, one message at a time, on the System's worker pool."""

    def __init__(self, ref: ComponentRef, runtime: Runtime, component_type: type[Component] | None) -> None:
        self.pool = runtime.pool
        super().__init__()
        self.ref = ref
        self.runtime = runtime
        self.component_type = component_type

    def on_receive(self, message: object) -> object:
        match message:
            case CreateComponent():
                self._create()
            case DeployComponent():
                self._step("deploy", State.DEPLOYED, State.CREATED)
            case StartComponent():
                self._step("start", State.STARTED, State.DEPLOYED)
                self.runtime.liveness.watch(self.ref)
            case TerminateComponent(record=record, notify_parent=notify_parent):
                self._terminate(record, notify_parent=notify_parent)
            case PingComponent():
                self._ping()
            case ChildTerminated(child=child, record=record):
                self._child_terminated(child, record)
            case ChildFailed(child=child, record=record):
                if child.alive or child.state is State.TERMINATING:
                    self.runtime.terminate_component(child, record, notify_parent=False)
                self._child_terminated(child, record)
            case RunInActor(function=function):
                return function()
            case _:
                raise UnexpectedMessage(self, message)
        return None

    def _create(self) -> None:
        ref = self.ref
        try:
            if self.component_type is None:
                raise UnknownComponentClass(self.runtime.unknown_class_message(ref))
            ref.component = self.component_type(ComponentContext(ref, self.runtime))
            ref.component.create()
            self.runtime.set_state(ref, State.CREATED)
            if ref.component.has_children:
                for name, value in ref.description.items():
                    if isinstance(value, ComponentDescription) and value.eager:
                        self.runtime.create_child(ref, name, value)
        except Exception as error:
            raise component_failed(error, ref.path, "create") from error

    def _step(self, step: str, new_state: State, required: State) -> None:
        ref = self.ref
        if ref.state is not required:
            raise ComponentFailed(TerminationRecord.abnormal(
                f"cannot {step} in state {ref.state.value if ref.state else 'new'}", ref.path))
        assert ref.component is not None
        try:
            getattr(ref.component, step)()
        except Exception as error:
            raise component_failed(error, ref.path, step) from error
        if ref.state is not required:
            return  # it terminated itself meanwhile
        self.runtime.set_state(ref, new_state)
        if ref.component.has_children:
            for child in list(ref.children):
                getattr(child, step)()

    def _ping(self) -> None:
        ref = self.ref
        if not ref.alive or ref.component is None:
            return
        try:
            ref.component.ping()
        except Exception as error:  # noqa: BLE001 (any exception from ping() is the failure to report)
            record = TerminationRecord.abnormal(f"liveness: ping failed: {error}", ref.path,
                                                f"{type(error).__name__}: {error}")
            self.runtime.report_failure(ref, record)

    def _terminate(self, record: TerminationRecord, *, notify_parent: bool) -> None:
        ref = self.ref
        if ref.state is None or ref.state is State.TERMINATING or ref.state.is_final:
            if ref.state is None:
                self.runtime.finish(ref, record, notify_parent=False)
            if ref.state is not State.TERMINATING:
                self.stop()
            return
        self.runtime.set_state(ref, State.TERMINATING)
        if ref.children:
            sequential = ref.description.get("sfSyncTerminate") is True
            self.runtime.terminate_children(ref, list(reversed(ref.children)), record, sequential=sequential)
        if ref.component is not None:
            try:
                if not (record.kind == DETACHED and ref.component.detach()):
                    ref.component.terminate(record)
            except Exception:  # cleanup must go on; the record says why we got here
                logger.exception("%s: %s raised", ref.name_text,
                                 "detach()" if record.kind == DETACHED else "terminate()")
        self.runtime.finish(ref, record, notify_parent=notify_parent)
        self.stop()

    def _child_terminated(self, child: ComponentRef, record: TerminationRecord) -> None:
        ref = self.ref
        if child in ref.children:
            ref.children.remove(child)
        if ref.path == ():
            self.runtime.app_finished(child, record)
            return
        if not ref.alive:
            return
        reaction = self.runtime.decide(ref, child, record)
        if reaction is Reaction.TERMINATE:
            self._terminate(record, notify_parent=True)


class _ProcessComponent(Component):
    """The parent of every application in a System (SmartFrog's ProcessCompound)."""

    has_children = True


class LivenessMonitor:
    """Pings started components every ``sfLivenessDelay`` seconds of the System's clock.

    A component that has not answered ``sfLivenessFactor`` pings, or whose actor died, has failed;
    its parent is told (ChildFailed). A ping that raises is reported by the component's own actor.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._timers: dict[int, Timer] = {}
        self._lock = threading.Lock()
        self._closed = False

    def watch(self, ref: ComponentRef) -> None:
        delay = _seconds(ref_inherited(ref, "sfLivenessDelay", self._runtime.default_liveness_delay))
        factor = ref_inherited(ref, "sfLivenessFactor", DEFAULT_LIVENESS_FACTOR)
        if delay <= 0 or not isinstance(factor, int) or isinstance(factor, bool):
            return
        self._schedule(ref, delay, max(factor, 1), None, 0)

    def unwatch(self, ref: ComponentRef) -> None:
        """Stop pinging ``ref`` (it ended): its timer lets go of it now, not at its next ping."""
        with self._lock:
            timer = self._timers.pop(id(ref), None)
        if timer is not None:
            timer.cancel()

    def _schedule(self, ref: ComponentRef, delay: float, factor: int, pending: pykka.Future[Any] | None,
                  missed: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._timers[id(ref)] = self._runtime.clock.call_later(
                delay, lambda: self._tick(ref, delay, factor, pending, missed))

    def _tick(self, ref: ComponentRef, delay: float, factor: int, pending: pykka.Future[Any] | None,
              missed: int) -> None:
        with self._lock:
            self._timers.pop(id(ref), None)
        if ref.state is not State.STARTED or ref.abandoned:
            return
        actor = ref.actor_ref
        if actor is None or not actor.is_alive():
            self._runtime.report_failure(ref, TerminationRecord.abnormal(
                "liveness: its actor died", ref.path, "the actor stopped without terminating"))
            return
        if pending is not None and not _done(pending):
            missed += 1
            if missed >= factor:
                self._runtime.report_failure(ref, TerminationRecord.abnormal(
                    f"liveness: no answer to a ping for {missed * delay:g} s "
                    f"(sfLivenessDelay {delay:g}, sfLivenessFactor {factor})", ref.path, "hung"))
                return
        else:
            missed = 0
            pending = actor.ask(PingComponent(), block=False)
        self._schedule(ref, delay, factor, pending, missed)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers = list(self._timers.values())
            self._timers.clear()
        for timer in timers:
            timer.cancel()


def _done(future: pykka.Future[Any]) -> bool:
    try:
        future.get(timeout=0)
    except pykka.Timeout:
        return False
    except Exception:  # noqa: BLE001 (the ping raised: its actor already reported the failure)
        return True
    return True


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value)


def ref_inherited(ref: ComponentRef, name: str, default: object) -> object:
    node: ComponentRef | None = ref
    while node is not None and node.path:
        if name in node.description:
            return node.description[name]
        node = node.parent
    return default


class Runtime:
    """Everything one System shares between its components. Never module state."""

    def __init__(
        self,
        *,
        clock: Clock,
        plugin_manager: pluggy.PluginManager,
        component_types: Mapping[str, type[Component]],
        host: str,
        process: str,
        terminate_timeout: float,
        default_liveness_delay: float,
        properties: Mapping[str, str],
    ) -> None:
        self.clock = clock
        self.pool = WorkerPool(name=f"sd-actors-{process}")
        self.plugin_manager = plugin_manager
        self.component_types = dict(component_types)
        self.host = host
        self.process = process
        self.terminate_timeout = terminate_timeout
        self.default_liveness_delay = default_liveness_delay
        self.properties = dict(properties)
        self.bus = EventBus()
        # A daemon sets this: it journals what components hold outside its memory.
        self.resource_recorder: Callable[[ComponentRef, str | None, bool], None] | None = None
        # A daemon sets this: it returns the proxy type for a component another host must run.
        self.placement: Callable[[ComponentRef], type[Component] | None] | None = None
        self.liveness = LivenessMonitor(self)
        self.changed = threading.Condition()
        self.components: dict[tuple[str, ...], ComponentRef] = {}
        # Components by the identity of their description, for LAZY links. One description may be
        # deployed more than once (Retry, Repeat, the same description in two apps): all are kept,
        # until one that ended is replaced at its path or its application ended (release_below).
        self._by_description: dict[int, list[ComponentRef]] = {}
        # The components in the books under each tree's root (``ComponentRef.top``). When a root
        # ends, those under it let go of what they held (release_below): a daemon that runs for
        # months deploys many applications of distinct names, and each must cost little once ended.
        self._below: dict[ComponentRef, set[ComponentRef]] = {}
        self.apps: dict[str, ComponentRef] = {}
        self._deploying: set[str] = set()
        self.app_records: dict[str, TerminationRecord] = {}
        self.actors: list[ComponentActor] = []
        self.process_ref = ComponentRef((), ComponentDescription(), None, self)
        self.process_ref.state = State.STARTED
        self._shared: dict[object, object] = {}
        self._shared_lock = threading.Lock()
        process_actor = ComponentActor(self.process_ref, self, _ProcessComponent)
        self.process_ref.component = _ProcessComponent(ComponentContext(self.process_ref, self))
        self._start_actor(self.process_ref, process_actor)

    # -- actors ------------------------------------------------------------------------------------
    def _start_actor(self, ref: ComponentRef, actor: ComponentActor) -> None:
        # Started without pykka's process-wide ActorRegistry: Systems must never see each other.
        ref.actor_ref = actor.actor_ref
        ref.actor = actor
        with self.changed:
            self.actors.append(actor)
        actor.start_on_pool()

    def component_type(self, ref: ComponentRef) -> type[Component] | None:
        if self.placement is not None:
            placed = self.placement(ref)
            if placed is not None:
                return placed
        return self.component_types.get(ref.component_class)

    def unknown_class_message(self, ref: ComponentRef) -> str:
        import difflib

        if not ref.component_class:
            return (f"{ref.name_text} has no sfClass: a component to deploy needs one "
                    "(extend Prim, Compound or another component type)")
        known = sorted(k for k in self.component_types if not k.startswith("org.smartfrog."))
        close = difflib.get_close_matches(ref.component_class, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (f"{ref.name_text}: unknown sfClass {ref.component_class!r}; {hint}known component classes: "
                f"{', '.join(known)} (plugins add more through the sd_actors_component_types hook; SmartFrog's "
                "Java class names of these work too)")

    def attach_placeholder(self, path: tuple[str, ...], component_type: type[Component]) -> ComponentRef:
        """A running stand-in at ``path`` (a parent on another host) under which subtrees can be created."""
        ref = ComponentRef(path, ComponentDescription(), self.process_ref, self)
        ref.component_class = f"{component_type.__module__}.{component_type.__qualname__}"
        ref.component = component_type(ComponentContext(ref, self))
        ref.state = State.STARTED
        self._start_actor(ref, ComponentActor(ref, self, component_type))
        return ref

    def create_child(self, parent: ComponentRef, name: str, description: ComponentDescription) -> ComponentRef:
        path = (*parent.path, name)
        ref = ComponentRef(path, description, parent, self)
        with self.changed:
            replaced = self.components.get(path)
            self.components[path] = ref
            self._by_description.setdefault(id(description), []).append(ref)
            ref.top = parent.top if parent.top is not None else ref
            if ref.top is ref:
                self._below[ref] = set()
            elif (below := self._below.get(ref.top)) is not None:  # else its root was forgotten meanwhile
                below.add(ref)
            if replaced is not None and replaced.state is not None and replaced.state.is_final:
                self._forget_replaced(replaced, ref)
        parent.children.append(ref)
        actor = ComponentActor(ref, self, self.component_type(ref))
        self._start_actor(ref, actor)
        ref._ask(CreateComponent())
        return ref

    def deploy_child(self, parent: ComponentRef, name: str, description: ComponentDescription) -> ComponentRef:
        ref: ComponentRef | None = None
        try:
            ref = self.create_child(parent, name, description)
            ref.deploy()
            ref.start()
        except Exception as error:
            failure = component_failed(error, (*parent.path, name), "deploy")
            if ref is None:
                ref = self.components.get((*parent.path, name))
            if ref is not None:
                self.terminate_component(ref, failure.record, notify_parent=False)
            raise failure from error
        return ref

    def deploy_child_nowait(self, parent: ComponentRef, name: str, description: ComponentDescription
                            ) -> concurrent.futures.Future[ComponentRef]:
        future: concurrent.futures.Future[ComponentRef] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(self.deploy_child(parent, name, description))
            except BaseException as error:  # noqa: BLE001 (handed to whoever waits on the future)
                future.set_exception(error)

        self.pool.submit(run)
        return future

    def deploy_application(self, name: str, description: ComponentDescription) -> ComponentRef:
        """A new application under the process (what System.deploy and the Run workflow do)."""
        with self.changed:
            if name in self._deploying:
                raise DeploymentError(f"an application named {name!r} is already running (it is being deployed); "
                                      "terminate it first or choose another name")
            existing = self.apps.get(name)
            if existing is not None and (existing.alive or existing.state is State.TERMINATING):
                raise DeploymentError(f"an application named {name!r} is already running; "
                                      "terminate it first or choose another name")
            self._deploying.add(name)
            if existing is not None:
                self.forget_tree(existing)
        root: ComponentRef | None = None
        try:
            root = self.create_child(self.process_ref, name, description)
            with self.changed:
                self.apps[name] = root
                self.app_records.pop(name, None)
            root.deploy()
            root.start()
        except Exception as error:  # noqa: BLE001 (whatever failed, the tree is torn down and reported)
            failure = component_failed(error, (name,), "deploy")
            root = root or self.components.get((name,))
            if root is not None:
                with self.changed:
                    self.apps[name] = root
                self.terminate_component(root, failure.record, notify_parent=False)
                self.app_finished(root, failure.record)
            raise failure from None
        finally:
            with self.changed:
                self._deploying.discard(name)
        return root

    def _forget_replaced(self, replaced: ComponentRef, ref: ComponentRef) -> None:
        """With ``changed`` held: ``ref`` takes the place of ``replaced``, which ended (a restart, a
        Repeat's next round, a hosted subtree asked for again): nothing names it any more."""
        if replaced.top is replaced:
            self._forget(replaced)
        elif replaced.description is ref.description:  # links resolve to the newer one anyway
            self._unindex([replaced])
            below = self._below.get(replaced.top) if replaced.top is not None else None
            if below is not None:
                below.discard(replaced)

    def forget_tree(self, root: ComponentRef) -> None:
        """Drop a finished application's root and its whole tree from the System's books (its name
        may be reused)."""
        self.release_below(root)
        with self.changed:
            self._forget(root)

    def _forget(self, root: ComponentRef) -> None:
        """With ``changed`` held: ``root`` and what is left under it leave the books."""
        below = self._below.pop(root, set())
        for ref in (root, *below):
            if self.components.get(ref.path) is ref:
                del self.components[ref.path]
        self._unindex([root, *below])

    def release_below(self, root: ComponentRef) -> None:
        """``root``'s tree has ended: the components under it that ended let go of what they needed
        only while they ran (their Component, its actor), and links no longer resolve to them.

        They stay in ``components``, with their state and record (``lookup`` after the application
        ended), as slim references, until the application's name is deployed again. One still
        running (a hung one, abandoned) keeps what it uses."""
        with self.changed:
            below = self._below.get(root)
            if below is None:
                return
            ended = [ref for ref in below if ref.state is not None and ref.state.is_final]
            self._unindex(ended)
            for ref in ended:
                if self.components.get(ref.path) is not ref:  # one restarted in its place: nothing names it
                    below.discard(ref)
        for ref in ended:
            if not ref.abandoned:  # (an abandoned one's actor may still be running)
                ref.component = None
                ref.actor = None
                ref.actor_ref = None
                ref.children.clear()

    def _unindex(self, refs: list[ComponentRef]) -> None:
        """With ``changed`` held: drop ``refs`` from ``_by_description``."""
        gone = set(refs)
        for key in {id(ref.description) for ref in refs}:
            kept = [ref for ref in self._by_description.get(key, ()) if ref not in gone]
            if kept:
                self._by_description[key] = kept
            else:
                self._by_description.pop(key, None)

    # -- state and events ----------------------------------------------------------------------
    def set_state(self, ref: ComponentRef, state: State, record: TerminationRecord | None = None) -> None:
        old = ref.state
        ref.state = state
        if record is not None:
            ref.record = record
        event = LifecycleEvent(ref.path, old, state, self.clock.now(), record, self.host, ref.component_class)
        self.bus.publish(event)
        with self.changed:
            self.changed.notify_all()
        if ref.top is ref and state.is_final and not ref.abandoned:  # (_abandon releases after the subtree)
            self.release_below(ref)

    def finish(self, ref: ComponentRef, record: TerminationRecord, *, notify_parent: bool) -> None:
        """The component's termination is complete: final state, event, and the parent told."""
        with self.changed:
            if ref.actor in self.actors:
                self.actors.remove(ref.actor)
        if ref.abandoned:
            return
        self.liveness.unwatch(ref)
        self.set_state(ref, State.TERMINATED if record.is_normal else State.FAILED, record)
        parent = ref.parent
        parent_actor = parent.actor_ref if parent is not None else None
        if parent is not None and parent_actor is not None:
            if notify_parent:
                parent_actor.tell(ChildTerminated(child=ref, record=record))
            elif ref in parent.children:
                parent_actor.tell(RunInActor(lambda: _forget(parent, ref)))

    def app_finished(self, root: ComponentRef, record: TerminationRecord) -> None:
        with self.changed:
            if self.apps.get(root.name) is root:
                self.app_records[root.name] = record
            self.changed.notify_all()

    def decide(self, parent: ComponentRef, child: ComponentRef, record: TerminationRecord) -> Reaction:
        reaction = self.plugin_manager.hook.sd_actors_child_terminated(parent=parent, child=child, record=record)
        if isinstance(reaction, Reaction):
            return reaction
        return Reaction.TERMINATE

    # -- termination ------------------------------------------------------------------------------
    def terminate_component(self, ref: ComponentRef, record: TerminationRecord, *, notify_parent: bool) -> None:
        """Terminate ``ref`` and wait; one that does not finish in time is stopped forcibly."""
        actor = ref.actor_ref  # read once: None once its application ended (release_below)
        if actor is None or ref.abandoned:
            return
        ref.termination_requested = True
        try:
            future = actor.ask(TerminateComponent(record=record, notify_parent=notify_parent), block=False)
        except pykka.ActorDeadError:
            self._mark_dead(ref, record)
            return
        self._await_termination([(ref, future)], record)

    def terminate_children(self, parent: ComponentRef, children: Iterable[ComponentRef], record: TerminationRecord,
                           *, sequential: bool) -> None:
        if sequential:
            for child in children:
                self.terminate_component(child, record, notify_parent=False)
        else:
            pending: list[tuple[ComponentRef, pykka.Future[Any]]] = []
            for child in children:
                actor = child.actor_ref
                if actor is None or child.abandoned:
                    continue
                child.termination_requested = True
                try:
                    pending.append((child, actor.ask(
                        TerminateComponent(record=record, notify_parent=False), block=False)))
                except pykka.ActorDeadError:
                    self._mark_dead(child, record)
            self._await_termination(pending, record)
        for child in list(children):
            if child in parent.children and not child.alive:
                parent.children.remove(child)

    def _await_termination(self, pending: list[tuple[ComponentRef, pykka.Future[Any]]],
                           record: TerminationRecord) -> None:
        # A component's own terminate() gets terminate_timeout; one with children also gets the time
        # its children may take, so a hung grandchild is blamed alone, not every ancestor above it.
        start = time.monotonic()
        deadlines = {id(ref): start + self._budget(ref) for ref, _ in pending}
        for ref, future in pending:
            try:
                future.get(timeout=max(deadlines[id(ref)] - time.monotonic(), 0.0))
            except pykka.Timeout:
                self._abandon(ref)
            except pykka.ActorDeadError:
                self._mark_dead(ref, record)
            except Exception:  # terminate() itself is guarded; anything else is a runtime bug
                logger.exception("%s: terminating failed", ref.name_text)

    def _budget(self, ref: ComponentRef) -> float:
        """The longest ``ref`` may take to terminate: its own terminate() plus its children's turns."""
        children = [self._budget(c) for c in ref.children if not c.abandoned and not (c.state and c.state.is_final)]
        if not children:
            return self.terminate_timeout
        sequential = ref.description.get("sfSyncTerminate") is True
        return self.terminate_timeout + (sum(children) if sequential else max(children))

    def _abandon(self, ref: ComponentRef) -> None:
        """A component that did not finish terminating in time: recorded as failed, never waited for."""
        record = TerminationRecord.abnormal(
            f"did not finish terminating within {self.terminate_timeout:g} s: stopped forcibly", ref.path,
            "terminate timeout")
        ref.abandoned = True
        self.set_state(ref, State.FAILED, record)
        for child in ref.children:
            if child.alive or child.state is State.TERMINATING:
                self._abandon(child)
        if ref.top is ref:
            self.release_below(ref)

    def _mark_dead(self, ref: ComponentRef, record: TerminationRecord) -> None:
        if ref.state is not None and ref.state.is_final:
            return
        self.set_state(ref, State.FAILED, TerminationRecord.abnormal(
            "its actor had stopped", ref.path, record.description))

    def report_failure(self, ref: ComponentRef, record: TerminationRecord) -> None:
        """A liveness failure: the parent terminates the component, then reacts."""
        parent = ref.parent
        actor = parent.actor_ref if parent is not None else None
        if actor is None:
            return
        try:
            actor.tell(ChildFailed(child=ref, record=record))
        except pykka.ActorDeadError:
            logger.warning("%s failed but its parent is gone: %s", ref.name_text, record)

    def request_termination(self, ref: ComponentRef, record: TerminationRecord, *, notify_parent: bool = True) -> None:
        ref.termination_requested = True
        actor = ref.actor_ref
        if actor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                actor.tell(TerminateComponent(record=record, notify_parent=notify_parent))

    def call_soon(self, ref: ComponentRef, callback: Callable[[], None]) -> None:
        actor = ref.actor_ref
        if actor is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                actor.tell(RunInActor(callback))

    def call_later(self, ref: ComponentRef, delay: float, callback: Callable[[], None]) -> Timer:
        def deliver() -> None:
            actor = ref.actor_ref
            if actor is not None and ref.alive:
                with contextlib.suppress(pykka.ActorDeadError):
                    actor.tell(RunInActor(callback))

        return self.clock.call_later(delay, deliver)

    # -- LAZY links at run time --------------------------------------------------------------------
    def resolve_link(self, reference: Reference, start: ComponentRef) -> object:
        """Resolve ``reference`` from ``start``'s description: a value, or the running component it names."""
        value = self._walk(reference, start.description, start)
        if value is self.process_ref.description:
            return self.process_ref
        if isinstance(value, ComponentDescription):
            target = self.component_for(value, start) or self._remote_reference(value, start)
            if target is None:
                raise LinkError(f"{start.name_text}: LAZY {reference.path_text()} names a description that is "
                                "not a running component")
            return target
        return value

    def _remote_reference(self, description: ComponentDescription, start: ComponentRef) -> ComponentRef | None:
        """A component in a subtree another host runs: its reference through the local stand-in."""
        names: list[str] = []
        node: ComponentDescription | None = description
        while node is not None:
            local = self.component_for(node, start)
            if local is not None:
                reach = getattr(local.component, "remote_reference", None)
                return reach(tuple(reversed(names))) if callable(reach) and names else None
            name = node.name_in_parent()
            if name is None:
                return None
            names.append(name)
            node = node.parent
        return None

    def component_for(self, description: ComponentDescription, start: ComponentRef) -> ComponentRef | None:
        """The running component made from ``description`` that is closest to ``start``."""
        with self.changed:
            candidates = [ref for ref in self._by_description.get(id(description), ()) if ref.state is not None]
        if not candidates:
            return None

        def closeness(ref: ComponentRef) -> tuple[bool, int, int]:
            shared = 0
            for mine, theirs in zip(start.path, ref.path, strict=False):
                if mine != theirs:
                    break
                shared += 1
            return (ref.alive, shared, candidates.index(ref))

        return max(candidates, key=closeness)

    def _walk(self, reference: Reference, cd: ComponentDescription, start: ComponentRef,
              depth: int = 0) -> object:
        if depth > 50:
            raise LinkError(f"{start.name_text}: LAZY {reference.path_text()}: links chained too deeply")
        current: object = cd
        for index, part in enumerate(reference.parts):
            if not isinstance(current, ComponentDescription):
                raise LinkError(f"{start.name_text}: LAZY {reference.path_text()}: "
                                f"{_path_text(reference.parts[:index])} is not a component")
            current = self._step(reference, index, part, current, start, depth)
        return current

    def _step(self, reference: Reference, index: int, part: RefPart, cd: ComponentDescription,
              start: ComponentRef, depth: int) -> object:
        kind, name = part.kind, part.name or ""
        if kind == "ROOT":
            return cd.root()
        if kind == "PARENT":
            if cd.parent is None:
                raise LinkError(f"{start.name_text}: LAZY {reference.path_text()}: PARENT of the application's root")
            return cd.parent
        if kind == "THIS":
            return cd
        if cd is self.process_ref.description and kind in ("ATTRIB", "HERE"):
            app = self.apps.get(name)
            if app is None:
                raise LinkError(f"{start.name_text}: LAZY {reference.path_text()}: no application {name!r} on "
                                f"{self.host}; running: {', '.join(sorted(self.apps)) or 'none'}")
            return app.description
        if kind in ("ATTRIB", "HERE"):
            holder: ComponentDescription | None = cd
            while holder is not None and name not in holder:
                holder = holder.parent if kind == "ATTRIB" else None
            if holder is None:
                target = self.component_for(cd, start)
                where = target.name_text if target else start.name_text
                raise LinkError(f"{start.name_text}: LAZY {reference.path_text()} names nothing: no attribute "
                                f"{name!r} in {where} or its enclosing components")
            value = holder[name]
            if isinstance(value, Reference) and not value.data:
                return self._walk(value, holder, start, depth + 1)
            return value
        if kind in ("PROPERTY", "IPROPERTY"):
            if name not in self.properties:
                raise LinkError(f"{start.name_text}: LAZY PROPERTY {name} is not set in this System")
            text = self.properties[name]
            return text if kind == "PROPERTY" else int(text)
        if kind in ("ENVPROPERTY", "IENVPROPERTY"):
            if name not in os.environ:
                raise LinkError(f"{start.name_text}: environment variable {name} is not set")
            return os.environ[name] if kind == "ENVPROPERTY" else int(os.environ[name])
        if kind == "PROCESS":
            return self.process_ref.description
        if kind == "HOST":
            if name in (self.host, "localhost", "127.0.0.1"):
                return self.process_ref.description
            raise LinkError(f"{start.name_text}: LAZY HOST {name}: this System only knows its own host "
                            f"({self.host})")
        raise LinkError(f"{start.name_text}: LAZY {reference.path_text()}: {kind} cannot be resolved at run time")

    # -- closing -------------------------------------------------------------------------------------
    def shared(self, key: object, factory: Callable[[], object]) -> object:
        """The one object of this System for ``key`` (a libvirt connection per hypervisor URI, …),
        made by ``factory`` on first use; closed (if it has ``close()``) when the System closes."""
        with self._shared_lock:
            if key not in self._shared:
                self._shared[key] = factory()
            return self._shared[key]

    def close(self, timeout: float, *, detach: bool = False) -> list[str]:
        """Stop liveness and every actor; return the names of threads that did not finish in time.

        With ``detach``, applications end with a DETACHED record: each component's ``detach()``
        may leave what it holds outside this process running for a successor to re-attach to."""
        self.liveness.close()
        for app in list(self.apps.values()):
            if app.alive:
                record = (TerminationRecord(DETACHED, "the daemon stopped; what can outlive it is left running for "
                                            "the next daemon to re-attach to", app.path) if detach
                          else TerminationRecord.normal("System closed", app.path))
                self.terminate_component(app, record, notify_parent=False)
        if self.process_ref.actor_ref is not None:
            with contextlib.suppress(pykka.Timeout, pykka.ActorDeadError):
                self.process_ref.actor_ref.stop(block=True, timeout=timeout)
        for actor in list(self.actors):
            if actor.actor_ref.is_alive() and not actor.ref.abandoned:
                with contextlib.suppress(pykka.ActorDeadError):
                    actor.actor_ref.stop(block=False)
        self.clock.close()
        stragglers = [t.name for t in self.pool.close(timeout)]
        with self._shared_lock:
            shared, self._shared = list(self._shared.values()), {}
        for thing in shared:
            close = getattr(thing, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:  # closing one must not stop the others from closing
                    logger.warning("closing %r failed", thing, exc_info=True)
        return stragglers




def _forget(parent: ComponentRef, child: ComponentRef) -> None:
    if child in parent.children:
        parent.children.remove(child)


def _path_text(parts: Iterable[RefPart]) -> str:
    return ":".join(p.name or p.kind for p in parts)


