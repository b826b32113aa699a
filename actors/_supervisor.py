"""Supervisor: OTP's restart strategies over a component's children, with intensity limits and backoff."""

from __future__ import annotations

import collections
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

from sd_actors.actors._component import Component, Reaction
from sd_actors.actors._errors import ComponentFailed, DeploymentError
from sd_actors.actors._records import ABNORMAL, NORMAL, TerminationRecord
from sd_actors.descriptions import ComponentDescription
from sd_actors.plugins.hookspecs import hookimpl

if TYPE_CHECKING:
    from sd_actors.actors._clock import Timer
    from sd_actors.actors._component import ComponentContext
    from sd_actors.actors._runtime import ComponentRef

_Choice = TypeVar("_Choice", bound=enum.Enum)


class Strategy(enum.Enum):
    """Which children a Supervisor restarts when one of them must be restarted (OTP's names)."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that terminated."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are terminated (in reverse order), then all are deployed again in order."""
    REST_FOR_ONE = "rest_for_one"
    """The child that terminated and every child defined after it."""


class Restart(enum.Enum):
    """When a child is restarted: the ``restart`` attribute of its description (OTP's names)."""

    PERMANENT = "permanent"
    """Always, however it terminated."""
    TRANSIENT = "transient"
    """Only after an abnormal termination (any record kind but ``normal``)."""
    TEMPORARY = "temporary"
    """Never, not even when a sibling's restart terminated it."""


DEFAULT_STRATEGY: Final = Strategy.ONE_FOR_ONE
DEFAULT_INTENSITY: Final = 3
DEFAULT_PERIOD: Final = 5.0
DEFAULT_BACKOFF: Final = 0.0
DEFAULT_MAX_BACKOFF: Final = 60.0


@dataclass(frozen=True, slots=True)
class _ChildSpec:
    name: str
    description: ComponentDescription
    restart: Restart


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorStatistics:
    """A snapshot of a Supervisor: what runs, what waits for its restart, how often it restarted."""

    running: tuple[str, ...]
    """Names of the children that run, in definition order."""
    waiting: tuple[str, ...]
    """Names of the children whose restart waits for its backoff to pass, in definition order."""
    restarts: int
    """Restarts since the Supervisor started (a restart of several children counts once)."""
    recent_restarts: int
    """Restarts within the last ``period`` seconds: more than ``intensity`` escalates."""


class Supervisor(Component):
    """Keeps its children running: Erlang/OTP's supervisor as an sd-actors component.

    Like a Compound, its eager nested descriptions are its children, created, deployed and
    started with it in definition order. Unlike a Compound it does not share their fate: when a
    child terminates (by itself, or because it failed a liveness check), its ``restart``
    attribute (``permanent``, the default; ``transient``; ``temporary``) says whether it is
    restarted, and the ``strategy`` attribute which siblings are restarted with it. Restarting
    terminates the affected siblings in reverse definition order, then deploys every affected
    child again from its description, under the same name, in definition order (temporary
    siblings are terminated and not deployed again).

    ``intensity`` restarts within ``period`` seconds of the System's clock are allowed; the next
    one escalates: the Supervisor terminates abnormally with a record naming the child, and its
    parent reacts (a Compound shares that fate, a Supervisor restarts it). With ``backoff`` > 0
    each restart waits ``backoff`` seconds, doubled for every restart still within ``period``,
    at most ``maxBackoff``.
    """

    has_children = True

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._strategy = DEFAULT_STRATEGY
        self._intensity = DEFAULT_INTENSITY
        self._period = DEFAULT_PERIOD
        self._backoff = DEFAULT_BACKOFF
        self._max_backoff = DEFAULT_MAX_BACKOFF
        self._specs: list[_ChildSpec] = []
        self._running: dict[str, ComponentRef] = {}
        self._waiting: dict[str, float] = {}
        """Children to deploy again, by name: the clock time from which they may be."""
        self._recent: collections.deque[float] = collections.deque()
        self._restarts = 0
        self._timers: dict[float, Timer] = {}
        """Pending calls of _deploy_due, by the clock time they are due."""
        self._escalated = False

    # -- lifecycle -----------------------------------------------------------------------------------
    def deploy(self) -> None:
        context, path = self.context, self.context.path
        self._strategy = _choice(path, "strategy", context.typed_attribute("strategy", str, DEFAULT_STRATEGY.value),
                                 Strategy)
        self._intensity = _count(path, "intensity", context.typed_attribute("intensity", int, DEFAULT_INTENSITY))
        self._period = _seconds(path, "period", context.typed_attribute("period", (int, float), DEFAULT_PERIOD),
                                positive=True)
        self._backoff = _seconds(path, "backoff", context.typed_attribute("backoff", (int, float), DEFAULT_BACKOFF))
        self._max_backoff = _seconds(path, "maxBackoff",
                                     context.typed_attribute("maxBackoff", (int, float), DEFAULT_MAX_BACKOFF))
        # The same test the runtime uses to create the children: eager nested descriptions.
        self._specs = [
            _ChildSpec(name, value, _choice((*path, name), "restart", value.get("restart", "permanent"), Restart))
            for name, value in context.description.items()
            if isinstance(value, ComponentDescription) and value.eager
        ]
        self._running = {child.name: child for child in context.children}

    def terminate(self, record: TerminationRecord) -> None:
        self._cancel_timers()

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        if self._escalated or self._running.get(child.name) is not child:
            # Old news (a child this Supervisor already terminated or replaced while restarting),
            # or the Supervisor is on its way out and its termination takes the children along.
            return Reaction.HANDLED
        self._child_ended(child.name, record)
        self._deploy_due()
        return Reaction.HANDLED

    def statistics(self) -> SupervisorStatistics:
        """A frozen snapshot; call it through ``ref.call(lambda s: s.statistics())``."""
        self._forget_old_restarts(self._now())
        return SupervisorStatistics(
            running=tuple(s.name for s in self._specs if s.name in self._running),
            waiting=tuple(s.name for s in self._specs if s.name in self._waiting),
            restarts=self._restarts,
            recent_restarts=len(self._recent),
        )

    # -- restarting ------------------------------------------------------------------------------------
    def _child_ended(self, name: str, record: TerminationRecord) -> None:
        """Child ``name`` is gone (``record`` says why): restart what the strategy says, or escalate."""
        self._running.pop(name, None)
        spec = self._spec(name)
        if not _should_restart(spec.restart, record):
            return
        now = self._now()
        self._forget_old_restarts(now)
        self._recent.append(now)
        if len(self._recent) > self._intensity:
            self._escalate(name, record)
            return
        self._restarts += 1
        delay = 0.0
        if self._backoff > 0:
            delay = min(self._backoff * 2 ** (len(self._recent) - 1), self._max_backoff)
        affected = self._affected(name)
        cause = f"restarting after {':'.join(self.context.path)}:{name} ended ({self._strategy.value})"
        for sibling in reversed(affected):
            ref = self._running.pop(sibling.name, None) if sibling.name != name else None
            if ref is not None:
                self.context.terminate_child(ref, self.context.record(NORMAL, cause))
        for sibling in affected:
            if sibling.name == name or sibling.restart is not Restart.TEMPORARY:
                self._waiting[sibling.name] = max(self._waiting.get(sibling.name, now), now + delay)
        if delay > 0 and now + delay not in self._timers:
            self._timers[now + delay] = self.context.call_later(delay, self._deploy_due)

    def _deploy_due(self) -> None:
        """Deploy, in definition order, every waiting child whose backoff has passed."""
        for due_time in [t for t in self._timers if t <= self._now()]:
            del self._timers[due_time]
        while not self._escalated and self.context.ref.alive:
            now = self._now()
            due = next((s for s in self._specs if self._waiting.get(s.name, now + 1) <= now), None)
            if due is None:
                return
            del self._waiting[due.name]
            try:
                self._running[due.name] = self.context.deploy_child(due.name, due.description)
            except ComponentFailed as failure:
                # A restart that fails counts as another termination of that child.
                self._child_ended(due.name, failure.record)
            self._keep_definition_order()

    def _escalate(self, name: str, record: TerminationRecord) -> None:
        self._escalated = True
        self._waiting.clear()
        self._cancel_timers()
        self.context.terminate_self(self.context.record(
            ABNORMAL,
            f"child {name!r} needed more than {self._intensity} restarts in {self._period:g} s "
            f"(intensity {self._intensity}, period {self._period:g}): escalating",
            str(record)))

    def _cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _affected(self, name: str) -> list[_ChildSpec]:
        match self._strategy:
            case Strategy.ONE_FOR_ONE:
                return [self._spec(name)]
            case Strategy.ONE_FOR_ALL:
                return list(self._specs)
            case Strategy.REST_FOR_ONE:
                index = next(i for i, s in enumerate(self._specs) if s.name == name)
                return self._specs[index:]

    def _keep_definition_order(self) -> None:
        # A restarted child is appended to the runtime's list of children; put it back in its
        # place so the Supervisor's own termination still goes in reverse definition order.
        # (Runs in the Supervisor's actor thread, the only one that changes its children.)
        order = {spec.name: index for index, spec in enumerate(self._specs)}
        children = self.context.ref.children
        current = [c for c in children if self._running.get(c.name) is c]
        children[:] = sorted(current, key=lambda c: order[c.name])

    def _forget_old_restarts(self, now: float) -> None:
        while self._recent and self._recent[0] < now - self._period:
            self._recent.popleft()

    def _spec(self, name: str) -> _ChildSpec:
        return next(s for s in self._specs if s.name == name)

    def _now(self) -> float:
        # The System's clock (a FakeClock in tests). ComponentContext does not offer it yet: reported.
        return float(self.context._runtime.clock.now())


def _should_restart(restart: Restart, record: TerminationRecord) -> bool:
    match restart:
        case Restart.PERMANENT:
            return True
        case Restart.TRANSIENT:
            return not record.is_normal
        case Restart.TEMPORARY:
            return False


def _choice(path: tuple[str, ...], name: str, value: object, kind: type[_Choice]) -> _Choice:
    for member in kind:
        if member.value == value:
            return member
    known = ", ".join(repr(m.value) for m in kind)
    raise DeploymentError(f"{':'.join(path)}: attribute {name!r} is {value!r}; it must be one of {known}")


def _count(path: tuple[str, ...], name: str, value: object) -> int:
    assert isinstance(value, int)
    if value < 0:
        raise DeploymentError(f"{':'.join(path)}: attribute {name!r} is {value}; it must be 0 or more")
    return value


def _seconds(path: tuple[str, ...], name: str, value: object, *, positive: bool = False) -> float:
    assert isinstance(value, int | float)
    if value < 0 or (positive and value == 0):
        wanted = "more than 0" if positive else "0 or more"
        raise DeploymentError(f"{':'.join(path)}: attribute {name!r} is {value:g} seconds; it must be {wanted}")
    return float(value)


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"sd_actors.actors.Supervisor": Supervisor}
