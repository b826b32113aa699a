"""The component model: the base class every component type extends, Prim and Compound."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Final

from sd_actors.actors._errors import ComponentFailed, DeploymentError
from sd_actors.actors._records import TerminationRecord
from sd_actors.descriptions import ComponentDescription, Reference, value_kind

if TYPE_CHECKING:
    from concurrent.futures import Future

    import pluggy

    from sd_actors.actors._clock import Timer
    from sd_actors.actors._runtime import ComponentRef, Runtime


class Reaction(enum.Enum):
    """What a parent does when one of its children terminated or failed."""

    TERMINATE = "terminate"
    """Shared fate (SmartFrog's Compound): the parent terminates with the child's record."""
    CONTINUE = "continue"
    """The child is forgotten and the parent carries on."""
    HANDLED = "handled"
    """The deciding code already did what was needed (restarted the child, …)."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
_MISSING: Final = object()


class ComponentContext:
    """What a running component knows about itself and can ask of the runtime.

    Every method is meant to be called from the component's own actor thread (inside
    ``deploy``, ``start``, ``terminate``, ``ping`` or a callback scheduled with ``call_later``).
    """

    def __init__(self, ref: ComponentRef, runtime: Runtime) -> None:
        self.ref = ref
        self._runtime = runtime

    @property
    def path(self) -> tuple[str, ...]:
        """The complete name: the application's name, then each component's name down to this one."""
        return self.ref.path

    @property
    def name(self) -> str:
        return self.ref.path[-1]

    @property
    def description(self) -> ComponentDescription:
        """The resolved description this component was created from."""
        return self.ref.description

    @property
    def host(self) -> str:
        return self._runtime.host

    @property
    def process(self) -> str:
        return self._runtime.process

    @property
    def parent(self) -> ComponentRef | None:
        return self.ref.parent

    @property
    def children(self) -> list[ComponentRef]:
        """The children that are alive, in the order they were created."""
        return list(self.ref.children)

    def attribute(self, name: str, default: object = REQUIRED) -> object:
        """The value of attribute ``name``; a LAZY link is resolved now, to a value or a running component.

        :raises DeploymentError: when the attribute is missing and no default is given, or a LAZY
            link names nothing.
        """
        value = self.ref.description.get(name, _MISSING)  # one lookup: a VM reads some 20 attributes
        if value is _MISSING:
            if default is REQUIRED:
                raise DeploymentError(
                    f"{self.ref.name_text}: attribute {name!r} is missing; known: "
                    + ", ".join(self.ref.description.keys()))
            return default
        if isinstance(value, Reference) and value.lazy:
            return self._runtime.resolve_link(value, self.ref)
        return value

    def typed_attribute(self, name: str, kind: type | tuple[type, ...], default: object = REQUIRED) -> object:
        """Like :meth:`attribute`, checking the value's Python type (``bool`` is not an ``int`` here)."""
        value = self.attribute(name, default)
        if value is default and default is not REQUIRED:
            return value
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = False if isinstance(value, bool) and bool not in kinds else isinstance(value, kinds)
        if not ok:
            wanted = " or ".join(k.__name__ for k in kinds)
            raise DeploymentError(f"{self.ref.name_text}: attribute {name!r} must be {wanted}, "
                                  f"found {value_kind(value)} {value!r}")
        return value

    def inherited(self, name: str, default: object = None) -> object:
        """Attribute ``name`` of this component or the closest ancestor that has it (like ATTRIB)."""
        node: ComponentRef | None = self.ref
        while node is not None:
            if name in node.description:
                return node.description[name]
            node = node.parent
        return default

    def resolve(self, reference: Reference | str) -> object:
        """Resolve a reference (or its text, ``"ATTRIB loop"``) at run time from this component."""
        if isinstance(reference, str):
            from sd_actors.descriptions._parser import reparse_reference

            reference = reparse_reference(reference)
        return self._runtime.resolve_link(reference, self.ref)

    def create_child(self, name: str, description: ComponentDescription) -> ComponentRef:
        """Create a child component (and its own subtree) from ``description``; it is not deployed yet."""
        return self._runtime.create_child(self.ref, name, description)

    def deploy_child(self, name: str, description: ComponentDescription) -> ComponentRef:
        """Create, deploy and start a child (SmartFrog's sfCreateNewChild). On failure the child is
        terminated and ComponentFailed is raised with its record."""
        return self._runtime.deploy_child(self.ref, name, description)

    def deploy_child_nowait(self, name: str, description: ComponentDescription) -> Future[ComponentRef]:
        """:meth:`deploy_child` on the worker pool; the future fails with ComponentFailed.

        Children deployed this way at the same time are created concurrently (Parallel with
        ``asynchCreateChild``). Wait on the futures only from this component's own thread.
        """
        return self._runtime.deploy_child_nowait(self.ref, name, description)

    def deploy_application(self, name: str, description: ComponentDescription) -> ComponentRef:
        """Deploy ``description`` as a new, independent application of the System (SmartFrog's Run)."""
        return self._runtime.deploy_application(name, description)

    def terminate_child(self, child: ComponentRef, record: TerminationRecord) -> None:
        """Terminate ``child`` without it notifying this component (it is told, not telling)."""
        self._runtime.terminate_component(child, record, notify_parent=False)

    def terminate_self(self, record: TerminationRecord) -> None:
        """Ask for this component's termination; it happens after the current call returns."""
        self._runtime.request_termination(self.ref, record)

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in this component's actor thread, after the messages already queued."""
        self._runtime.call_soon(self.ref, callback)

    def now(self) -> float:
        """The System clock's time, in seconds (a FakeClock's in tests)."""
        return self._runtime.clock.now()

    @property
    def termination_requested(self) -> bool:
        """True once someone asked for this component's termination: a long call should stop."""
        return self.ref.termination_requested

    def set_resource(self, resource: str | None, *, durable: bool = True) -> None:
        """Say what this component holds outside the daemon's memory (a process group, a domain's
        UUID), so that a daemon restarted after a crash can find it and never make a second copy.
        A daemon journals it; an embedding System ignores it.

        :param durable: True (the default): on disk when this returns — for what only the journal
            can find again (a process group). False: written a moment later with the journal's
            notes — for what its owner finds by itself after a crash (a domain carries sd-actors'
            metadata and is re-attached by name), so a deployment of many does not wait for a
            disk sync each.
        """
        recorder = self._runtime.resource_recorder
        if recorder is not None:
            recorder(self.ref, resource, durable)

    @property
    def hook(self) -> pluggy.HookRelay:
        """The System's plugin hooks, for a component that asks the plugins a decision
        (``context.hook.sd_actors_evacuate_to(...)``, …)."""
        return self._runtime.plugin_manager.hook

    def shared(self, key: object, factory: Callable[[], object]) -> object:
        """The one object of this System for ``key`` (e.g. a libvirt connection per hypervisor URI),
        made by ``factory`` on first use, shared by every component, closed with the System."""
        return self._runtime.shared(key, factory)

    def set_attribute(self, name: str, value: object) -> None:
        """Add or replace an attribute of this running component (SmartFrog's sfReplaceAttribute)."""
        self.ref.description.set(name, value)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` in this component's actor thread after ``delay`` seconds of the System's clock."""
        return self._runtime.call_later(self.ref, delay, callback)

    def record(self, kind: str, description: str, cause: str | None = None) -> TerminationRecord:
        """A TerminationRecord that names this component."""
        return TerminationRecord(kind, description, self.path, cause)


class Component:
    """The base of every component type (SmartFrog's Prim).

    Subclasses override the lifecycle methods they need. Each runs in the component's own actor
    thread, one at a time: ``deploy()`` (all components of the application exist), ``start()``
    (all are deployed), ``terminate(record)`` (clean up; also called when ``deploy`` failed or
    ``start`` never ran) and ``ping()`` (a health check: raise to report failure).
    """

    has_children: ClassVar[bool] = False
    """True when the nested eager descriptions are children that the runtime creates, deploys and
    starts along with this component (Compound and its kin). Components that create children
    themselves (workflows) leave it False and call ``context.deploy_child``."""

    def __init__(self, context: ComponentContext) -> None:
        self.context = context

    def create(self) -> None:
        """The component exists; its children (if it has any) are created next. Rarely needed."""

    def deploy(self) -> None:
        """Initialise; every component of the application has been created."""

    def start(self) -> None:
        """Begin work; every component of the application has been deployed."""

    def terminate(self, record: TerminationRecord) -> None:
        """Clean up. Called once, whatever state the component reached."""

    def ping(self) -> None:
        """Health check, called every ``sfLivenessDelay`` seconds once started; raise to fail."""

    def detach(self) -> bool:
        """The daemon is stopping, the application is not: leave what this component holds outside
        the daemon (a running domain, its volumes) as it is, for the next daemon to re-attach to
        from its journal, and return True; ``terminate`` is then not called. Return False (the
        default) to be terminated as usual. Called in the component's actor thread."""
        return False

    updatable: ClassVar[frozenset[str]] = frozenset()
    """The attributes this component type can take new values of while it runs. ``sd-actors up`` of
    a running application whose description changes only these attributes calls :meth:`update`;
    any other change is refused (``down``, then ``up``)."""

    def update(self, changed: frozenset[str]) -> None:
        """``sd-actors up`` gave new values to the attributes named in ``changed`` (some of
        ``updatable``); they are in ``context.description`` already. Apply them, or raise after
        undoing what was done: the old values are then put back and ``up`` fails with the error.
        Called in the component's actor thread."""

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        """A child terminated or failed: what to do. The default is SmartFrog's shared fate."""
        return Reaction.TERMINATE


class Prim(Component):
    """A component that does nothing by itself: SmartFrog's Prim. Nested descriptions are data."""


class Compound(Component):
    """Deploys its nested descriptions as children, in order, and shares their fate.

    The runtime steps the children with it, top-down in definition order: the Compound's own
    ``deploy()`` then each child's, its ``start()`` then each child's. A child that terminates,
    normally or not, terminates the Compound with the same record. Children terminate in reverse
    order of creation, before the Compound's own ``terminate()``: one after another if
    ``sfSyncTerminate`` is true, else all at once.
    """

    has_children = True


def component_failed(error: BaseException, path: tuple[str, ...], doing: str) -> ComponentFailed:
    """The ComponentFailed to raise for ``error`` (kept as is when it already is one)."""
    if isinstance(error, ComponentFailed):
        return error
    return ComponentFailed(TerminationRecord.from_exception(error, path, doing))
