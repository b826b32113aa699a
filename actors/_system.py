"""System: the embeddable entry point that deploys, finds, watches and terminates components."""

from __future__ import annotations

import concurrent.futures
import socket
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pluggy

from sd_actors.actors._clock import Clock, RealClock
from sd_actors.actors._component import Component
from sd_actors.actors._errors import ComponentFailed, DeploymentError, UnknownComponent
from sd_actors.actors._events import LifecycleEvent, State
from sd_actors.actors._records import TerminationRecord
from sd_actors.actors._runtime import ComponentRef, Runtime
from sd_actors.descriptions import ComponentDescription, parse_file
from sd_actors.plugins import collect_component_types, make_plugin_manager


@dataclass(frozen=True)
class ComponentSpec:
    """A component built in Python rather than described in a ``.sf`` file.

    ``ComponentSpec(Worker, {"queue": "jobs"})``; ``children`` are deployed in order by a
    Compound or Supervisor.
    """

    component: type[Component] | str
    attributes: Mapping[str, object] = field(default_factory=dict)
    children: Mapping[str, ComponentSpec] = field(default_factory=dict)


class System:
    """A tree of running components in this process. Open one with :func:`open_system`.

    Every method may be called from any thread. Several Systems in one process share nothing.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="sd-actors-deploy")
        self._deploy_lock = threading.Lock()
        self._closed = False

    # -- deploying ---------------------------------------------------------------------------------
    def deploy(self, description: ComponentDescription | ComponentSpec | str | Path, *, name: str,
               include_dirs: Sequence[str | Path] = ()) -> ComponentRef:
        """Create, deploy and start an application named ``name``; return its root once started.

        ``description`` is a resolved description (``parse_file``'s result), a ``.sf`` file's
        path, or a :class:`ComponentSpec`. When any component fails, everything created is
        terminated and :class:`ComponentFailed` is raised with the failing component's record.
        """
        config = self._description(description, include_dirs)
        with self._deploy_lock:
            if self._closed:
                raise DeploymentError("the System is closed")
        return self._runtime.deploy_application(name, config)

    def deploy_nowait(self, description: ComponentDescription | ComponentSpec | str | Path, *, name: str,
                      include_dirs: Sequence[str | Path] = ()) -> concurrent.futures.Future[ComponentRef]:
        """Like :meth:`deploy`, in the background; the future can be awaited from asyncio."""
        with self._deploy_lock:
            if self._closed:
                raise DeploymentError("the System is closed")
            return self._executor.submit(self.deploy, description, name=name, include_dirs=include_dirs)

    async def deploy_async(self, description: ComponentDescription | ComponentSpec | str | Path, *, name: str,
                           include_dirs: Sequence[str | Path] = ()) -> ComponentRef:
        """:meth:`deploy` for asyncio code: ``root = await system.deploy_async(spec, name="app")``."""
        import asyncio  # here: the command line imports this module and never needs asyncio

        return await asyncio.wrap_future(self.deploy_nowait(description, name=name, include_dirs=include_dirs))

    def _description(self, description: ComponentDescription | ComponentSpec | str | Path,
                     include_dirs: Sequence[str | Path]) -> ComponentDescription:
        if isinstance(description, ComponentDescription):
            return description
        if isinstance(description, ComponentSpec):
            return self._spec_description(description)
        return parse_file(description, include_dirs=include_dirs)

    def _spec_description(self, spec: ComponentSpec) -> ComponentDescription:
        cd = ComponentDescription()
        if isinstance(spec.component, str):
            class_name = spec.component
        else:
            class_name = f"{spec.component.__module__}.{spec.component.__qualname__}"
            known = self._runtime.component_types.get(class_name)
            if known is not None and known is not spec.component:
                raise DeploymentError(f"{class_name} already names another component type")
            self._runtime.component_types[class_name] = spec.component
        cd.set("sfClass", class_name)
        for key, value in spec.attributes.items():
            if key == "sfClass":
                raise DeploymentError("give the class as ComponentSpec.component, not as an sfClass attribute")
            cd.set(key, value)
        for key, child in spec.children.items():
            cd.set(key, self._spec_description(child))
        return cd

    # -- finding and watching ------------------------------------------------------------------------
    def lookup(self, path: str | Sequence[str]) -> ComponentRef:
        """The component at ``path`` (``"app:web:vm"`` or ``("app", "web", "vm")``)."""
        key = tuple(path.split(":")) if isinstance(path, str) else tuple(path)
        ref = self._runtime.components.get(key)
        if ref is None:
            import difflib

            names = [":".join(p) for p in self._runtime.components]
            close = difflib.get_close_matches(":".join(key), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(names)[:20])}"
            raise UnknownComponent(f"no component {':'.join(key)!r}{hint}")
        return ref

    def apps(self) -> dict[str, ComponentRef]:
        """The applications deployed in this System, running or finished, by name."""
        with self._runtime.changed:
            return dict(self._runtime.apps)

    def subscribe(self, subscriber: Callable[[LifecycleEvent], None]) -> Callable[[], None]:
        """Call ``subscriber`` with every lifecycle event; returns the function that unsubscribes."""
        return self._runtime.bus.subscribe(subscriber)

    def wait_for_state(self, path: str | Sequence[str], states: State | Collection[State], *,
                       timeout: float) -> ComponentRef:
        """Block until the component at ``path`` exists and is in one of ``states``.

        :raises TimeoutError: naming the state it was in.
        """
        wanted = {states} if isinstance(states, State) else set(states)
        key = tuple(path.split(":")) if isinstance(path, str) else tuple(path)
        runtime = self._runtime
        with runtime.changed:
            ok = runtime.changed.wait_for(
                lambda: (ref := runtime.components.get(key)) is not None and ref.state in wanted, timeout)
            ref = runtime.components.get(key)
        if not ok or ref is None:
            now = ref.state.value if ref is not None and ref.state else "absent"
            raise TimeoutError(f"{':'.join(key)} is {now}, not {'/'.join(sorted(s.value for s in wanted))}, "
                               f"after {timeout:g} s")
        return ref

    # -- terminating ---------------------------------------------------------------------------------
    def terminate(self, path: str | Sequence[str], record: TerminationRecord | None = None) -> TerminationRecord:
        """Terminate the component at ``path`` (its parent is told, as in SmartFrog); return its record."""
        ref = self.lookup(path)
        record = record or TerminationRecord.normal("terminated on request", ref.path)
        if ref.parent is self._runtime.process_ref or ref.parent is None:
            self._runtime.terminate_component(ref, record, notify_parent=False)
            self._runtime.app_finished(ref, ref.record or record)
        else:
            self._runtime.terminate_component(ref, record, notify_parent=True)
        return ref.record or record

    def set_placement(self, placement: Callable[[ComponentRef], type[Component] | None]) -> None:
        """Decide which component type runs a description (a daemon returns its remote proxy for a
        component that another host's daemon must create); None keeps the ``sfClass``."""
        self._runtime.placement = placement

    @property
    def runtime(self) -> Runtime:
        """The machinery under this System, for the daemon that serves it over the network."""
        return self._runtime

    def shared(self, key: object, factory: Callable[[], object]) -> object:
        """The one object of this System for ``key``, made by ``factory`` on first use and closed
        with the System: what components get from ``ComponentContext.shared``."""
        return self._runtime.shared(key, factory)

    def close(self, *, detach: bool = False) -> None:
        """Terminate every application (normally), stop every actor and the clock.

        :param detach: end the applications with a ``detached`` record instead: components that
            hold something outside this process (a running domain) leave it running
            (:meth:`Component.detach`), for a successor to re-attach to. A daemon stopping does this.
        """
        with self._deploy_lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=True)
        self._runtime.close(timeout=self._runtime.terminate_timeout, detach=detach)
        for actor in list(self._runtime.actors):
            if not actor.ref.abandoned:
                actor.actor_stopped.wait(self._runtime.terminate_timeout)

    def statistics(self) -> SystemStatistics:
        """A frozen snapshot of what the System holds."""
        refs = list(self._runtime.components.values())
        counts: dict[str, int] = {}
        for ref in refs:
            key = ref.state.value if ref.state else "new"
            counts[key] = counts.get(key, 0) + 1
        return SystemStatistics(components=len(refs), by_state=counts, apps=len(self._runtime.apps))


@dataclass(frozen=True, slots=True)
class SystemStatistics:
    components: int
    by_state: Mapping[str, int]
    apps: int


@contextmanager
def open_system(
    *,
    clock: Clock | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    host: str | None = None,
    process: str = "rootProcess",
    terminate_timeout: float = 10.0,
    liveness_delay: float = 0.0,
    properties: Mapping[str, str] | None = None,
) -> Iterator[System]:
    """Open a System; on exit every application is terminated and every actor stopped.

    :param clock: time for liveness and timers (a ``FakeClock`` in tests); a real one by default.
    :param plugin_manager: from ``make_plugin_manager()``; one that loads entry points by default.
    :param terminate_timeout: seconds a component may take to terminate before it is stopped
        forcibly and recorded as failed.
    :param liveness_delay: the ``sfLivenessDelay`` of components whose description and ancestors
        set none (0: no pings).
    :param properties: values for ``LAZY PROPERTY`` references resolved at run time.
    """
    manager = plugin_manager or make_plugin_manager()
    runtime = Runtime(
        clock=clock or RealClock(),
        plugin_manager=manager,
        component_types=collect_component_types(manager),
        host=host or socket.gethostname(),
        process=process,
        terminate_timeout=terminate_timeout,
        default_liveness_delay=liveness_delay,
        properties=properties or {},
    )
    system = System(runtime)
    try:
        yield system
    finally:
        system.close()


__all__ = ["ComponentFailed", "ComponentSpec", "System", "SystemStatistics", "open_system"]
