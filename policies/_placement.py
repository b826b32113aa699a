"""Placement: what a host has, which hosts a machine fits (filters), which fits best (weighers), and
the reservations each host's daemon takes before a machine is created there.

A reservation is taken by the daemon of the host that will run the machine, under one lock,
after checking that it still fits: two schedulers placing at the same time (two ``sd-actors up``
on two hosts) can both choose a host, but only the reservations that fit are granted, so a host
is never overbooked. A reservation ends when the component it was taken for ends on that host
(its final lifecycle event), when it is released, or, if no component ever claimed it (the
deployment failed before creating it, the placing daemon died), after ``UNCLAIMED_TTL`` seconds.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

import libvirt

from sd_actors.actors import DeploymentError, LifecycleEvent, State
from sd_actors.descriptions import ComponentDescription
from sd_actors.net._peer_protocol import (
    GetCapacity,
    HostCapacityInfo,
    ReleaseCapacity,
    ReservationReply,
    ReserveCapacity,
)
from sd_actors.net._protocol import Done, RequestFailed

if TYPE_CHECKING:
    from sd_actors.actors import ComponentRef
    from sd_actors.actors._runtime import Runtime

logger = logging.getLogger(__name__)

RESERVATION_ATTRIBUTE: Final = "sdReservation"
"""Attribute a Schedulee writes into each child it placed: the token of the child's reservation."""
UNCLAIMED_TTL: Final = 60.0
"""Seconds a reservation waits for its component to be created on the host before it lapses."""
BUILTIN_POLICIES: Final = ("spread", "pack", "fewestVMs")
"""``spread``: most free memory first; ``pack``: least free memory that fits first (fills hosts);
``fewestVMs``: fewest machines first. Ties go to the host listed first."""


class PolicyError(DeploymentError):
    """A policy cannot do what it was asked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementRequest:
    """One component to place, and what it needs."""

    name: str
    """Its complete name (``app:vms:vm1``), for messages."""
    memory_mib: int
    vcpus: int
    domain_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HostCapacity:
    """A host as a placement sees it: what it has, what is used or reserved."""

    host: str
    """The name the Scheduler's ``hosts`` gives it (what ``sfProcessHost`` becomes)."""
    memory_mib: int
    vcpus: int
    used_memory_mib: int
    used_vcpus: int
    vms: int

    @property
    def free_memory_mib(self) -> int:
        return self.memory_mib - self.used_memory_mib

    def with_request(self, request: PlacementRequest, sign: int = 1) -> HostCapacity:
        """This host once ``request`` runs on it (``sign`` -1: once it left)."""
        return replace(self, used_memory_mib=self.used_memory_mib + sign * request.memory_mib,
                       used_vcpus=self.used_vcpus + sign * request.vcpus, vms=self.vms + sign)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """A Scheduler's rules beyond memory: machines per host (0: no limit), virtual CPUs per CPU."""

    max_vms: int = 0
    vcpu_ratio: float = 4.0


def unfit_reason(request: PlacementRequest, host: HostCapacity, limits: Limits) -> str | None:
    """Why ``request`` does not fit on ``host`` (the first filter that removes it), or None if it fits."""
    if request.memory_mib > host.free_memory_mib:
        return f"free memory {host.free_memory_mib} MiB < {request.memory_mib}"
    allowed = int(host.vcpus * limits.vcpu_ratio)
    if host.used_vcpus + request.vcpus > allowed:
        return (f"free vcpus {allowed - host.used_vcpus} < {request.vcpus} ({host.vcpus} CPUs × vcpuRatio "
                f"{limits.vcpu_ratio:g})")
    if limits.max_vms and host.vms >= limits.max_vms:
        return f"VM count {host.vms} = max {limits.max_vms}"
    return None


def weigh(policy: str, hosts: Sequence[HostCapacity]) -> list[HostCapacity] | None:
    """``hosts`` best first by a built-in ``policy``; None for a policy that is not built in."""
    order = {id(host): index for index, host in enumerate(hosts)}
    keys: Mapping[str, Callable[[HostCapacity], tuple[int, ...]]] = {
        "spread": lambda h: (-h.free_memory_mib, h.vms, order[id(h)]),
        "pack": lambda h: (h.free_memory_mib, -h.vms, order[id(h)]),
        "fewestVMs": lambda h: (h.vms, -h.free_memory_mib, order[id(h)]),
    }
    key = keys.get(policy)
    return None if key is None else sorted(hosts, key=key)


class NoHostFits(PolicyError):
    """No host can take a component: ``reasons`` says, per host, which rule removed it."""

    def __init__(self, request: PlacementRequest, reasons: Mapping[str, str]) -> None:
        self.request = request
        self.reasons = dict(reasons)
        given = "; ".join(f"{host}: {reason}" for host, reason in reasons.items()) or "the Scheduler has no hosts"
        super().__init__(f"no host fits {request.name} (memory {request.memory_mib} MiB, {request.vcpus} vcpus): "
                         f"{given}")


# -- the reservations of one host, kept by its daemon (or by an embedding System) ---------------------
@dataclass(slots=True)
class _Reservation:
    path: tuple[str, ...]
    request: PlacementRequest
    since: float
    claimed: bool = False


class HostLedger:
    """This host's capacity and the reservations taken on it; one per System (see :func:`host_ledger`).

    Capacity comes from the System's hypervisor (``sd_actors.hypervisor``, as for VMs): its memory
    and CPUs; what is used is every reservation plus the running domains no reservation covers
    (machines started by other means).
    """

    def __init__(self, runtime: Runtime, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._clock = clock
        self._lock = threading.Lock()
        self._reservations: dict[str, _Reservation] = {}
        self._unsubscribe = runtime.bus.subscribe(self._on_event)
        with runtime.changed:  # made after a daemon restarted: what already runs here counts too
            running = [ref for ref in runtime.components.values() if ref.alive]
        for ref in running:
            self._count(ref, ended=False)

    # -- what the wire asks ---------------------------------------------------------------------------
    def answer(self, message: object) -> object:
        """The reply to a GetCapacity, ReserveCapacity or ReleaseCapacity request."""
        try:
            match message:
                case GetCapacity(components=components, domain_names=domain_names):
                    running = self.running(tuple(zip(components, domain_names, strict=True)))
                    return _info(self.capacity(""), running)
                case ReserveCapacity():
                    request = PlacementRequest(name=":".join(message.path), memory_mib=message.memory_mib,
                                               vcpus=message.vcpus, domain_name=message.domain_name)
                    token, refused, capacity = self.reserve(
                        message.path, request, Limits(max_vms=message.max_vms, vcpu_ratio=message.vcpu_ratio),
                        existing=message.existing)
                    return ReservationReply(capacity=_info(capacity), token=token or "", refused=refused or "")
                case ReleaseCapacity(token=token):
                    self.release(token)
                    return Done()
        except DeploymentError as error:
            return RequestFailed(error=str(error))
        return RequestFailed(error=f"{type(message).__name__} is not a capacity request")

    # -- capacity and reservations ----------------------------------------------------------------------
    def capacity(self, host: str) -> HostCapacity:
        """What this host has and what is used or reserved, named ``host``."""
        with self._lock:
            return self._capacity(host)

    def reserve(self, path: tuple[str, ...], request: PlacementRequest, limits: Limits, *, existing: bool = False
                ) -> tuple[str | None, str | None, HostCapacity]:
        """Take a reservation if ``request`` fits: (token, None, capacity after) or (None, why not, capacity).

        ``existing``: the component already runs here (see :meth:`running`); it is not checked again.
        """
        with self._lock:
            capacity = self._capacity("")
            refused = None if existing else unfit_reason(request, capacity, limits)
            if refused is not None:
                return None, refused, capacity
            token = uuid.uuid4().hex
            self._reservations[token] = _Reservation(path, request, self._clock())
            return token, None, capacity.with_request(request)

    def running(self, components: Sequence[tuple[str, str]]) -> tuple[str, ...]:
        """Which of ``components`` (complete name, domain name) already run here: their domain is
        active and its sd-actors metadata names that component (a daemon that restarted left it)."""
        from sd_actors.plugins import HypervisorError, hypervisor_connection
        from sd_actors.plugins._domain_xml import read_owner

        if not any(domain for _, domain in components):
            return ()
        try:
            connection = hypervisor_connection(self._runtime, self._hypervisor())
        except HypervisorError:
            return ()
        found = []
        for component, domain_name in components:
            try:
                domain = connection.lookupByName(domain_name)
                owner = read_owner(domain.XMLDesc()) if domain.isActive() else None
            except libvirt.libvirtError:
                continue  # not here
            if owner is not None and owner.component == component:
                found.append(component)
        return tuple(found)

    def release(self, token: str) -> None:
        with self._lock:
            self._reservations.pop(token, None)

    def reservations(self) -> dict[str, tuple[str, ...]]:
        """The reservations held: token → the path of the component it is for."""
        with self._lock:
            self._expire()
            return {token: reservation.path for token, reservation in self._reservations.items()}

    def close(self) -> None:
        self._unsubscribe()

    def _capacity(self, host: str) -> HostCapacity:
        from sd_actors.plugins import HypervisorError, hypervisor_capacity, hypervisor_connection

        self._expire()
        uri = self._hypervisor()
        try:
            connection = hypervisor_connection(self._runtime, uri)
            hypervisor = hypervisor_capacity(connection)
            covered = _running_domains(connection, {r.request.domain_name for r in self._reservations.values()})
        except HypervisorError as error:
            raise PolicyError(f"the capacity of this host is unknown: {error}") from error
        reserved = [r.request for r in self._reservations.values()]
        return HostCapacity(
            host=host, memory_mib=hypervisor.memory_mib, vcpus=hypervisor.vcpus,
            used_memory_mib=sum(r.memory_mib for r in reserved) + hypervisor.vm_memory_mib - covered[0],
            used_vcpus=sum(r.vcpus for r in reserved) + hypervisor.vm_vcpus - covered[1],
            vms=len(reserved) + hypervisor.running_vms - covered[2])

    def _hypervisor(self) -> str:
        from sd_actors.plugins._vm import DEFAULT_HYPERVISOR, HYPERVISOR_ENVIRONMENT, HYPERVISOR_PROPERTY

        return (self._runtime.properties.get(HYPERVISOR_PROPERTY) or os.environ.get(HYPERVISOR_ENVIRONMENT)
                or DEFAULT_HYPERVISOR)

    def _expire(self) -> None:
        limit = self._clock() - UNCLAIMED_TTL
        for token in [t for t, r in self._reservations.items() if not r.claimed and r.since < limit]:
            logger.warning("reservation for %s lapsed: no component claimed it within %g s",
                           ":".join(self._reservations[token].path), UNCLAIMED_TTL)
            del self._reservations[token]

    # -- the components the reservations are for --------------------------------------------------------
    def _on_event(self, event: LifecycleEvent) -> None:
        if event.host != self._runtime.host or (event.new is not State.CREATED and not event.new.is_final):
            return  # another daemon's event passed on for its parent here, or a step that changes nothing
        ref = self._runtime.components.get(event.path)
        if ref is not None:
            self._count(ref, ended=event.new.is_final)

    def _count(self, ref: ComponentRef, *, ended: bool) -> None:
        """A component of this host that carries a reservation token was created or has ended."""
        from sd_actors.actors._remote import RemoteComponent

        token = ref.description.get(RESERVATION_ATTRIBUTE)
        if not isinstance(token, str) or isinstance(ref.component, RemoteComponent):
            return  # a stand-in for a component another host runs: that host holds the reservation
        with self._lock:
            reservation = self._reservations.get(token)
            if ended:
                self._reservations.pop(token, None)
            elif reservation is not None:
                reservation.claimed = True
            else:  # created with a token this ledger never gave out (its daemon restarted): count it again
                request = request_of(ref.description, ref.name_text)
                self._reservations[token] = _Reservation(ref.path, request, self._clock(), claimed=True)


def request_of(description: ComponentDescription, name: str) -> PlacementRequest:
    """What the component described by ``description`` needs: its ``memory`` (MiB) and ``vcpus``."""
    values = {}
    for attribute, default in (("memory", 0), ("vcpus", 0)):
        value = description.get(attribute, default)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"{name}: {attribute} is {value!r}; a Scheduler places by whole numbers: give e.g. "
                              f"{attribute} {512 if attribute == 'memory' else 1};")
        values[attribute] = value
    domain_name = description.get("domainName", "")
    return PlacementRequest(name=name, memory_mib=values["memory"], vcpus=values["vcpus"],
                            domain_name=domain_name if isinstance(domain_name, str) else "")


def host_ledger(runtime: Runtime) -> HostLedger:
    """The System's one ledger (made on first use, closed with the System)."""
    ledger = runtime.shared(HostLedger, lambda: HostLedger(runtime))
    assert isinstance(ledger, HostLedger)
    return ledger


def _running_domains(connection: libvirt.virConnect, names: set[str]) -> tuple[int, int, int]:
    """Memory (MiB), vcpus and count of the running domains among ``names`` (covered by reservations)."""
    memory_kib = vcpus = count = 0
    for name in names - {""}:
        try:
            domain = connection.lookupByName(name)
            if not domain.isActive():
                continue
            _state, _max_kib, current_kib, domain_vcpus, _cpu_time = domain.info()
        except libvirt.libvirtError:
            continue  # not defined (yet, or any more): it takes nothing beyond its reservation
        memory_kib += current_kib
        vcpus += domain_vcpus
        count += 1
    return memory_kib // 1024, vcpus, count


def _info(capacity: HostCapacity, running: tuple[str, ...] = ()) -> HostCapacityInfo:
    return HostCapacityInfo(memory_mib=capacity.memory_mib, vcpus=capacity.vcpus,
                            used_memory_mib=capacity.used_memory_mib, used_vcpus=capacity.used_vcpus,
                            vms=capacity.vms, running=running)


def capacity_of(info: HostCapacityInfo, host: str) -> HostCapacity:
    return HostCapacity(host=host, memory_mib=info.memory_mib, vcpus=info.vcpus,
                        used_memory_mib=info.used_memory_mib, used_vcpus=info.used_vcpus, vms=info.vms)
