"""VirtualCluster: ``size`` copies of one machine description, with generated names and addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import ClassVar, Final

from sd_actors.actors import Component, ComponentFailed, ComponentRef, DeploymentError, TerminationRecord
from sd_actors.descriptions import ComponentDescription
from sd_actors.plugins.hookspecs import hookimpl
from sd_actors.policies._placement import RESERVATION_ATTRIBUTE, request_of
from sd_actors.policies._scheduler import Scheduler

HEAD: Final = "head"
WORKER: Final = "worker"


class ClusterError(DeploymentError):
    """A VirtualCluster's description cannot make members: the message says which attribute and how to fix it."""


class VirtualCluster(Component):
    """``size`` members made from ``template``, numbered from 0, ready when every member has started.

    Member ``n`` is a copy of ``template`` whose component name, ``domainName`` and ``hostname``
    are ``naming % n`` (``"node-%d"`` gives ``node-0``, ``node-1``, …), whose ``ip`` is ``ipBase``
    plus ``n`` (when ``ipBase`` is given) and whose ``role`` is ``"head"`` for member 0 and
    ``"worker"`` for the others. Members are deployed concurrently when the cluster starts. With
    ``scheduler`` (a LAZY link to a Scheduler), the Scheduler places each member whose template
    names no ``sfProcessHost``, as it places a Schedulee's children.

    ``size`` may change while the cluster runs (``sd-actors up`` of the changed description):
    members are added, or the highest-numbered are terminated first; the others are not touched.
    A member that fails fails the cluster (shared fate), unless a policy above decides otherwise.
    """

    updatable: ClassVar[frozenset[str]] = frozenset({"size"})

    def deploy(self) -> None:
        # Everything is checked before the first member exists, so a mistake creates nothing.
        self._size()
        self._naming()
        self._ip_base()
        self._template()
        self._scheduler()

    def start(self) -> None:
        self._grow(self._size())

    def update(self, changed: frozenset[str]) -> None:
        size = self._size()
        members = self.members()
        if size > len(members):
            self._grow(size)
        else:
            self._shrink(size, len(members))

    def detach(self) -> bool:
        return True  # the cluster holds nothing outside the daemon; its members detach themselves

    def members(self) -> list[ComponentRef]:
        """The running members, in number order (the head first)."""
        by_name = {child.name: child for child in self.context.children if child.alive}
        members = []
        for number in range(len(by_name)):
            member = by_name.get(self._member_name(number))
            if member is None:
                break
            members.append(member)
        return members

    # -- adding and removing members ------------------------------------------------------------------
    def _grow(self, size: int) -> None:
        first = len(self.members())
        members = {self._member_name(n): self._member(n) for n in range(first, size)}
        self._place(members)
        futures = [self.context.deploy_child_nowait(name, member) for name, member in members.items()]
        failure: ComponentFailed | None = None
        for future in futures:  # wait for every one: none may still be deploying when this returns
            try:
                future.result()
            except ComponentFailed as failed:  # deploy_child already terminated that one
                failure = failure or failed
        if failure is not None:
            # Back to the size it had: the members added now go, highest-numbered first.
            self._shrink(first, size, why=f"member {failure.record.path[-1]} failed to deploy")
            raise failure

    def _shrink(self, size: int, old_size: int, why: str = "") -> None:
        by_name = {child.name: child for child in self.context.children}
        reason = why or f"the cluster was scaled from {old_size} to {size} members"
        for number in range(old_size - 1, size - 1, -1):
            member = by_name.get(self._member_name(number))
            if member is not None and member.alive:
                self.context.terminate_child(member, TerminationRecord.normal(reason, member.path))

    def _place(self, members: dict[str, ComponentDescription]) -> None:
        """Have the scheduler (if any) give each member a host and reserve its room there, all or none."""
        scheduler = self._scheduler()
        unplaced = {name: member for name, member in members.items() if "sfProcessHost" not in member}
        if scheduler is None or not unplaced:
            return
        requests = []
        for name, member in unplaced.items():
            path = [*self.context.path, name]
            request = request_of(member, ":".join(path))
            requests.append([path, request.memory_mib, request.vcpus, request.domain_name])
        placements = scheduler.invoke("place", requests)
        assert isinstance(placements, list)
        for member, (host, token) in zip(unplaced.values(), placements, strict=True):
            member.set("sfProcessHost", host)
            member.set(RESERVATION_ATTRIBUTE, token)

    def _member(self, number: int) -> ComponentDescription:
        member = self._template().thaw(self.context.description)
        name = self._member_name(number)
        member.set("domainName", name)
        member.set("hostname", name)
        ip_base = self._ip_base()
        if ip_base is not None:
            member.set("ip", str(ip_base + number))
        member.set("role", HEAD if number == 0 else WORKER)
        return member

    # -- reading the description ----------------------------------------------------------------------
    def _where(self, attribute: str) -> str:
        return f"{':'.join(self.context.path)}: {attribute}"

    def _size(self) -> int:
        size = self.context.attribute("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ClusterError(f"{self._where('size')} is {size!r}; give the number of members, 1 or more, "
                               "e.g. size 4;")
        return size

    def _naming(self) -> str:
        naming = self.context.attribute("naming", "node-%d")
        if not isinstance(naming, str):
            raise ClusterError(f"{self._where('naming')} is {naming!r}; give a pattern such as \"node-%d\"")
        try:
            first, second = naming % 0, naming % 1
        except (TypeError, ValueError):
            first = second = ""
        if not first or first == second:
            raise ClusterError(f"{self._where('naming')} {naming!r} must hold exactly one number placeholder "
                               "(%d, or %02d for zero-padded numbers), e.g. \"node-%d\"")
        if ":" in first or any(character.isspace() for character in first):
            raise ClusterError(f"{self._where('naming')} {naming!r} makes names with ':' or spaces; member names "
                               "are component and domain names: use letters, digits, '-' and '_'")
        return naming

    def _member_name(self, number: int) -> str:
        return self._naming() % number

    def _ip_base(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        text = self.context.attribute("ipBase", None)
        if text is None:
            return None
        try:
            base = ipaddress.ip_address(text) if isinstance(text, str) else None
        except ValueError:
            base = None
        if base is None:
            raise ClusterError(f"{self._where('ipBase')} is {text!r}; give the first member's address, e.g. "
                               "ipBase \"10.1.0.10\";")
        last = int(base) + self._size() - 1
        if last > (2 ** base.max_prefixlen) - 1:
            raise ClusterError(f"{self._where('ipBase')} {text!r} leaves no room for {self._size()} consecutive "
                               "addresses; choose a lower ipBase")
        return base

    def _scheduler(self) -> ComponentRef | None:
        scheduler = self.context.attribute("scheduler", None)
        if scheduler is None:
            return None
        if not isinstance(scheduler, ComponentRef) or not (
                isinstance(scheduler.component, Scheduler) or scheduler.component_class.endswith("Scheduler")):
            raise ClusterError(f"{self._where('scheduler')} is {scheduler!r}; give a LAZY link to a Scheduler "
                               "written before the cluster, e.g. scheduler LAZY ATTRIB simpleScheduler;")
        return scheduler

    def _template(self) -> ComponentDescription:
        template = self.context.attribute("template")
        if not isinstance(template, ComponentDescription) or "sfClass" not in template:
            raise ClusterError(f"{self._where('template')} is not a component description; give the members' "
                               "description, e.g. template extends ClusterNode { memory 256; }")
        return template


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"sd_actors.policies.VirtualCluster": VirtualCluster}
