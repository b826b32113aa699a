"""HARestarter: keeps its children running across hosts, never two copies of one (policies/README.md)."""

from __future__ import annotations

import collections
import logging
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from sd_actors.actors import (
    ABNORMAL,
    DETACHED,
    Component,
    ComponentFailed,
    DeploymentError,
    Reaction,
    TerminationRecord,
)
from sd_actors.actors._remote import endpoint_of_host
from sd_actors.descriptions import ComponentDescription, to_sf
from sd_actors.plugins.hookspecs import hookimpl
from sd_actors.policies._high_availability import HA_GENERATION, HIGH_AVAILABILITY_KEY, HighAvailability
from sd_actors.policies._placement import RESERVATION_ATTRIBUTE
from sd_actors.policies._takeover import EPOCH_ATTRIBUTE, INCARNATION_ATTRIBUTE, Replica

if TYPE_CHECKING:
    from concurrent.futures import Future

    from sd_actors.actors import ComponentContext, ComponentRef, Timer
    from sd_actors.policies._ledger import ClaimOutcome

logger = logging.getLogger(__name__)

DEFAULT_INTENSITY: Final = 3
DEFAULT_PERIOD: Final = 60.0
DEFAULT_BACKOFF: Final = 0.0
DEFAULT_MAX_BACKOFF: Final = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Restart:
    """A child waiting to be deployed again."""

    generation: int
    unreachable: tuple[str, ...] = ()
    """Daemons (endpoints) that ran parts of it and did not answer that they no longer do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HARestarterStatistics:
    """A snapshot of an HARestarter (``ref.call(lambda r: r.statistics())``)."""

    running: Mapping[str, str]
    """Children that run, by name: the endpoint of the daemon running each ("" outside a daemon)."""
    waiting: Mapping[str, str]
    """Children waiting to be restarted, by name: what they wait for."""
    given_up: tuple[str, ...]
    """Children that failed more than ``intensity`` times within ``period``: not restarted again."""
    restarts: int
    """Restarts done since the HARestarter started."""
    taken_over_by: str = ""
    """The daemon that took this HARestarter over while its own was gone ("": none): this copy runs nothing."""


class HARestarter(Component):
    """Like a Compound, deploys its nested descriptions as its children; when one fails, or its host
    dies, it is deployed again, on another live host when its own is unreachable.

    A child that terminates normally (``sd-actors down``, a guest that shut itself down) is not
    restarted: that is what its user wanted. A child that failed more than ``intensity`` times in
    ``period`` seconds is given up: it stays in the tree in state failed, its record saying so, until
    the application is taken down and up again. Each restart waits ``backoff`` seconds, doubled for
    each recent failure, at most ``maxBackoff``.

    On a daemon, a restart is a claim the majority of the pool must grant, and a child whose host
    is unreachable is claimed only once that host's lease has run out (it has stopped the child
    itself by then): see policies/README.md for why no child ever runs twice.
    """

    has_children = True

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        self._intensity = DEFAULT_INTENSITY
        self._period = DEFAULT_PERIOD
        self._backoff = DEFAULT_BACKOFF
        self._max_backoff = DEFAULT_MAX_BACKOFF
        self._services: HighAvailability | None = None
        self._specs: dict[str, ComponentDescription] = {}
        self._running: dict[str, ComponentRef] = {}
        self._generations: dict[str, int] = {}
        self._pending: dict[str, _Restart] = {}
        self._waiting_for: dict[str, str] = {}
        self._failures: dict[str, collections.deque[float]] = {}
        self._given_up: list[str] = []
        self._restarts = 0
        self._timers: list[Timer] = []
        self._epoch = 0
        self._incarnation = ""
        self._taken_over_by = ""
        self._ended_elsewhere = False
        self._lost_at_takeover: dict[str, tuple[str, ...]] = {}
        self._said_waiting = False

    # -- lifecycle ---------------------------------------------------------------------------------------
    def create(self) -> None:
        services = self.context.shared(HIGH_AVAILABILITY_KEY, lambda: None)
        self._services = services if isinstance(services, HighAvailability) else None
        self._epoch = _whole(self.context, EPOCH_ATTRIBUTE, 0)
        self._incarnation = self._incarnation_of()
        children = {name: value for name, value in self.context.description.items()
                    if isinstance(value, ComponentDescription) and value.eager}
        if self._taken_over():
            # A daemon back after a survivor took this HARestarter over: its children are the new
            # one's. Not created here (left as data), so that none of them runs twice.
            for description in children.values():
                description.eager = False
            return
        # Before the runtime creates the children: each carries its generation (the one it had,
        # for a taken-over HARestarter), so that the daemon running it stops it when it loses its lease.
        self._specs = children
        for name, description in self._specs.items():
            generation = description.get(HA_GENERATION, 0)
            self._generations[name] = generation if isinstance(generation, int) else 0
            _mark(description, self._generations[name])
        if self._epoch > 0 and self._services is not None:
            # Taken over: a child with a part on a daemon that is gone too is not asked for there
            # (that would fail the takeover); it is restarted once this HARestarter has started.
            live = set(self._services.live_hosts())
            for name, description in self._specs.items():
                lost = tuple(sorted({host for host, _, _ in self._parts(name) if host not in live}))
                if lost:
                    self._lost_at_takeover[name] = lost
                    description.eager = False  # the runtime creates eager children only

    def _incarnation_of(self) -> str:
        """Which deployment of this HARestarter this is: a taker's description says; a daemon that
        re-deploys it after a restart kept it in its replica; a new ``sd-actors up`` makes one."""
        written = self.context.description.get(INCARNATION_ATTRIBUTE)
        if isinstance(written, str) and written:
            return written
        takeover = self._services.takeover if self._services is not None else None
        kept = takeover.replicas.get(self.context.path) if takeover is not None else None
        return kept.incarnation if kept is not None else uuid.uuid4().hex

    def _taken_over(self) -> bool:
        """Whether the pool took this HARestarter over since this copy's epoch (asked when this daemon
        holds a replica of it: it ran here before, and this daemon re-deploys it after a restart)."""
        services = self._services
        takeover = services.takeover if services is not None else None
        if services is None or takeover is None or takeover.replicas.get(self.context.path) is None:
            return False
        timeout = max(2 * services.peers.interval, 0.5)
        news = takeover.where_is(self.context.path, self._incarnation, timeout=timeout)
        while news is None or not services.holds_lease():
            # No answer is no news: only a majority of the pool holds a grantor of any takeover.
            # The children wait (none created) until one answers.
            if not self._said_waiting:
                self._said_waiting = True
                logger.warning("%s: its children wait until a majority of the pool (%d daemons) answers whether "
                               "it was taken over while this daemon was gone (and this daemon holds a lease)",
                               ":".join(self.context.path), len(takeover.electorate()))
            if not services.pause(services.retry_interval):
                return True  # the daemon stops: nothing created
            news = takeover.where_is(self.context.path, self._incarnation, timeout=timeout)
        newest = max(news.epoch, news.taken_over)
        if newest <= self._epoch or news.host == services.own_endpoint:
            return False
        self._taken_over_by = news.host if news.epoch == newest else "(taken down since)"
        self._ended_elsewhere = news.epoch < newest  # no daemon keeps a replica of the newest epoch: it ended
        logger.warning("%s was taken over by %s (epoch %d) while this daemon was gone: it is not deployed "
                       "again here", ":".join(self.context.path), self._taken_over_by, newest)
        return True

    def deploy(self) -> None:
        self._intensity = _whole(self.context, "intensity", DEFAULT_INTENSITY)
        self._period = _seconds(self.context, "period", DEFAULT_PERIOD, positive=True)
        self._backoff = _seconds(self.context, "backoff", DEFAULT_BACKOFF)
        self._max_backoff = _seconds(self.context, "maxBackoff", DEFAULT_MAX_BACKOFF)
        for name in self._lost_at_takeover:
            self._specs[name].eager = True
        self._running = {child.name: child for child in self.context.children}

    def start(self) -> None:
        if self._taken_over_by:
            if self._ended_elsewhere:  # taken down where it went: this application ends here too
                self.context.terminate_self(TerminationRecord.normal(
                    "its HARestarter was taken over while this daemon was gone, and taken down since",
                    self.context.path))
            return
        self._replicate()
        for name, hosts in self._lost_at_takeover.items():
            self._ended(name, self.context.record(
                ABNORMAL, f"its host{'s' if len(hosts) > 1 else ''} ({', '.join(hosts)}) did not answer when this "
                "HARestarter was taken over"), None)

    def terminate(self, record: TerminationRecord) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._pending.clear()
        takeover = self._services.takeover if self._services is not None else None
        if takeover is None:
            return
        if self._taken_over_by:
            if record.is_normal:  # sd-actors down here: where it went, it goes too
                takeover.forward_down(self.context.path[0], self.context.path)
        elif record.kind != DETACHED:  # a daemon that stops leaves it to be taken over
            takeover.forget(self.context.path, self._incarnation, self._epoch)

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        name = child.name
        if self._running.get(name) is not child:
            return Reaction.HANDLED  # old news: a child already replaced
        del self._running[name]
        if record.is_normal:
            logger.info("%s ended normally, as its user wanted: not restarted (%s)", child.name_text, record)
            return Reaction.HANDLED
        self._ended(name, record, child)
        return Reaction.HANDLED

    def statistics(self) -> HARestarterStatistics:
        """A frozen snapshot of what runs where, what waits and what was given up."""
        return HARestarterStatistics(
            running={name: self._host_of(ref.description) for name, ref in self._running.items()},
            waiting={name: self._waiting_for.get(name, "its backoff") for name in self._pending},
            given_up=tuple(self._given_up), restarts=self._restarts, taken_over_by=self._taken_over_by)

    def _replicate(self) -> None:
        """Send the pool what it takes to deploy this HARestarter again, as it is now (policies/_takeover.py)."""
        services = self._services
        if services is None or services.takeover is None:
            return
        path = self.context.path
        config = self.context.description.thaw()
        config.set(EPOCH_ATTRIBUTE, self._epoch)
        config.set(INCARNATION_ATTRIBUTE, self._incarnation)
        ancestor = self.context.parent
        while ancestor is not None and ancestor.path:
            # Ancestors as Compounds with their own attributes, so that inherited ones hold.
            holder = ancestor.description.thaw()
            for key, value in holder.items():
                if isinstance(value, ComponentDescription) and value.eager:
                    holder.remove(key)
            holder.set("sfClass", "sd_actors.actors.Compound")
            config.parent = holder
            holder.set(path[len(ancestor.path)], config)
            config, ancestor = holder, ancestor.parent
        services.takeover.replicate(Replica(app=path[0], path=path, host=services.own_endpoint, epoch=self._epoch,
                                            incarnation=self._incarnation, description=to_sf(config)))

    # -- restarting ----------------------------------------------------------------------------------------
    def _ended(self, name: str, record: TerminationRecord, child: ComponentRef | None) -> None:
        """Child ``name`` failed: restart it after its backoff, or give it up."""
        now = self.context.now()
        failures = self._failures.setdefault(name, collections.deque())
        while failures and failures[0] < now - self._period:
            failures.popleft()
        failures.append(now)
        if len(failures) > self._intensity:
            self._give_up(name, record, child)
            return
        generation = self._generations[name] + 1
        self._generations[name] = generation
        self._pending[name] = _Restart(generation=generation)
        delay = min(self._backoff * 2 ** (len(failures) - 1), self._max_backoff) if self._backoff > 0 else 0.0
        logger.warning("%s:%s failed (%s); restarting it as generation %d%s", ":".join(self.context.path), name,
                       record, generation, f" in {delay:g} s" if delay else "")
        self._later(delay, name)

    def _later(self, delay: float, name: str) -> None:
        if delay > 0:
            self._timers.append(self.context.call_later(delay, lambda: self._restart(name)))
        else:
            self.context.call_soon(lambda: self._restart(name))

    def _restart(self, name: str) -> None:
        pending = self._pending.get(name)
        if pending is None or self.context.termination_requested:
            return
        services = self._services
        if services is None:
            self._deploy(name, pending)
            return
        # Asking the pool takes round trips (and a timeout for a dead host): never in this actor's
        # thread, which must keep answering its parent's pings.
        path = (*self.context.path, name)
        parts = [(host, part_path) for host, part_path, _ in self._parts(name) if host != services.own_endpoint]

        def ask_pool() -> None:
            unreachable: set[str] = set()
            for host, part_path in parts:  # each daemon that ran a part stops it, or says it is gone
                if host not in unreachable and not services.confirm_gone(host, part_path):
                    unreachable.add(host)
            asked = replace(pending, unreachable=tuple(sorted(unreachable)))
            outcome = services.claim(path, asked.generation, asked.unreachable, restarter=self.context.path,
                                     incarnation=self._incarnation, epoch=self._epoch)
            self.context.call_soon(lambda: self._answered(name, asked, outcome))

        threading.Thread(target=ask_pool, name=f"sd-actors-claim-{name}", daemon=True).start()

    def _answered(self, name: str, pending: _Restart, outcome: ClaimOutcome) -> None:
        current = self._pending.get(name)
        if current is None or current.generation != pending.generation or self.context.termination_requested:
            return
        self._pending[name] = pending
        services = self._services
        assert services is not None
        replica = services.takeover.replicas.get(self.context.path) if services.takeover is not None else None
        if not outcome.won and replica is not None and replica.incarnation == self._incarnation and (
                replica.epoch > self._epoch):
            # A survivor took this HARestarter over while this daemon was cut off: the children are its.
            logger.warning("%s was taken over by %s (epoch %d): this copy restarts nothing any more",
                           ":".join(self.context.path), replica.host, replica.epoch)
            self._taken_over_by = replica.host
            self._pending.clear()
            self._waiting_for.clear()
            return
        if not outcome.won:
            # Said once per wait (a cut-off daemon asks again every heartbeat interval until it heals).
            log = logger.debug if name in self._waiting_for else logger.info
            self._waiting_for[name] = f"the pool's grant ({outcome})"
            log("%s:%s: restart of generation %d %s; asking again", ":".join(self.context.path), name,
                pending.generation, outcome)
            self._timers.append(self.context.call_later(services.retry_interval, lambda: self._restart(name)))
            return
        logger.info("%s:%s: the pool granted generation %d (%s)", ":".join(self.context.path), name,
                    pending.generation, outcome)
        for host, path, part in self._parts(name):
            if host not in pending.unreachable:
                continue  # its daemon answered: it stays there
            if RESERVATION_ATTRIBUTE in part:
                # A Schedulee placed it: without a host it is placed again, by its Scheduler's rules,
                # over the hosts that Scheduler sees alive.
                part.remove("sfProcessHost")
                part.remove(RESERVATION_ATTRIBUTE)
            else:
                part.set("sfProcessHost", self._choose_host(host, path, set(pending.unreachable), services))
        self._deploy(name, pending)

    def _deploy(self, name: str, pending: _Restart) -> None:
        description = self._specs[name]
        _mark(description, pending.generation)
        self._replicate()  # the new generation, and where its parts run now
        del self._pending[name]
        self._waiting_for.pop(name, None)
        self._restarts += 1
        deployed = self.context.deploy_child_nowait(name, description)  # remote steps take round trips too
        deployed.add_done_callback(lambda _: self.context.call_soon(lambda: self._deployed(name, deployed)))

    def _deployed(self, name: str, deployed: Future[ComponentRef]) -> None:
        try:
            child = deployed.result()
        except ComponentFailed as failure:
            # A restart that fails counts as another failure of that child, where it was tried.
            self._ended(name, failure.record, None)
            return
        if child.state is None or not child.state.is_final:
            self._running[name] = child  # its end, even one under way, is reported to child_terminated
        elif child.record is not None and not child.record.is_normal:
            # It failed before this callback ran, and child_terminated took that for old news.
            self._ended(name, child.record, child)

    def _choose_host(self, lost_host: str, path: tuple[str, ...], avoid: set[str],
                     services: HighAvailability) -> str:
        """Where a part whose host is gone moves: the decision hook ``sd_actors_evacuate_to``."""
        live = services.live_hosts()
        candidates = tuple(host for host in live if host not in avoid) or live
        load = dict(collections.Counter(self._host_of(ref.description) for ref in self._running.values()))
        chosen = self.context.hook.sd_actors_evacuate_to(restarter=self.context.ref, path=path, lost_host=lost_host,
                                            candidates=candidates, load=load)
        if chosen not in candidates:
            logger.warning("%s: a plugin chose %r to take %s, which is not among %s; choosing the default",
                           ":".join(self.context.path), chosen, ":".join(path), ", ".join(candidates))
            chosen = fewest_children(candidates, load)
        return str(chosen)

    def _parts(self, name: str) -> list[tuple[str, tuple[str, ...], ComponentDescription]]:
        """Child ``name`` and each part of it another daemon runs: (daemon endpoint, path, description)
        for every description whose ``sfProcessHost`` differs from its parent's."""
        parts: list[tuple[str, tuple[str, ...], ComponentDescription]] = []

        def walk(description: ComponentDescription, path: tuple[str, ...], parent_host: str) -> None:
            host = self._host_of(description) if "sfProcessHost" in description else parent_host
            if host != parent_host or not parts:
                parts.append((host, path, description))
            for key, value in description.items():
                if isinstance(value, ComponentDescription) and value.eager:
                    walk(value, (*path, key), host)

        walk(self._specs[name], (*self.context.path, name), self._host_of(self.context.description))
        return parts

    def _give_up(self, name: str, record: TerminationRecord, child: ComponentRef | None) -> None:
        self._given_up.append(name)
        self._pending.pop(name, None)
        given_up = self.context.record(
            ABNORMAL, f"HARestarter gave up on {name!r}: it failed {len(self._failures[name])} times within "
            f"{self._period:g} s (intensity {self._intensity}); bring the application down and up again to retry",
            str(record))
        logger.error("%s", given_up)
        if child is None:
            # A restart that failed: its component is in the System's books, not among the children.
            # (ComponentContext offers no lookup; reported.)
            child = self.context._runtime.components.get((*self.context.path, name))
        if child is not None:
            shown = child
            shown.record = TerminationRecord(given_up.kind, given_up.description, shown.path, given_up.cause)
            # The runtime dropped it from the children; put it back, after any pending removal, so
            # `sd-actors status` shows it failed with this record (sticky until down).
            self.context.call_soon(lambda: None if shown in self.context.ref.children
                                   else self.context.ref.children.append(shown))

    def _host_of(self, description: ComponentDescription) -> str:
        """The endpoint of the daemon a description's ``sfProcessHost`` names, this one's when it names
        none ("" outside a daemon)."""
        if self._services is None:
            return ""
        host = description.get("sfProcessHost")
        if not isinstance(host, str) or not host or self._services.is_this_host(host):
            return self._services.own_endpoint
        return endpoint_of_host(host)


def _mark(description: ComponentDescription, generation: int) -> None:
    """Give ``description`` and every component nested in it this ``haGeneration``: wherever a part
    of it runs, that daemon stops it when it loses its lease."""
    description.set(HA_GENERATION, generation)
    for value in description.values():
        if isinstance(value, ComponentDescription) and value.eager:
            _mark(value, generation)


def _whole(context: ComponentContext, name: str, default: int) -> int:
    value = context.typed_attribute(name, int, default)
    assert isinstance(value, int)
    if value < 0:
        raise DeploymentError(f"{':'.join(context.path)}: attribute {name!r} is {value}; it must be 0 or more")
    return value


def _seconds(context: ComponentContext, name: str, default: float, *, positive: bool = False) -> float:
    value = context.typed_attribute(name, (int, float), default)
    assert isinstance(value, int | float)
    if value < 0 or (positive and value == 0):
        wanted = "more than 0" if positive else "0 or more"
        raise DeploymentError(f"{':'.join(context.path)}: attribute {name!r} is {value:g} seconds; it must be "
                              f"{wanted}")
    return float(value)


def fewest_children(candidates: Sequence[str], load: Mapping[str, int]) -> str:
    """The candidate that runs the fewest of an HARestarter's children (the first by address on a tie)."""
    return min(candidates, key=lambda host: (load.get(host, 0), host))


@hookimpl(trylast=True)
def sd_actors_evacuate_to(restarter: ComponentRef, path: tuple[str, ...], lost_host: str,
                          candidates: Sequence[str], load: Mapping[str, int]) -> str:
    return fewest_children(candidates, load)


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"sd_actors.policies.HARestarter": HARestarter}
