"""Scheduler and Schedulee (the 2007 slide): a Schedulee's children are placed on live hosts by a Scheduler.

``simpleScheduler extends Scheduler { hosts [|"host1", "host2", "host3"|]; }`` names the hosts;
``vms extends Schedulee { scheduler LAZY ATTRIB simpleScheduler; … }`` asks it, before its
children are created, to give each child without an ``sfProcessHost`` one: the Scheduler keeps
the hosts its daemon's membership sees alive, filters out those where the child does not fit,
weighs the rest (``sd_actors_place``: the ``policy``), and has the chosen host's daemon reserve
the room. The daemon's ``sfProcessHost`` placement then creates the child there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final

from sd_actors.actors import (
    DETACHED,
    Component,
    ComponentFailed,
    ComponentRef,
    Compound,
    DeploymentError,
    TerminationRecord,
)
from sd_actors.actors._remote import Peers, RemoteComponent, endpoint_of_host
from sd_actors.descriptions import ComponentDescription
from sd_actors.net._peer_protocol import (
    GetCapacity,
    HostCapacityInfo,
    ReleaseCapacity,
    ReservationReply,
    ReserveCapacity,
)
from sd_actors.net._protocol import RequestFailed
from sd_actors.plugins.hookspecs import hookimpl
from sd_actors.policies._placement import (
    RESERVATION_ATTRIBUTE,
    HostCapacity,
    Limits,
    NoHostFits,
    PlacementRequest,
    PolicyError,
    capacity_of,
    host_ledger,
    request_of,
    unfit_reason,
    weigh,
)

ASK_TIMEOUT: Final = 3.0
"""Seconds another host's daemon has to answer a capacity question or a reservation."""
_OWN_NAMES: Final = ("localhost", "127.0.0.1")


class Scheduler(Component):
    """Places components over the live hosts of ``hosts`` (all the pool's live hosts if empty).

    Attributes: ``hosts`` (a vector of host names as ``sfProcessHost`` takes them), ``policy``
    (``spread``, ``pack``, ``fewestVMs`` or one a plugin brings), ``maxVMsPerHost`` (0: no
    limit), ``vcpuRatio`` (virtual CPUs a host CPU may carry). Its public methods are what
    Schedulees and LoadBalancers ask of it.
    """

    def create(self) -> None:
        context = self.context
        hosts = context.attribute("hosts", ())
        if isinstance(hosts, str) or not isinstance(hosts, Sequence) or not all(isinstance(h, str) and h
                                                                                for h in hosts):
            raise PolicyError(f"{context.ref.name_text}: hosts is {hosts!r}; give a vector of host names, e.g. "
                              'hosts [|"host1", "host2"|]; (empty: every host that is up)')
        policy = context.typed_attribute("policy", str, "spread")
        max_vms = context.typed_attribute("maxVMsPerHost", int, 0)
        ratio = context.typed_attribute("vcpuRatio", (int, float), 4)
        assert isinstance(policy, str)
        assert isinstance(max_vms, int)
        assert isinstance(ratio, int | float)
        if max_vms < 0 or ratio <= 0:
            raise PolicyError(f"{context.ref.name_text}: maxVMsPerHost must be 0 (no limit) or more and vcpuRatio "
                              f"above 0; found {max_vms} and {ratio}")
        self.hosts = tuple(hosts)
        self.policy = policy
        self.limits = Limits(max_vms=max_vms, vcpu_ratio=float(ratio))

    # -- what others ask ----------------------------------------------------------------------------------
    def place(self, requests: Sequence[Sequence[object]]) -> list[list[str]]:
        """Place each ``[path, memory, vcpus, domainName]``: ``[host, reservation token]`` each, in order.

        All or nothing: when one does not fit anywhere, the reservations taken for the others are
        released and :class:`NoHostFits` says which rule removed which host.
        """
        wanted: list[tuple[tuple[str, ...], PlacementRequest]] = []
        for path, memory, vcpus, domain_name in requests:
            assert isinstance(path, Sequence)
            assert isinstance(memory, int)
            assert isinstance(vcpus, int)
            names = tuple(str(p) for p in path)
            wanted.append((names, PlacementRequest(name=":".join(names), memory_mib=memory, vcpus=vcpus,
                                                   domain_name=str(domain_name))))
        views, running = self._survey([(request.name, request.domain_name) for _, request in wanted])
        placed: list[list[str]] = []
        try:
            for names, request in wanted:
                placed.append(list(self._place_one(names, request, views, running)))
        except Exception:
            for host, token in placed:
                self.release(host, token)
            raise
        return placed

    def reserve_on(self, host: str, path: Sequence[str], memory: int, vcpus: int, domain_name: str) -> str:
        """Reserve room on ``host`` (which must be one of this Scheduler's live hosts); the token."""
        request = PlacementRequest(name=":".join(path), memory_mib=memory, vcpus=vcpus, domain_name=domain_name)
        views = {name: view for name, view in self._survey(())[0].items() if name == host}
        if not views:
            raise PolicyError(f"{self.context.ref.name_text}: {host} is not one of its hosts "
                              f"({', '.join(self._host_names())})")
        return self._place_one(tuple(path), request, views, {})[1]

    def release(self, host: str, token: str) -> None:
        """Give back a reservation (best effort: a host that does not answer lets it lapse by itself)."""
        peers = self._peers()
        if self._is_local(host, peers):
            host_ledger(self.context._runtime).release(token)
            return
        assert peers is not None
        with contextlib.suppress(TimeoutError, OSError, ComponentFailed):  # else it lapses there by itself
            peers.link(endpoint_of_host(host)).request(ReleaseCapacity(token=token), timeout=ASK_TIMEOUT)

    def survey(self) -> list[dict[str, object]]:
        """Each host: ``host``, ``problem`` (why it cannot take anything, or "") and its capacity."""
        return [{"host": name, "problem": view if isinstance(view, str) else "",
                 "capacity": None if isinstance(view, str) else {
                     "memory_mib": view.memory_mib, "vcpus": view.vcpus, "used_memory_mib": view.used_memory_mib,
                     "used_vcpus": view.used_vcpus, "vms": view.vms}}
                for name, view in self._survey(())[0].items()]

    def limits_of(self) -> dict[str, object]:
        return {"max_vms": self.limits.max_vms, "vcpu_ratio": self.limits.vcpu_ratio}

    # -- placing one ------------------------------------------------------------------------------------
    def _place_one(self, path: tuple[str, ...], request: PlacementRequest, views: dict[str, HostCapacity | str],
                   running: dict[str, tuple[str, ...]]) -> tuple[str, str]:
        for name, found in running.items():
            if request.name in found and not isinstance(views.get(name), str):
                # It already runs there (its daemon restarted and re-deploys): placing it anywhere
                # else would make a second copy.
                token, _, views[name] = self._reserve(name, path, request, existing=True)
                if token is not None:
                    return name, token
        reasons: dict[str, str] = {}
        fits: list[HostCapacity] = []
        for name, view in views.items():
            reason = view if isinstance(view, str) else unfit_reason(request, view, self.limits)
            if reason is None:
                assert not isinstance(view, str)
                fits.append(view)
            else:
                reasons[name] = reason
        hook = self.context._runtime.plugin_manager.hook
        while fits:
            chosen = hook.sd_actors_place(component=request, hosts=tuple(fits), policy=self.policy)
            if chosen is None:
                raise PolicyError(f"{self.context.ref.name_text}: no plugin places by policy {self.policy!r}; the "
                                  "built-in policies are spread, pack and fewestVMs (a plugin adds others through "
                                  "the sd_actors_place hook)")
            if chosen not in fits:
                raise PolicyError(f"{self.context.ref.name_text}: policy {self.policy!r} chose {chosen!r}, which is "
                                  "not one of the hosts offered to it")
            token, refused, after = self._reserve(chosen.host, path, request)
            views[chosen.host] = after
            if token is not None:
                return chosen.host, token
            reasons[chosen.host] = f"{refused} (taken meanwhile)"
            fits.remove(chosen)
        raise NoHostFits(request, {name: reasons[name] for name in views if name in reasons})

    def _reserve(self, host: str, path: tuple[str, ...], request: PlacementRequest, *, existing: bool = False
                 ) -> tuple[str | None, str | None, HostCapacity]:
        peers = self._peers()
        if self._is_local(host, peers):
            token, refused, capacity = host_ledger(self.context._runtime).reserve(path, request, self.limits,
                                                                                  existing=existing)
            return token, refused, replace(capacity, host=host)
        assert peers is not None
        reply = self._ask(peers, host, ReserveCapacity(
            path=path, memory_mib=request.memory_mib, vcpus=request.vcpus, domain_name=request.domain_name,
            max_vms=self.limits.max_vms, vcpu_ratio=self.limits.vcpu_ratio, existing=existing))
        if not isinstance(reply, ReservationReply):
            raise PolicyError(f"{self.context.ref.name_text}: host {host} could not reserve room for {request.name}: "
                              f"{reply}")
        return reply.token or None, reply.refused or None, capacity_of(reply.capacity, host)

    # -- the hosts --------------------------------------------------------------------------------------
    def _peers(self) -> Peers | None:
        peers = self.context.shared(Peers, lambda: None)  # the daemon's; None in a System without one
        return peers if isinstance(peers, Peers) else None

    def _host_names(self) -> tuple[str, ...]:
        if self.hosts:
            return self.hosts
        peers = self._peers()
        if peers is None:
            return (self.context.host,)
        return tuple(m.address for m in peers.members() if m.state == "alive")

    def _is_local(self, host: str, peers: Peers | None) -> bool:
        if host in (self.context.host, *_OWN_NAMES):
            return True
        return peers is not None and endpoint_of_host(host) == peers.own_endpoint

    def _survey(self, components: Sequence[tuple[str, str]]
                ) -> tuple[dict[str, HostCapacity | str], dict[str, tuple[str, ...]]]:
        """Each host's capacity, or why it cannot take anything (dead, suspect, unknown, silent); and
        which of ``components`` (complete name, domain name) already run on each."""
        peers = self._peers()
        members = {m.address: m for m in peers.members()} if peers is not None else {}
        views: dict[str, HostCapacity | str] = {}
        running: dict[str, tuple[str, ...]] = {}
        for name in self._host_names():
            if self._is_local(name, peers):
                ledger = host_ledger(self.context._runtime)
                try:
                    views[name] = ledger.capacity(name)
                except PolicyError as error:
                    views[name] = str(error)
                running[name] = ledger.running(components)
                continue
            if peers is None:
                views[name] = (f"unreachable: this System has no daemon, so only its own host "
                               f"({self.context.host}) can be used")
                continue
            member = members.get(endpoint_of_host(name))
            if member is None:
                views[name] = "not in the pool (no daemon there is known here: start it with --peer)"
            elif member.state != "alive":
                views[name] = member.state
            else:
                reply = self._ask(peers, name, GetCapacity(components=tuple(c for c, _ in components),
                                                           domain_names=tuple(d for _, d in components)))
                views[name] = capacity_of(reply, name) if isinstance(reply, HostCapacityInfo) else str(reply)
                running[name] = reply.running if isinstance(reply, HostCapacityInfo) else ()
        return views, running

    def _ask(self, peers: Peers, host: str, message: object) -> object:
        """Another host's daemon's answer, or what went wrong, as text."""
        try:
            reply = peers.link(endpoint_of_host(host)).request(message, timeout=ASK_TIMEOUT)
        except (TimeoutError, OSError) as error:
            return f"its daemon did not answer within {ASK_TIMEOUT:g} s ({type(error).__name__})"
        except ComponentFailed as error:
            return error.record.description
        if isinstance(reply, RequestFailed):
            return f"its daemon says: {reply.error}"
        return reply


class Schedulee(Compound):
    """A Compound whose children without an ``sfProcessHost`` are placed by ``scheduler`` before they
    are created. A child placed this way may be moved by a LoadBalancer if it says ``restartable
    true`` and not ``pinned true``; a child given an ``sfProcessHost`` by its author never moves."""

    def create(self) -> None:
        context = self.context
        self.scheduler = self._scheduler()
        children = [(name, value) for name, value in context.description.items()
                    if isinstance(value, ComponentDescription) and value.eager and "sfProcessHost" not in value]
        if not children:
            return
        requests = []
        for name, child in children:
            request = request_of(child, ":".join((*context.path, name)))
            requests.append([[*context.path, name], request.memory_mib, request.vcpus, request.domain_name])
        placements = self.scheduler.invoke("place", requests)
        assert isinstance(placements, list)
        for (_name, child), (host, token) in zip(children, placements, strict=True):
            child.set("sfProcessHost", host)
            child.set(RESERVATION_ATTRIBUTE, token)

    def _scheduler(self) -> ComponentRef:
        scheduler = self.context.attribute("scheduler")
        if not isinstance(scheduler, ComponentRef) or (not scheduler.component_class.endswith("Scheduler") and \
                not isinstance(scheduler.component, Scheduler)):
            raise PolicyError(f"{self.context.ref.name_text}: scheduler is {scheduler!r}; give a LAZY link to a "
                              "Scheduler deployed before this Schedulee, e.g. scheduler LAZY ATTRIB simpleScheduler;")
        return scheduler

    # -- what a LoadBalancer asks ---------------------------------------------------------------------
    def survey(self) -> object:
        """The scheduler's hosts with their capacity (see :meth:`Scheduler.survey`) and its limits."""
        return {"hosts": self.scheduler.invoke("survey"), "limits": self.scheduler.invoke("limits_of")}

    def movable(self) -> list[dict[str, object]]:
        """The children a LoadBalancer may move: placed by the scheduler and not ``pinned``; each says
        whether it is ``restartable`` and which VMs its subtree holds (``[relative path, hypervisor
        attribute or ""]``), those a live migration would move."""
        found = []
        for child in self.context.children:
            description = child.description
            if not child.alive or RESERVATION_ATTRIBUTE not in description or description.get("pinned") is True:
                continue
            request = request_of(description, child.name_text)
            found.append({"name": child.name, "path": child.name_text, "host": description.get("sfProcessHost"),
                          "memory_mib": request.memory_mib, "vcpus": request.vcpus,
                          "restartable": description.get("restartable") is True, "vms": _vms_of(description)})
        return found

    def move(self, name: str, host: str, migration: Sequence[object] = ()) -> str:
        """Move child ``name`` to ``host``: room is reserved there first. Without ``migration`` the
        child is terminated where it runs and deployed again on ``host`` (restarted). With one
        (``[path of its VM below the child, the target's hypervisor URI]``) the VM migrates its
        domain live first, then the child is detached where it runs and deployed on ``host``, where
        the VM re-attaches; a migration that fails leaves the child running where it was, and raises.
        Returns where it was."""
        child = next((c for c in self.context.children if c.name == name and c.alive), None)
        if child is None:
            raise PolicyError(f"{self.context.ref.name_text} has no running child {name!r}")
        description = child.description
        old_host, old_token = str(description.get("sfProcessHost")), description.get(RESERVATION_ATTRIBUTE)
        request = request_of(description, child.name_text)
        token = self.scheduler.invoke("reserve_on", host, list(child.path), request.memory_mib, request.vcpus,
                                      request.domain_name)
        if migration:
            relative, target = migration
            assert isinstance(relative, list | tuple)
            try:
                _member(child, [str(part) for part in relative]).invoke("migrate", target, host,
                                                                        timeout=MIGRATE_TIMEOUT)
            except (ComponentFailed, DeploymentError):
                self.scheduler.invoke("release", host, token)
                raise
            self.context.terminate_child(child, TerminationRecord(
                DETACHED, f"moved from {old_host} to {host} by a load balancer (migrated live)", child.path))
        else:
            self.context.terminate_child(child, TerminationRecord.normal(
                f"moved from {old_host} to {host} by a load balancer (restarted there)", child.path))
        if isinstance(old_token, str):
            self.scheduler.invoke("release", old_host, old_token)
        description.set("sfProcessHost", host)
        description.set(RESERVATION_ATTRIBUTE, token)
        try:
            self.context.deploy_child(name, description)
        except ComponentFailed as failure:
            self.context.terminate_self(failure.record)  # a child lost: the Compound's shared fate
            raise
        return old_host


VM_CLASSES: Final = ("sd_actors.plugins.VM", "sd_actors.plugins.XenDomain")
MIGRATE_TIMEOUT: Final = 300.0
"""Seconds a VM's live migration may take."""


def _vms_of(description: ComponentDescription, relative: tuple[str, ...] = ()) -> list[list[object]]:
    """The VMs of the subtree ``description`` describes: ``[[relative path], hypervisor attribute or ""]``."""
    if description.get("sfClass") in VM_CLASSES:
        hypervisor = description.get("hypervisor")
        return [[list(relative), hypervisor if isinstance(hypervisor, str) else ""]]
    found: list[list[object]] = []
    for name, value in description.items():
        if isinstance(value, ComponentDescription) and value.eager:
            found += _vms_of(value, (*relative, name))
    return found


def _member(child: ComponentRef, relative: Sequence[str]) -> ComponentRef:
    """The component at ``relative`` below ``child`` (``child`` itself for ``[]``), on whatever host it runs."""
    if isinstance(child.component, RemoteComponent):
        return child.component.remote_reference(tuple(relative))
    member = child
    for name in relative:
        member = next(c for c in member.children if c.name == name)
    return member


@hookimpl(trylast=True)
def sd_actors_place(component: PlacementRequest, hosts: Sequence[HostCapacity], policy: str) -> HostCapacity | None:
    # Last in line: a plugin's own policy answers first; the built-in ones only know their names.
    ranked = weigh(policy, hosts)
    return ranked[0] if ranked else None


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"sd_actors.policies.Scheduler": Scheduler, "sd_actors.policies.Schedulee": Schedulee}
