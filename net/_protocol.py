"""The messages the command line (and the web console) exchange with a daemon (version 1 of the protocol).

Requests are answered with the same request id; ``WatchApplication`` is answered by a stream of
``LifecycleNotice`` ending with ``WatchEnded``; ``DeployApplication`` by ``DeployAccepted``, its
progress as ``LifecycleNotices`` (several notices a frame) and ``WatchEnded``. Every request may be
answered by ``RequestFailed``. At the end: where a client finds a daemon (port, files) and
``make_client_registry``, the codec of these messages. What daemons say to each other, and the
policies' messages, are in ``_peer_protocol``: a command such as ``sd-actors up`` does not pay
for creating their classes (about 0.3 ms each).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

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
CLIENT_REPLIES = (RequestFailed, DeployAccepted, ApplicationTerminated, LifecycleNotice, LifecycleNotices, WatchEnded,
                  StatusReply, HostsReply, Done, ComponentDetails, ComponentTerminated)


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


def make_client_registry() -> MessageRegistry:
    """The codec of the messages above: what a client sends a daemon and gets back. A command that
    sends a daemon-to-daemon or policy message (``forget-host``, ``balance``) uses ``make_registry``."""
    return MessageRegistry((*CLIENT_REQUESTS, *CLIENT_REPLIES))
