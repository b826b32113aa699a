"""The daemon every host runs: a System, its journal, and a ZeroMQ node that takes requests.

Any daemon accepts a description (there is no master). What it is about to do is written to its
journal first; after a crash it re-deploys the applications the journal says were running, so the
components that own external resources re-attach to them instead of creating second copies.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import json
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgpack
import pluggy

from sd_actors.actors._component import Component
from sd_actors.actors._errors import ComponentFailed, DeploymentError
from sd_actors.actors._events import LifecycleEvent, State
from sd_actors.actors._forgotten_hosts import ForgottenHosts
from sd_actors.actors._journal import ApplicationStatus, DuplicateApplication, Journal, JournalError, open_journal
from sd_actors.actors._progress import ProgressStream
from sd_actors.actors._record_info import record_info, to_info, to_record
from sd_actors.actors._records import DETACHED, TerminationRecord
from sd_actors.actors._remote import (
    Peers,
    RemoteComponent,
    RemoteParent,
    endpoint_of_host,
    pack_result,
)
from sd_actors.actors._runtime import ComponentRef
from sd_actors.actors._system import System, open_system
from sd_actors.actors._update import apply_update, plan_update, running_components
from sd_actors.descriptions import (
    ComponentDescription,
    DescriptionError,
    decode_description,
    description_from,
    format_value,
    parse_string,
    to_sf,
)
from sd_actors.net import Heartbeat, KeyPair, insecure_warning, load_keypair
from sd_actors.net._node import Node, Request
from sd_actors.net._peer_protocol import (
    CreateSubtree,
    GetCapacity,
    InvokeComponent,
    InvokeResult,
    ReleaseCapacity,
    ReserveCapacity,
    StepSubtree,
    SubtreeEvents,
    SubtreeTerminated,
    TerminateComponentRemotely,
    TerminateSubtree,
    make_registry,
)
from sd_actors.net._protocol import (
    DEFAULT_PORT,
    READY_FILE,
    ApplicationInfo,
    ApplicationTerminated,
    AttributeInfo,
    ComponentDetails,
    ComponentStatus,
    ComponentTerminated,
    DeployAccepted,
    DeployApplication,
    Done,
    GetComponent,
    GetHosts,
    GetStatus,
    HostsReply,
    HostStatus,
    LifecycleNotice,
    RequestFailed,
    ShutdownDaemon,
    StatusReply,
    TerminateApplication,
    TerminateComponent,
    WatchApplication,
    WatchApplications,
    WatchEnded,
    default_state_dir,
    known_daemon_key,
)
from sd_actors.plugins import make_plugin_manager
from sd_actors.plugins._shell import kill_leftover_groups

logger = logging.getLogger(__name__)

DAEMON_SHARED_KEY: Final = "sd_actors.daemon"
"""A daemon shares a weak reference to itself under this key (System.shared) with its components."""
FORWARD_GATHER_SECONDS: Final = 0.02
"""How long the first event of a subtree's batch for its parent's daemon waits for others."""
FORWARD_LIMIT: Final = 500
"""Events in one batch at most."""


@dataclass(frozen=True)
class DaemonSettings:
    bind: str = f"tcp://127.0.0.1:{DEFAULT_PORT}"
    state_dir: Path = field(default_factory=default_state_dir)
    peers: Sequence[str] = ()
    hypervisor: str | None = None
    insecure: bool = False
    host: str = field(default_factory=socket.gethostname)
    terminate_timeout: float = 30.0
    heartbeat_interval: float = 0.5
    suspect_after: float = 1.5
    dead_after: float = 5.0
    plugins: Sequence[str] = ()
    """Modules to load as plugins besides those installed (entry points): ``--plugin MODULE``."""


class Daemon:
    """One host's daemon. Use :func:`open_daemon`; it serves until closed."""

    def __init__(self, settings: DaemonSettings, *, system: System, journal: Journal, keypair: KeyPair | None) -> None:
        self.settings = settings
        self.system = system
        self.journal = journal
        self.keypair = keypair
        self.stopped = threading.Event()
        # Applications re-deployed from the journal after a restart, until that re-deployment ends (it
        # may wait for a lease or the pool's answers): a down asked meanwhile is kept here and done then.
        self._recovering: dict[str, TerminationRecord | None] = {}
        self._recovering_lock = threading.Lock()
        forgotten_hosts = ForgottenHosts(settings.state_dir)  # first: a damaged list stops the start here
        self._unsubscribe = system.subscribe(self._journal_event)
        registry = make_registry()
        self.node = Node(bind=settings.bind, registry=registry, handler=self.handle, keypair=keypair,
                         authorized=settings.state_dir if keypair is not None else None, log=logger,
                         quick=(Heartbeat, GetHosts))
        self.endpoint = self.node.endpoint
        self.peers = Peers(own_endpoint=settings.bind, registry=registry, keypair=keypair,
                           known_keys=lambda endpoint: known_daemon_key(settings.state_dir, endpoint),
                           interval=settings.heartbeat_interval, suspect_after=settings.suspect_after,
                           dead_after=settings.dead_after, forgotten_hosts=forgotten_hosts)
        self.peers.seed(settings.peers)
        self._remote_type = type("RemoteComponent", (RemoteComponent,),
                                 {"peers": self.peers, "own_endpoint": settings.bind})
        self._remote_parents: dict[tuple[str, tuple[str, ...]], ComponentRef] = {}
        # Events to other daemons leave in order, one at a time, never from an actor's thread.
        self._sender = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sd-actors-send")
        self._forwarding: dict[str, list[LifecycleEvent]] = {}  # events waiting for the sender, by endpoint
        # The parents' daemons an event goes to, by the path of the event's parent: the events of a
        # group of 1,000 VMs share one answer. Written and cleared under _parents_lock, cleared
        # whenever a parent or a hosted subtree comes or goes.
        self._forward_routes: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._forward_changed = threading.Condition()
        self._forward_flushes = 0
        """Steps waiting for their events to leave (_wait_forwarded): the sender gathers no more."""
        self._parents_lock = threading.Lock()
        system.set_placement(self._placement)
        # Components that serve something of their daemon (DeployManagement's web console) find it here.
        system.shared(DAEMON_SHARED_KEY, lambda: weakref.ref(self))
        system.shared(Peers, lambda: self.peers)  # what placement policies ask about the pool's hosts
        system.runtime.resource_recorder = self._record_resource
        self._unsubscribe_forwarding = system.subscribe(self._forward_event)
        self._watchdog = threading.Thread(target=self._watch_remote_parents, name="sd-actors-watchdog", daemon=True)
        self._watchdog.start()
        # Its lease, self-fencing and restart ledger (policies/README.md, "HARestarter").
        from sd_actors.policies import HighAvailability, LeaseTerms  # policies build on the actors

        self.high_availability = HighAvailability(
            system=system, peers=self.peers, state_dir=settings.state_dir, hypervisor=settings.hypervisor,
            terms=LeaseTerms.for_dead_after(settings.dead_after), is_this_host=self.is_this_host)
        from sd_actors.policies._takeover import Takeover

        self.high_availability.takeover = Takeover(high_availability=self.high_availability,
                                                   state_dir=settings.state_dir, adopt=self.adopt_application,
                                                   end_stale=self.end_taken_over)
        # Every daemon counted in an earlier run counts again (unheard until heard), less the
        # forgotten: the lease, `hosts`, `forget-host` and the HARestarters count one pool.
        self.peers.seed(sorted(self.high_availability.takeover.remembered() - forgotten_hosts.kept.keys()))

    def _record_resource(self, ref: ComponentRef, resource: str | None, durable: bool) -> None:
        """Journal what a component holds outside this process (journal first: before it is relied on)."""
        if not ref.path:
            return
        self.high_availability.note_resource(ref, resource)  # the host watchdog guards HA domains
        with contextlib.suppress(DeploymentError):
            if durable:
                self.journal.record_component(ref.path[0], ref.path, component_class=ref.component_class,
                                              host=self.settings.host, state=ref.state or State.CREATED,
                                              resource=resource)
            else:
                self.journal.note_resource(ref.path[0], ref.path, resource)

    # -- which host runs a component ------------------------------------------------------------------
    def is_this_host(self, host: str) -> bool:
        own = {self.settings.host, "localhost", "127.0.0.1", self.settings.bind, self.endpoint}
        own.add(self.settings.bind.split("://")[-1].rsplit(":", 1)[0])
        return host in own or endpoint_of_host(host) in (self.settings.bind, self.endpoint)

    def _placement(self, ref: ComponentRef) -> type[Component] | None:
        host = ref.description.get("sfProcessHost")
        if isinstance(host, str) and host and not self.is_this_host(host):
            return self._remote_type
        return None

    # -- subtrees created here for parents on other daemons ------------------------------------------
    def _create_subtree(self, request: Request, message: CreateSubtree) -> None:
        config = description_from(message.description, message.tree, filename=f"<{':'.join(message.path)}>")
        takeover = self.high_availability.takeover
        stale = takeover.stale_parent(message.path, message.parent_endpoint) if takeover is not None else None
        if stale is not None:  # an HARestarter's old copy, back: its children are the new one's now
            request.reply(RequestFailed(error=f"{':'.join(message.path)} is not created for {message.parent_endpoint}: "
                                        f"{stale}", hint="sd-actors status shows where the HARestarter runs"))
            return
        parent_key = (message.parent_endpoint, message.path[:-1])
        with self._parents_lock:
            parent = self._remote_parents.get(parent_key)
            if parent is None or not parent.alive:
                link = self.peers.link(message.parent_endpoint, request.client_key or None)
                link.heard()
                notify_type = type("RemoteParent", (RemoteParent,), {
                    "notify": staticmethod(lambda child, record: self._tell_parent(link.endpoint, child, record))})
                parent = self.system.runtime.attach_placeholder(message.path[:-1], notify_type)
                self._remote_parents[parent_key] = parent
        self._hand_over(message.path, "its parent asked for it again", keep=parent_key)
        with self._parents_lock:
            self._forward_routes.clear()  # the new subtree's events go to its parent, not an old one's
        try:
            self.system.runtime.create_child(parent, message.path[-1], config)
        except ComponentFailed as failure:
            request.reply(RequestFailed(error=str(failure), record=record_info(failure.record)))
            return
        self._wait_forwarded()
        request.reply(Done())

    def _hand_over(self, under: tuple[str, ...], why: str,
                   keep: tuple[str, tuple[str, ...]] | None = None) -> None:
        """Detach the subtrees hosted here at ``under`` or below it, for whichever parent: the parent
        asks again for a subtree that outlived it (its daemon restarted and re-deploys, or a survivor
        took its HARestarter over): what the old one holds is handed over, not destroyed (VMs re-attach)."""
        with self._parents_lock:
            hosted = [(key, parent, child) for key, parent in self._remote_parents.items()
                      for child in list(parent.children)
                      if child.path[:len(under)] == under and child.alive]
        for key, parent, existing in hosted:
            logger.warning("%s: %s; the running one hands over what it holds", existing.name_text, why)
            self.system.runtime.terminate_component(existing, TerminationRecord(DETACHED, why, existing.path),
                                                    notify_parent=False)
            with self._parents_lock:  # an old parent left with nothing here gets no more events
                if key != keep and not any(child.alive for child in parent.children):
                    self._remote_parents.pop(key, None)
                    self._forward_routes.clear()

    def adopt_application(self, app: str, description_text: str, under: tuple[str, ...]) -> None:
        """Deploy ``app``, taken over from a silent daemon (policies/_takeover.py): the subtrees this
        daemon runs at ``under`` or below for the old one are handed over to the new components.

        :raises DeploymentError: it could not be deployed (the journal says so too).
        """
        config = parse_string(description_text, filename=f"<{app}>", use_library=False)
        self.journal.begin_deploy(app, description_text, requested_by="takeover", host=self.settings.host)
        self._hand_over(under, "its HARestarter was taken over by this daemon")
        record = self._run_deploy(app, config)
        if record is not None:
            raise ComponentFailed(record)

    def end_taken_over(self, path: tuple[str, ...], host: str) -> None:
        """The HARestarter at ``path``, taken over by ``host``, ended there (``sd-actors down``): the
        application it belonged to here ends too, if it still runs here."""
        app = path[0]
        root = self.system.apps().get(app)
        if host == self.settings.bind or root is None or not root.alive:
            return
        record = TerminationRecord.normal(f"terminated: its HARestarter {':'.join(path)} was taken down on {host}, "
                                          "where it had been taken over", (app,))
        with contextlib.suppress(JournalError):
            self.journal.begin_terminate(app, record)
        threading.Thread(target=lambda: self._journal_ended(app, self.system.terminate(app, record)), daemon=True,
                         name=f"sd-actors-end-{app}").start()

    def _forward_event(self, event: LifecycleEvent) -> None:
        """An event of a subtree hosted here for another daemon goes to that daemon too.

        On the thread that changed the state (a deployment's, for every VM): it only finds the
        route and queues the event; the sender makes the notices."""
        path = event.path
        if len(path) < 2 or not self._remote_parents:
            return
        targets = self._forward_routes.get(path[:-1])
        if targets is None:
            targets = self._route(event)
        dead_after = self.settings.dead_after
        for endpoint in targets:
            # Not to a parent silent past --dead-after: it would hold up the events to the others
            # for a request's timeout, and it asks again when it is back.
            if self.peers.link(endpoint).silent_for() > dead_after:
                continue
            with self._forward_changed:
                waiting = self._forwarding.setdefault(endpoint, [])
                waiting.append(event)
                if len(waiting) >= FORWARD_LIMIT or event.new is State.FAILED:
                    self._forward_changed.notify_all()  # no more gathering: send them now
                if len(waiting) > 1:
                    continue  # a send is on its way and takes this one too
            with contextlib.suppress(RuntimeError):  # the daemon is stopping
                self._sender.submit(self._send_forwarded, endpoint)

    def _route(self, event: LifecycleEvent) -> tuple[str, ...]:
        """The daemons of the parents ``event``'s subtree hangs under: only the one whose subtree it
        is (after a takeover, two parents may have hung subtrees at the same path here)."""
        path = event.path
        components = self.system.runtime.components
        cacheable = True
        with self._parents_lock:
            targets = []
            for (endpoint, parent_path), parent in self._remote_parents.items():
                depth = len(parent_path)
                if len(path) <= depth or path[:depth] != parent_path:
                    continue
                if len(path) == depth + 1:
                    # The subtree's own top: its siblings may belong to another parent.
                    cacheable = False
                    if event.new.is_final:
                        self._forward_routes.clear()  # the routes below it may name it no more
                if getattr(components.get(path[:depth + 1]), "parent", parent) is parent:
                    targets.append(endpoint)
            found = tuple(targets)
            if cacheable:
                self._forward_routes[path[:-1]] = found
        return found

    def _send_forwarded(self, endpoint: str) -> None:
        """Send the events waiting for ``endpoint``: all of them in one request (those that come while
        it travels go with the next), in order, one request at a time.

        The first event waits up to FORWARD_GATHER_SECONDS for company: a deployment makes one
        every few hundred µs, and a request each (1,000 VMs: 3,000) costs both daemons more than
        the events do. A full batch, a failure or a step's end (_wait_forwarded) sends at once."""
        deadline = time.monotonic() + FORWARD_GATHER_SECONDS
        with self._forward_changed:
            while True:
                waiting = self._forwarding.get(endpoint, ())
                if (self._forward_flushes or len(waiting) >= FORWARD_LIMIT
                        or (waiting and waiting[-1].new is State.FAILED)):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._forward_changed.wait(remaining)
            events = self._forwarding.pop(endpoint, ())
        if not events:
            return
        host = self.settings.host
        notices = tuple(_notice(event, host) for event in events)
        try:
            self.peers.link(endpoint).request(SubtreeEvents(notices=notices), timeout=10)
        except (TimeoutError, OSError, ComponentFailed) as error:
            logger.debug("could not send %d events to %s: %s", len(notices), endpoint, error)

    def _wait_forwarded(self) -> None:
        """Wait until the events published so far have gone to the parents' daemons: a step's
        answer comes after its events, so the parent's watchers see every one before it ends."""
        with self._forward_changed:
            self._forward_flushes += 1
            self._forward_changed.notify_all()
        try:
            with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError, TimeoutError):
                self._sender.submit(lambda: None).result(timeout=10)
        finally:
            with self._forward_changed:
                self._forward_flushes -= 1

    def _republish(self, message: SubtreeEvents) -> None:
        for notice in message.notices:
            self.system.runtime.bus.publish(LifecycleEvent(
                notice.path, State(notice.old) if notice.old else None, State(notice.new), notice.time,
                to_record(notice.record, notice.path) if notice.record else None, notice.host,
                notice.component_class))

    def _tell_parent(self, endpoint: str, child: ComponentRef, record: TerminationRecord) -> None:
        threading.Thread(target=self._send_subtree_terminated, args=(endpoint, child, record, 10.0), daemon=True,
                         name="sd-actors-notify").start()

    def _send_subtree_terminated(self, endpoint: str, child: ComponentRef, record: TerminationRecord,
                                 timeout: float) -> None:
        """Tell the daemon of ``child``'s parent that it ended; if that fails, it learns it from the heartbeats."""
        try:
            self.peers.link(endpoint).request(SubtreeTerminated(path=child.path, record=to_info(record)),
                                              timeout=timeout)
        except (TimeoutError, OSError, ComponentFailed) as error:
            logger.warning("could not tell %s that %s terminated: %s", endpoint, child.name_text, error)

    def _step_subtree(self, request: Request, message: StepSubtree) -> None:
        ref = self.system.lookup(message.path)
        try:
            if message.step == "deploy":
                ref.deploy()
            elif message.step == "start":
                ref.start()
            else:
                request.reply(RequestFailed(error=f"unknown step {message.step!r}"))
                return
        except ComponentFailed as failure:
            request.reply(RequestFailed(error=str(failure), record=record_info(failure.record)))
            return
        self._wait_forwarded()
        request.reply(Done())

    def _watch_remote_parents(self) -> None:
        """A subtree whose parent's daemon went silent terminates itself (SmartFrog's child-side liveness),
        unless an HARestarter manages it: what it runs (VMs) must survive the death of the host its
        application was deployed from. Such a subtree goes on — it still fences itself when this
        daemon loses the majority — until its parent, back, asks for it again or stops it."""
        from sd_actors.policies import HA_GENERATION  # policies build on the actors

        orphans_said: set[tuple[str, ...]] = set()
        while not self.stopped.wait(self.peers.interval):
            with self._parents_lock:
                parents = list(self._remote_parents.items())
            for (endpoint, _), parent in parents:
                link = self.peers.link(endpoint)
                limit = self.settings.dead_after
                if link.silent_for() > limit and parent.children:
                    record = TerminationRecord.abnormal(
                        f"the parent's host ({endpoint}) has been unreachable for {link.silent_for():.1f} s",
                        parent.path, "externalReferenceDead")
                    for child in list(parent.children):
                        if HA_GENERATION in child.description:
                            if child.path not in orphans_said:
                                orphans_said.add(child.path)
                                takeover = self.high_availability.takeover
                                known = takeover is not None and takeover.replica_above(child.path) is not None
                                logger.warning("%s: its parent's host (%s) is unreachable; it keeps running under "
                                               "its HARestarter's rules%s", child.name_text, endpoint, "" if known else
                                               " (no replica of its HARestarter is kept here: this daemon cannot "
                                               "take it over)")
                            continue
                        self.system.runtime.terminate_component(child, record, notify_parent=False)
                elif link.silent_for() <= limit:
                    orphans_said.difference_update(c.path for c in parent.children)

    # -- the journal follows every lifecycle change ------------------------------------------------
    def _journal_event(self, event: LifecycleEvent) -> None:
        app = event.path[0] if event.path else ""
        try:
            # Notes: written in batches a moment later. What recovery relies on (the application's
            # status, what components hold) is written at once, before it is acted on.
            if event.new is State.CREATED:
                self.journal.note_component(app, event.path, component_class=event.component_class,
                                            host=self.settings.host, state=event.new)
            else:
                self.journal.note_state(app, event.path, event.new, event.record)
        except DeploymentError as error:  # an app deployed without the journal (tests, embedding)
            logger.debug("journal: %s", error)
        if event.path == (app,) and event.new.is_final and event.record is not None:
            # However the application ended (down, a failure, a workflow that finished): say so.
            self._journal_ended(app, event.record)

    def _journal_ended(self, app: str, record: TerminationRecord) -> None:
        """Journal, once, that ``app`` ended with ``record`` (its root's final event usually did)."""
        with contextlib.suppress(JournalError):
            if not self.journal.application(app).status.is_final:
                self.journal.mark_terminated(app, record)

    # -- requests ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> None:
        message = request.message
        try:
            match message:
                case DeployApplication():
                    self._deploy(request, message)
                case WatchApplication():
                    self._watch(request, message)
                case TerminateApplication():
                    self._terminate(request, message)
                case GetStatus():
                    request.reply(self.status(message.app))
                case GetHosts():
                    request.reply(self.hosts())
                case CreateSubtree():
                    self._create_subtree(request, message)
                case StepSubtree():
                    self._step_subtree(request, message)
                case TerminateSubtree(path=path, record=record, parent_endpoint=parent_endpoint):
                    takeover = self.high_availability.takeover
                    stale = takeover.stale_parent(path, parent_endpoint) if takeover and parent_endpoint else None
                    if stale is not None:  # an HARestarter's old copy: the new one's component is not its to end
                        request.reply(RequestFailed(error=f"{':'.join(path)} is not terminated for {parent_endpoint}: "
                                                    f"{stale}"))
                        return
                    ref = self.system.lookup(path)
                    self.system.runtime.terminate_component(ref, to_record(record, path), notify_parent=False)
                    request.reply(Done())
                case TerminateComponentRemotely(path=path, record=record, notify_parent=notify_parent):
                    self.system.runtime.terminate_component(self.system.lookup(path), to_record(record, path),
                                                            notify_parent=notify_parent)
                    request.reply(Done())
                case InvokeComponent(path=path, method=method, arguments=arguments):
                    result = self.system.lookup(path).invoke(method, *msgpack.unpackb(arguments))
                    request.reply(InvokeResult(value=pack_result(result)))
                case SubtreeEvents():
                    self._republish(message)
                    request.reply(Done())
                case SubtreeTerminated(path=path, record=record):
                    self.system.lookup(path).terminate_nowait(to_record(record, path))
                    request.reply(Done())
                case Heartbeat():
                    self.peers.receive(message, request.client_key)
                    request.reply(Done())
                case _ if self.high_availability.answers(message):
                    request.reply(self.high_availability.answer(message))
                case ShutdownDaemon():
                    request.reply(Done())
                    self.stopped.set()
                case GetCapacity() | ReserveCapacity() | ReleaseCapacity():
                    from sd_actors.policies import host_ledger  # policies build on the actors, not under them

                    request.reply(host_ledger(self.system.runtime).answer(message))
                case WatchApplications(seconds=seconds):
                    self._watch_all(request, seconds)
                case GetComponent(path=path):
                    request.reply(self._component_details(self.system.lookup(path)))
                case TerminateComponent():
                    self._terminate_component(request, message)
                case _:
                    request.reply(RequestFailed(error=f"{type(message).__name__} is not a request"))
        except (DeploymentError, DescriptionError) as error:
            failed = error.record if isinstance(error, ComponentFailed) else None
            request.reply(RequestFailed(error=str(error), hint=getattr(error, "hint", "") or "",
                                        record=record_info(failed)))

    def _deploy(self, request: Request, message: DeployApplication) -> None:
        """Journal, answer DeployAccepted, then stream the app's lifecycle until it is up or failed."""
        config = description_from(message.description, message.tree, filename=f"<{message.app}>")
        try:
            self.journal.begin_deploy(message.app, message.description, description_tree=message.tree or None,
                                      requested_by=message.requested_by or request.client_key,
                                      host=self.settings.host)
        except DuplicateApplication as duplicate:
            if duplicate.status is ApplicationStatus.RUNNING and self._update(request, message, config):
                return
            if duplicate.status in (ApplicationStatus.RUNNING, ApplicationStatus.DEPLOYING):
                request.reply(DeployAccepted(app=message.app, host=self.settings.host, already_running=True))
                return
            raise
        request.reply(DeployAccepted(app=message.app, host=self.settings.host))
        ended: list[TerminationRecord] = []
        failed = threading.Event()
        progress = ProgressStream(request.reply)

        def follow(event: LifecycleEvent) -> None:
            self._notify(progress, message.app, event)
            # The application ended (shared fate brings a failure up to the root unless a policy
            # such as a Supervisor handled it there).
            if event.path == (message.app,) and event.new.is_final:
                ended.append(event.record or TerminationRecord.normal("ended", event.path))
                failed.set()

        unsubscribe = self.system.subscribe(follow)
        try:
            record = self._run_deploy(message.app, config)
            # A component may fail just after it started (a command that exits at once): up waits
            # for that, so it never says "up" about something already broken.
            if record is None and message.settle > 0 and failed.wait(min(message.settle, 60.0)):
                record = ended[0]
        finally:
            unsubscribe()
            progress.close()
        state = "started" if record is None else "terminated" if record.is_normal else "failed"
        request.reply(WatchEnded(app=message.app, state=state, record=record_info(record)))
        self._write_description_text(message)

    def _write_description_text(self, message: DeployApplication) -> None:
        """A description sent as a tree alone is journaled as text too, now that ``up`` has its answer:
        the text is for people reading the journal, the tree is what a restart deploys."""
        if message.description or not message.tree:
            return
        try:
            text = to_sf(decode_description(message.tree))
            self.journal.fill_description_text(message.app, message.tree, text)
        except (DescriptionError, JournalError) as error:
            logger.warning("%s: the journal keeps its description as a tree only: %s", message.app, error)

    def _notify(self, progress: ProgressStream, app: str, event: LifecycleEvent) -> None:
        if event.path and event.path[0] == app:
            progress.add(_notice(event))

    def _update(self, request: Request, message: DeployApplication, config: ComponentDescription) -> bool:
        """``up`` of a running app: its components take the changes (or it is refused, changing nothing).
        False when the description is the same: nothing to do."""
        app, old = message.app, self.journal.application(message.app)
        if old.description_tree and message.tree:
            if old.description_tree == message.tree:  # the encoding has no source locations: equal trees, same text
                return False
        elif old.text() == (message.description or to_sf(config)):
            return False
        changes = plan_update(app, old.description(), config, self.system.runtime.component_types)
        if not changes:
            return False
        targets = running_components(self.system, app, changes)
        self.journal.replace_description(app, message.description, message.tree or None)
        request.reply(DeployAccepted(app=app, host=self.settings.host,
                                     update="; ".join(change.text for change in changes)))
        progress = ProgressStream(request.reply)
        unsubscribe = self.system.subscribe(lambda event: self._notify(progress, app, event))
        try:
            apply_update(targets)
        except ComponentFailed as failure:
            self.journal.replace_description(app, old.description_text, old.description_tree)
            progress.close()  # the notices before the answer that ends the stream
            request.reply(RequestFailed(error=f"{app} runs as before: the update failed: {failure.record}",
                                        record=record_info(failure.record)))
            return True
        finally:
            unsubscribe()
            progress.close()
        request.reply(WatchEnded(app=app, state="started"))
        self._write_description_text(message)
        return True

    def _run_deploy(self, app: str, config: ComponentDescription) -> TerminationRecord | None:
        """Deploy and journal the outcome; the failing component's record, or None when it is up."""
        try:
            self.system.deploy(config, name=app)
        except DeploymentError as error:
            record = error.record if isinstance(error, ComponentFailed) else \
                TerminationRecord.abnormal(str(error), (app,))
            self._journal_ended(app, record)  # when the failure came before any root existed
            return record
        with contextlib.suppress(JournalError):  # re-deployed after a restart: the journal says running already
            self.journal.mark_running(app)
        return None

    def _watch(self, request: Request, message: WatchApplication) -> None:
        app = message.app
        finished = threading.Event()
        lock = threading.Lock()

        def send(event: LifecycleEvent) -> None:
            if not event.path or event.path[0] != app:
                return
            with lock:
                if finished.is_set():
                    return
                request.reply(_notice(event))
                root_done = event.path == (app,) and (
                    event.new.is_final or (message.until_started and event.new is State.STARTED))
                if root_done:
                    finished.set()
                    request.reply(WatchEnded(app=app, state=event.new.value, record=record_info(event.record)))

        unsubscribe = self.system.subscribe(send)
        try:
            root = self.system.apps().get(app)
            if root is not None and root.state is not None and (
                    root.state.is_final or (message.until_started and root.state is State.STARTED)):
                with lock:
                    if not finished.is_set():
                        finished.set()
                        request.reply(WatchEnded(app=app, state=root.state.value, record=record_info(root.record)))
            elif root is None and self._journal_status(app) in (ApplicationStatus.TERMINATED, ApplicationStatus.FAILED):
                entry = self.journal.application(app)
                with lock:
                    finished.set()
                    request.reply(WatchEnded(app=app, state=entry.status.value, record=record_info(entry.record)))
            finished.wait(timeout=24 * 3600)
        finally:
            unsubscribe()

    def _journal_status(self, app: str) -> ApplicationStatus | None:
        try:
            return self.journal.application(app).status
        except JournalError:
            return None

    def _terminate(self, request: Request, message: TerminateApplication) -> None:
        root = self.system.apps().get(message.app)
        if root is None or not root.alive:
            with self._recovering_lock:
                recovering = message.app in self._recovering
                if recovering:
                    record = TerminationRecord.normal("terminated on request (sd-actors down)", (message.app,))
                    self._recovering[message.app] = record
            if recovering:
                # Not running yet: re-deployed after a restart, it waits (for this daemon's lease, or for
                # the pool's answers). The down is journaled now and done the moment that wait ends.
                self.journal.begin_terminate(message.app, record)
                request.reply(ApplicationTerminated(app=message.app, record=record_info(TerminationRecord.normal(
                    "terminating: its re-deployment after this daemon's restart is waiting (for a lease or the "
                    "pool's answers); it is taken down as soon as that wait ends (and stays down if this daemon "
                    "restarts)",
                    (message.app,)))))
                return
            status = self._journal_status(message.app)
            if status is None:
                known = ", ".join(sorted(name for name, root in self.system.apps().items() if root.alive)) or "none"
                takeover = self.high_availability.takeover
                elsewhere = sorted({replica.host for replica in takeover.replicas.all() if replica.app == message.app}
                                   if takeover is not None else ())
                hint = (f"its HARestarter runs on {elsewhere[0]}: sd-actors down {message.app} --host {elsewhere[0]}"
                        if elsewhere else f"running here: {known}; see sd-actors ls")
                request.reply(RequestFailed(error=f"no application named {message.app!r} on this daemon", hint=hint))
                return
            request.reply(ApplicationTerminated(app=message.app, record=record_info(root.record if root else None)))
            return
        record = TerminationRecord.normal("terminated on request (sd-actors down)", (message.app,))
        self.journal.begin_terminate(message.app, record)
        if not message.wait:
            request.reply(ApplicationTerminated(app=message.app, record=None))
        final = self.system.terminate(message.app, record)
        self._journal_ended(message.app, final)
        if message.wait:
            request.reply(ApplicationTerminated(app=message.app, record=record_info(final)))

    # -- for the web console ----------------------------------------------------------------------
    def _watch_all(self, request: Request, seconds: float) -> None:
        lock = threading.Lock()
        watching = True

        def send(event: LifecycleEvent) -> None:
            with lock:
                if watching:
                    request.reply(_notice(event))

        unsubscribe = self.system.subscribe(send)
        try:
            self.stopped.wait(min(max(seconds, 0.0), 300.0))
        finally:
            unsubscribe()
            with lock:
                watching = False
                request.reply(Done())

    def _component_details(self, ref: ComponentRef) -> ComponentDetails:
        description = ref.description
        # Children are the tree's nodes, not attributes (also once they have terminated).
        attributes = tuple(
            AttributeInfo(name=name, value=format_value(value), tags=tuple(sorted(description.tags(name))))
            for name, value in description.items()
            if not (isinstance(value, ComponentDescription) and value.eager and "sfClass" in value))
        return ComponentDetails(status=_component_status(ref, self.settings.host), attributes=attributes)

    def _terminate_component(self, request: Request, message: TerminateComponent) -> None:
        ref = self.system.lookup(message.path)
        if message.kind not in ("normal", "abnormal"):
            request.reply(RequestFailed(error=f"termination kind {message.kind!r} is not normal or abnormal",
                                        hint="ask for a normal or an abnormal termination"))
            return
        record = TerminationRecord(message.kind, message.description or "terminated on request", ref.path)
        if len(ref.path) == 1:  # an application's root: journaled like sd-actors down
            with contextlib.suppress(JournalError):
                self.journal.begin_terminate(ref.path[0], record)
        final = self.system.terminate(ref.path, record)
        if len(ref.path) == 1:
            self._journal_ended(ref.path[0], final)
        request.reply(ComponentTerminated(path=ref.path, record=record_info(final)))

    def hosts(self) -> HostsReply:
        """The pool as this daemon's membership sees it: state and when each was last heard; the
        ``--peer`` seeds not heard from yet are ``unheard``. Every host listed counts for a majority."""
        wall, monotonic = time.time(), time.monotonic()
        hosts = []
        members = self.peers.members()
        for member in members:
            heard = wall if member.is_self else (
                None if member.last_heard is None else wall - (monotonic - member.last_heard))
            hosts.append(HostStatus(address=member.address, state=member.state, last_heard=heard,
                                    is_self=member.is_self))
        known = {member.address for member in members}
        hosts.extend(HostStatus(address=address, state="unheard", last_heard=None)
                     for address in self.peers.electorate() if address not in known)
        return HostsReply(hosts=tuple(sorted(hosts, key=lambda host: host.address)))

    def status(self, only: str = "") -> StatusReply:
        applications = []
        for entry in self.journal.applications(with_descriptions=False):
            if only and entry.name != only:
                continue
            root = self.system.apps().get(entry.name)
            components = tuple(_component_status(ref, self.settings.host) for ref in _tree(root)) if root else ()
            applications.append(ApplicationInfo(name=entry.name, status=entry.status.value, host=entry.host,
                                                updated=entry.updated, components=components,
                                                record=record_info(entry.record)))
        # Subtrees this daemon runs for parents on other hosts.
        hosted: dict[str, list[ComponentStatus]] = {}
        with self._parents_lock:
            parents = list(self._remote_parents.values())
        for parent in parents:
            app = parent.path[0]
            if only and app != only:
                continue
            for child in list(parent.children):
                hosted.setdefault(app, []).extend(_component_status(ref, self.settings.host) for ref in _tree(child))
        for app, hosted_components in hosted.items():
            applications.append(ApplicationInfo(name=app, status="hosted", host=self.settings.host,
                                                updated=time.time(), components=tuple(hosted_components)))
        # The HARestarters other daemons run, as replicated here: where each one runs now.
        takeover = self.high_availability.takeover
        for replica in takeover.replicas.all() if takeover is not None else ():
            if replica.host != self.settings.bind and (not only or replica.app == only):
                applications.append(ApplicationInfo(
                    name=replica.app, status="replicated", host=replica.host, updated=time.time(),
                    components=(ComponentStatus(path=replica.path, state=f"epoch {replica.epoch}", host=replica.host,
                                                component_class="sd_actors.policies.HARestarter"),)))
        return StatusReply(host=self.settings.host, applications=tuple(applications))

    # -- after a crash -----------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Re-deploy what the journal says should be running; return what was done, for the log."""
        plan = self.journal.recover()
        done = []
        for recovery in (*plan.unfinished_deploys, *plan.to_reattach, *plan.unfinished_terminations):
            for component in recovery.components:
                if component.resource and component.resource.startswith("process-group:"):
                    killed = kill_leftover_groups(component.resource)
                    if killed:
                        done.append(f"{':'.join(component.path)}: killed process groups {killed} left by the "
                                    "crashed daemon (the component starts afresh)")
        for recovery in (*plan.unfinished_deploys, *plan.to_reattach):
            entry = recovery.application
            try:
                config = entry.description()
            except DescriptionError as error:
                self.journal.mark_terminated(entry.name, TerminationRecord.abnormal(
                    f"lost after a daemon restart: its description no longer resolves: {error}", (entry.name,)))
                done.append(f"{entry.name}: lost ({error.message})")
                continue
            with self._recovering_lock:
                self._recovering[entry.name] = None
            threading.Thread(target=self._redeploy, args=(entry.name, config), daemon=True,
                             name=f"sd-actors-recover-{entry.name}").start()
            done.append(f"{entry.name}: re-deploying after a restart ({len(recovery.components)} components "
                        "were journaled)")
        for recovery in plan.unfinished_terminations:
            record = TerminationRecord.normal("terminated: its daemon restarted during sd-actors down",
                                              (recovery.application.name,))
            self.journal.mark_terminated(recovery.application.name, record)
            done.append(f"{recovery.application.name}: termination completed after a restart")
        return done

    def _redeploy(self, app: str, config: ComponentDescription) -> None:
        try:
            # HA components never start before this daemon holds its lease (policies/README.md).
            if self.high_availability.wait_to_redeploy(app, config) and not self._down_asked(app):
                self._run_deploy(app, config)
        finally:
            with self._recovering_lock:
                record = self._recovering.pop(app, None)
            if record is not None:  # sd-actors down came while it waited
                if app in self.system.apps():
                    self._journal_ended(app, self.system.terminate(app, record))
                else:
                    self._journal_ended(app, record)

    def _down_asked(self, app: str) -> bool:
        with self._recovering_lock:
            return self._recovering.get(app) is not None

    def announce_ready(self) -> str:
        """Write the readiness file and return the line to print."""
        info = {"endpoint": self.endpoint, "pid": os.getpid(), "host": self.settings.host,
                "public_key": self.keypair.public.decode() if self.keypair else None,
                "insecure": self.keypair is None}
        path = self.settings.state_dir / READY_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(info))
        temporary.replace(path)
        return f"sd-actors daemon ready on {self.endpoint} (state in {self.settings.state_dir})"

    def _end_hosted_subtrees(self) -> None:
        """Subtrees run here for parents on other daemons are not this daemon's to keep: their
        parents decide what happens next (shared fate, or a restart elsewhere), so they end now —
        never left running where no one would stop them — and their parents are told why."""
        with self._parents_lock:
            hosted = [(endpoint, parent) for (endpoint, _), parent in self._remote_parents.items()]
        for endpoint, parent in hosted:
            for child in list(parent.children):
                record = TerminationRecord.abnormal(f"the daemon on {self.settings.host} stopped", child.path)
                self.system.runtime.terminate_component(child, record, notify_parent=False)
                self._send_subtree_terminated(endpoint, child, record, 2.0)  # before the links close

    def close(self) -> None:
        """Stop serving. The journal stops listening first, so it still says the applications run:
        their components are detached, not terminated (VMs keep running), and the next daemon on
        this state folder re-deploys them, re-attaching to what still exists. The HA ones among
        them are the host watchdog's to stop if no daemon renews their lease in time."""
        self.stopped.set()
        self.high_availability.leave_to_watchdog()
        self._unsubscribe()
        self._end_hosted_subtrees()
        self.system.close(detach=True)
        self._unsubscribe_forwarding()
        self._sender.shutdown(wait=False, cancel_futures=True)
        self.high_availability.close()
        self.peers.close()
        self.node.close()
        (self.settings.state_dir / READY_FILE).unlink(missing_ok=True)


def _notice(event: LifecycleEvent, host: str | None = None) -> LifecycleNotice:
    """``event`` on the wire; ``host``: the daemon forwarding it, instead of the host the event names."""
    return LifecycleNotice(path=event.path, old=event.old.value if event.old else "", new=event.new.value,
                           time=event.time, host=event.host if host is None else host,
                           component_class=event.component_class, record=record_info(event.record))


def _tree(root: ComponentRef) -> Iterator[ComponentRef]:
    yield root
    for child in list(root.children):
        yield from _tree(child)


def _component_status(ref: ComponentRef, host: str) -> ComponentStatus:
    if isinstance(ref.component, RemoteComponent):
        host = ref.component.host
    return ComponentStatus(path=ref.path, state=ref.state.value if ref.state else "new", host=host,
                           component_class=ref.component_class, liveness="ok" if ref.alive else "",
                           record=record_info(ref.record))


def _plugin_manager(settings: DaemonSettings) -> pluggy.PluginManager:
    """The installed plugins (entry points) and the modules ``--plugin`` names."""
    modules = []
    for name in settings.plugins:
        try:
            modules.append(importlib.import_module(name))
        except Exception as error:  # noqa: BLE001 (whatever the module raises, the daemon does not start)
            raise DeploymentError(
                f"--plugin {name}: cannot import it ({type(error).__name__}: {error}); give a module on the "
                "daemon's Python path (PYTHONPATH), such as mycompany.policies") from None
    return make_plugin_manager(plugins=modules)


@contextmanager
def open_daemon(settings: DaemonSettings) -> Iterator[Daemon]:
    """Start a daemon (keys, journal, System, node); stop everything on exit.

    :raises DeploymentError: no keys and not ``insecure``, or the address is taken.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keypair: KeyPair | None = None
    if settings.insecure:
        logger.warning(insecure_warning(settings.bind))
    else:
        try:
            keypair = load_keypair(settings.state_dir)
        except Exception as error:  # noqa: BLE001 (any key problem stops the start, with its own message)
            raise DeploymentError(f"the daemon has no usable keys in {settings.state_dir}: {error}; run "
                                  f"'sd-actors keys init --state-dir {settings.state_dir}' (or pass --insecure for "
                                  "a local experiment)") from None
    with ExitStack() as stack:
        journal = stack.enter_context(open_journal(settings.state_dir))
        # --hypervisor: the libvirt URI of VMs whose description names none.
        properties = {"sd_actors.hypervisor": settings.hypervisor} if settings.hypervisor else {}
        system = stack.enter_context(open_system(host=settings.host, terminate_timeout=settings.terminate_timeout,
                                                 properties=properties, plugin_manager=_plugin_manager(settings)))
        try:
            daemon = Daemon(settings, system=system, journal=journal, keypair=keypair)
        except OSError as error:
            raise DeploymentError(f"{error}; is another daemon running? (see {settings.state_dir / READY_FILE})") \
                from None
        stack.callback(daemon.close)
        for line in daemon.recover():
            logger.warning("journal: %s", line)
        yield daemon


__all__ = ["Daemon", "DaemonSettings", "default_state_dir", "make_registry", "open_daemon", "to_sf"]
