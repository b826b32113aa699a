"""The messages daemons send each other, and the policies' (placement, high availability).

Placement and high-availability messages travel between daemons and also from a policy's command
(``sd-actors forget-host``, ``balance``), which then uses ``make_registry``: the codec of every
message, the command line's (``_protocol``) and these. A daemon decodes with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sd_actors.net._membership import Heartbeat
from sd_actors.net._protocol import (
    CLIENT_REPLIES,
    CLIENT_REQUESTS,
    LifecycleNotice,
    RecordInfo,
)
from sd_actors.net._wire import MessageRegistry, wire_message


# -- between daemons ---------------------------------------------------------------------------------
@wire_message("sd.create_subtree")
@dataclass(frozen=True, slots=True, kw_only=True)
class CreateSubtree:
    """Create the subtree at ``path`` (its description as a ``tree``, or in .sf notation from an older
    daemon) for a parent on another daemon.

    The parent's daemon is the sender; it is told when the subtree terminates by itself.
    """

    app: str
    path: tuple[str, ...]
    description: str
    """The subtree in .sf notation; '' when ``tree`` carries it (daemons of this version)."""
    parent_endpoint: str
    tree: bytes = b""
    """The subtree as ``encode_description`` bytes; empty from an older daemon."""


@wire_message("sd.step_subtree")
@dataclass(frozen=True, slots=True, kw_only=True)
class StepSubtree:
    """Deploy or start the subtree at ``path`` (``step`` is "deploy" or "start")."""

    app: str
    path: tuple[str, ...]
    step: str


@wire_message("sd.terminate_subtree")
@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateSubtree:
    """The remote parent terminates the subtree at ``path`` (it is not told back)."""

    path: tuple[str, ...]
    record: RecordInfo
    parent_endpoint: str = ""
    """The daemon asking: refused when the HARestarter above ``path`` was taken over by another."""


@wire_message("sd.subtree_terminated")
@dataclass(frozen=True, slots=True, kw_only=True)
class SubtreeTerminated:
    """The subtree at ``path`` terminated by itself: its parent, on the receiving daemon, reacts."""

    path: tuple[str, ...]
    record: RecordInfo


@wire_message("sd.subtree_events")
@dataclass(frozen=True, slots=True, kw_only=True)
class SubtreeEvents:
    """Lifecycle events of a subtree, sent to its parent's daemon (progress, status, the console)."""

    notices: tuple[LifecycleNotice, ...]


@wire_message("sd.terminate_remote")
@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateComponentRemotely:
    """Terminate the component at ``path`` on the receiving daemon (a LAZY link from another host)."""

    path: tuple[str, ...]
    record: RecordInfo
    notify_parent: bool = True


@wire_message("sd.invoke")
@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeComponent:
    """Call public method ``method`` of the component at ``path`` with msgpack-packed ``arguments``."""

    path: tuple[str, ...]
    method: str
    arguments: bytes


@wire_message("sd.invoke_result")
@dataclass(frozen=True, slots=True, kw_only=True)
class InvokeResult:
    """The method's result, msgpack-packed (dataclasses as maps)."""

    value: bytes


DAEMON_REQUESTS = (CreateSubtree, StepSubtree, TerminateSubtree, SubtreeTerminated, SubtreeEvents, Heartbeat,
                   TerminateComponentRemotely, InvokeComponent)
DAEMON_REPLIES = (InvokeResult,)


# -- capacity and reservations, for placement policies (sd_actors.policies) ---------------------------
@wire_message("sd.get_capacity")
@dataclass(frozen=True, slots=True, kw_only=True)
class GetCapacity:
    """What the receiving daemon's host has, and what running machines and reservations take of it.

    ``components`` (complete names, ``app:vms:vm1``) with their ``domain_names``: the reply says
    which of them already run there (a daemon that restarted finds them again where they are).
    """

    components: tuple[str, ...] = ()
    domain_names: tuple[str, ...] = ()


@wire_message("sd.capacity")
@dataclass(frozen=True, slots=True, kw_only=True)
class HostCapacityInfo:
    memory_mib: int
    vcpus: int
    used_memory_mib: int
    used_vcpus: int
    vms: int
    running: tuple[str, ...] = ()


@wire_message("sd.reserve")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveCapacity:
    """Reserve room for the component at ``path`` if it fits (checked and taken atomically).

    ``max_vms`` 0 means no limit; ``vcpu_ratio`` is how many virtual CPUs a host CPU may carry.
    """

    path: tuple[str, ...]
    memory_mib: int
    vcpus: int
    domain_name: str = ""
    max_vms: int = 0
    vcpu_ratio: float = 1.0
    existing: bool = False
    """The component already runs there: reserve what it takes without checking that it fits."""


@wire_message("sd.reservation")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReservationReply:
    """``token`` names the reservation taken; empty when ``refused`` says why it did not fit."""

    capacity: HostCapacityInfo
    token: str = ""
    refused: str = ""


@wire_message("sd.release")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseCapacity:
    """Give back the reservation ``token`` (nothing happens if it is already gone)."""

    token: str


PLACEMENT_MESSAGES = (GetCapacity, ReserveCapacity, ReleaseCapacity, HostCapacityInfo, ReservationReply)


# -- high availability (policies/README.md, "HARestarter") -------------------------------------------
@wire_message("sd.claim_restart")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimRestart:
    """Ask a daemon to grant ``claimant`` the restart of the component at ``path`` as ``generation``.

    A daemon grants each (``incarnation``, path, generation) to one claimant only, journaled before
    it answers. It grants only if it has heard nothing, for their lease plus a margin, from each of
    the ``unreachable`` daemons (endpoints) that ran part of the component and did not confirm it gone.
    """

    path: tuple[str, ...]
    generation: int
    claimant: str
    unreachable: tuple[str, ...] = ()
    restarter: tuple[str, ...] = ()
    """The HARestarter that claims (its path), its ``incarnation`` (which deployment of it: a new
    ``sd-actors up`` counts generations afresh; a takeover's claim names it too) and its ``epoch``
    (how many takeovers it has been through): a daemon refuses the claims of an HARestarter that
    was taken over since (a stale copy)."""
    incarnation: str = ""
    epoch: int = 0


@wire_message("sd.claim_answer")
@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimAnswer:
    """``granted``, or why not: ``holder`` already has the grant, or ``reason`` (a lease may still run)."""

    granted: bool
    holder: str = ""
    reason: str = ""


@wire_message("sd.list_domains")
@dataclass(frozen=True, slots=True, kw_only=True)
class ListDomains:
    """The domains running on the daemon's hypervisor (its ``--hypervisor``), whoever made them."""


@wire_message("sd.domains")
@dataclass(frozen=True, slots=True, kw_only=True)
class DomainsReply:
    hypervisor: str
    running: tuple[str, ...]
    """Names of the running domains, sorted."""


@wire_message("sd.forget_host")
@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetHost:
    """Remove the dead daemon at ``address`` from the pool (``sd-actors forget-host``): it no longer
    counts in majorities. The daemon asked tells every live daemon it knows (``forwarded`` set)."""

    address: str
    forwarded: bool = False


@wire_message("sd.host_forgotten")
@dataclass(frozen=True, slots=True, kw_only=True)
class HostForgotten:
    address: str
    by: tuple[str, ...]
    """The daemons that forgot it, sorted."""
    failed: tuple[str, ...] = ()
    """``"ADDRESS: why"`` for each live daemon that did not."""


@wire_message("sd.replicate_restarter")
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicateRestarter:
    """Keep (or replace) what it takes to deploy an HARestarter again on another daemon, should the
    daemon that runs it (``host``) die: every daemon of the pool keeps it, durably."""

    app: str
    path: tuple[str, ...]
    host: str
    """The endpoint of the daemon that runs it."""
    epoch: int
    """How many takeovers it has been through (0: it runs where it was deployed)."""
    incarnation: str
    """Which deployment of it (``sd-actors up``): a new one starts again at epoch 0."""
    description: str
    """An sfConfig in .sf notation: the HARestarter as it is now (its children's hosts and
    generations) under its ancestors, reduced to Compounds that keep their own attributes."""


@wire_message("sd.forget_restarter")
@dataclass(frozen=True, slots=True, kw_only=True)
class ForgetRestarter:
    """The HARestarter at ``path`` (of ``incarnation``, ``epoch`` or older) ended (``sd-actors down``):
    forget it."""

    path: tuple[str, ...]
    incarnation: str
    epoch: int


@wire_message("sd.where_is_restarter")
@dataclass(frozen=True, slots=True, kw_only=True)
class WhereIsRestarter:
    """Where the HARestarter at ``path`` (of ``incarnation``) runs, as far as the daemon asked knows."""

    path: tuple[str, ...]
    incarnation: str = ""


@wire_message("sd.restarter_whereabouts")
@dataclass(frozen=True, slots=True, kw_only=True)
class RestarterWhereabouts:
    host: str = ""
    """The daemon that runs it ("": the daemon asked keeps no replica of it)."""
    epoch: int = -1
    taken_over: int = 0
    """The newest takeover of it this daemon granted (0: none)."""


HIGH_AVAILABILITY_MESSAGES = (ClaimRestart, ClaimAnswer, ListDomains, DomainsReply, ForgetHost, HostForgotten,
                              ReplicateRestarter, ForgetRestarter, WhereIsRestarter, RestarterWhereabouts)


def make_registry() -> MessageRegistry:
    """The codec of every message: what daemons and the command line send each other."""
    return MessageRegistry((*CLIENT_REQUESTS, *CLIENT_REPLIES, *DAEMON_REQUESTS, *DAEMON_REPLIES, *PLACEMENT_MESSAGES,
                            *HIGH_AVAILABILITY_MESSAGES))
