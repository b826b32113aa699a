"""The messages daemons and the command line exchange (version 1 of the protocol).

Requests are answered with the same request id; ``WatchApplication`` is answered by a stream of
``LifecycleNotice`` ending with ``WatchEnded``; ``DeployApplication`` by ``DeployAccepted``, its
progress as ``LifecycleNotices`` (several notices a frame) and ``WatchEnded``. Every request may be
answered by ``RequestFailed``. At the end: where a client finds a daemon (port, files) and
``make_registry``, the codec of all these messages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sd_actors.net._membership import Heartbeat
from sd_actors.net._wire import MessageRegistry, wire_message


@wire_message("sd.record")
@dataclass(frozen=True, slots=True, kw_only=True)
class RecordInfo:
    """A TerminationRecord on the wire."""

    kind: str
    description: str = ""
    path: tuple[str, ...] = ()
    cause: str | None = None


@wire_message("sd.request_failed")
@dataclass(frozen=True, slots=True, kw_only=True)
class RequestFailed:
    """The request could not be carried out: what went wrong and how to fix it."""

    error: str
    hint: str = ""
    record: RecordInfo | None = None


@wire_message("sd.deploy")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeployApplication:
    """Deploy a resolved sfConfig as application ``app``: ``tree``, or ``description``, or both."""

    app: str
    description: str
    """The description in .sf notation; '' when ``tree`` carries it (this version's command line)."""
    requested_by: str = ""
    settle: float = 0.0
    """Once everything started, watch this many seconds more: a failure in that time fails the deploy."""
    tree: bytes = b""
    """The description as ``encode_description`` bytes: the daemon decodes and journals it, and writes
    its text after the deployment; empty from an older client (or the web console): the text is parsed."""


@wire_message("sd.deploy_accepted")
@dataclass(frozen=True, slots=True, kw_only=True)
class DeployAccepted:
    """The daemon journaled the deployment and started it; watch the app for progress."""

    app: str
    host: str
    already_running: bool = False
    update: str = ""
    """The application runs and takes a changed description: what changes, e.g. ``"web:cluster: size"``."""


@wire_message("sd.terminate")
@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateApplication:
    """Terminate application ``app`` normally (``sd-actors down``)."""

    app: str
    wait: bool = True


@wire_message("sd.terminated")
@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationTerminated:
    app: str
    record: RecordInfo | None = None


@wire_message("sd.watch")
@dataclass(frozen=True, slots=True, kw_only=True)
class WatchApplication:
    """Stream the lifecycle events of ``app`` (past ones first) until it is started, or ends."""

    app: str
    until_started: bool = True


@wire_message("sd.notice")
@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleNotice:
    path: tuple[str, ...]
    old: str
    new: str
    time: float
    host: str = ""
    component_class: str = ""
    record: RecordInfo | None = None


@wire_message("sd.notices")
@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleNotices:
    """Several notices in one frame, in the order of the events: a deployment's progress is sent a
    few milliseconds' worth at a time (1,000 VMs make 3,000 notices), not a frame per state change."""

    notices: tuple[LifecycleNotice, ...]


@wire_message("sd.watch_ended")
@dataclass(frozen=True, slots=True, kw_only=True)
class WatchEnded:
    app: str
    state: str
    record: RecordInfo | None = None


@wire_message("sd.status")
@dataclass(frozen=True, slots=True, kw_only=True)
class GetStatus:
    """The applications (all, or ``app``) with their component trees."""

    app: str = ""


@wire_message("sd.component_status")
@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentStatus:
    path: tuple[str, ...]
    state: str
    host: str
    component_class: str
    liveness: str = ""
    record: RecordInfo | None = None


@wire_message("sd.application_status")
@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationInfo:
    name: str
    status: str
    host: str
    updated: float
    components: tuple[ComponentStatus, ...] = ()
    record: RecordInfo | None = None


@wire_message("sd.status_reply")
@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReply:
    host: str
    applications: tuple[ApplicationInfo, ...]


@wire_message("sd.hosts")
@dataclass(frozen=True, slots=True, kw_only=True)
class GetHosts:
    """The members of the pool as this daemon sees them."""


@wire_message("sd.host_status")
@dataclass(frozen=True, slots=True, kw_only=True)
class HostStatus:
    address: str
    state: str
    last_heard: float | None
    is_self: bool = False


@wire_message("sd.hosts_reply")
@dataclass(frozen=True, slots=True, kw_only=True)
class HostsReply:
    hosts: tuple[HostStatus, ...]


@wire_message("sd.shutdown")
@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownDaemon:
    """Stop the daemon (its applications keep their journal; it re-attaches on restart)."""


@wire_message("sd.ok")
@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """A request that returns nothing was carried out."""


# -- for the web console ----------------------------------------------------------------------------
@wire_message("sd.watch_all")
@dataclass(frozen=True, slots=True, kw_only=True)
class WatchApplications:
    """Stream the lifecycle events of every application for ``seconds`` (at most 300), then ``Done``.

    Bounded so that a watcher that went away never holds a daemon's request thread for long: a
    watcher that wants more asks again.
    """

    seconds: float = 30.0


@wire_message("sd.get_component")
@dataclass(frozen=True, slots=True, kw_only=True)
class GetComponent:
    """The component at ``path``: its status, its attributes with their tags, its last record."""

    path: tuple[str, ...]


@wire_message("sd.attribute")
@dataclass(frozen=True, slots=True, kw_only=True)
class AttributeInfo:
    """One attribute of a component: its value in .sf notation and its tags."""

    name: str
    value: str
    tags: tuple[str, ...] = ()


@wire_message("sd.component_details")
@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentDetails:
    status: ComponentStatus
    attributes: tuple[AttributeInfo, ...]


@wire_message("sd.terminate_component")
@dataclass(frozen=True, slots=True, kw_only=True)
class TerminateComponent:
    """Terminate the component at ``path`` with a record of ``kind`` (``normal`` or ``abnormal``).

    Its parent reacts as to any child's end (shared fate by default); a root ends its application.
    """

    path: tuple[str, ...]
    kind: str = "normal"
    description: str = ""


@wire_message("sd.component_terminated")
@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentTerminated:
    path: tuple[str, ...]
    record: RecordInfo | None = None


CLIENT_REQUESTS = (DeployApplication, TerminateApplication, WatchApplication, GetStatus, GetHosts, ShutdownDaemon,
                   WatchApplications, GetComponent, TerminateComponent)


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
REPLIES = (RequestFailed, DeployAccepted, ApplicationTerminated, LifecycleNotice, LifecycleNotices, WatchEnded,
           StatusReply, HostsReply, Done, InvokeResult, ComponentDetails, ComponentTerminated)


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


# -- finding a daemon ----------------------------------------------------------------------------------
# What the command line and a daemon agree on besides the messages. Kept here, beside them, so that
# a command that only talks to a daemon (sd-actors up, status) imports neither the runtime nor the daemon.
DEFAULT_PORT: Final = 3800
"""The port a daemon listens on unless told otherwise (``--bind``)."""

READY_FILE: Final = "daemon.json"
"""The file a daemon writes in its state folder once it listens: its endpoint and public key (JSON)."""

KNOWN_DAEMONS_FILE: Final = "known_daemons"
"""The file of daemons' public keys (one ``endpoint key`` a line): the user's, and each daemon's for its peers."""


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/sd-actors`` (or ``~/.local/state/sd-actors``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "sd-actors"


def known_daemon_key(folder: Path, endpoint: str) -> str | None:
    """The public key recorded for ``endpoint`` in ``folder``'s known_daemons file."""
    path = folder / KNOWN_DAEMONS_FILE
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == endpoint:
            return parts[1]
    return None


def make_registry() -> MessageRegistry:
    """The codec of every message above: what daemons and the command line send each other."""
    return MessageRegistry((*CLIENT_REQUESTS, *DAEMON_REQUESTS, *REPLIES, *PLACEMENT_MESSAGES,
                            *HIGH_AVAILABILITY_MESSAGES))
