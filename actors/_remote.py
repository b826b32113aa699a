"""Subtrees on other hosts: a proxy child on the parent's daemon, a proxy parent on the child's.

A component whose description says ``sfProcessHost "h2"`` is created by h2's daemon. On the
parent's daemon it is a :class:`RemoteComponent` that forwards every lifecycle step to h2 and
fails when h2 goes silent or its daemon restarts (the new run has none of the subtree); on h2
the subtree hangs under a :class:`RemoteParent` that tells the parent's daemon when the subtree
terminates by itself. Liveness between two daemons rides on one
heartbeat stream per pair (:class:`PeerLink`), never on per-component pings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import msgpack

from sd_actors.actors._component import Component, ComponentContext, Reaction
from sd_actors.actors._errors import ComponentFailed, DeploymentError
from sd_actors.actors._forgotten_hosts import ForgottenHosts
from sd_actors.actors._record_info import to_info, to_record
from sd_actors.actors._records import TerminationRecord
from sd_actors.actors._runtime import ComponentRef
from sd_actors.net import Heartbeat, KeyPair, Member, Membership, MessageRegistry
from sd_actors.net._node import Client
from sd_actors.net._peer_protocol import (
    CreateSubtree,
    InvokeComponent,
    InvokeResult,
    StepSubtree,
    TerminateComponentRemotely,
    TerminateSubtree,
)
from sd_actors.net._protocol import GetHosts, RequestFailed

if TYPE_CHECKING:
    from sd_actors.actors._runtime import Runtime

logger = logging.getLogger(__name__)

STEP_TIMEOUT: Final = 3600.0
PROBE_TIMEOUT: Final = 3.0


class PeerLink:
    """What one daemon knows of and uses to reach another: clients on demand, and its heartbeats."""

    def __init__(self, endpoint: str, *, registry: MessageRegistry, keypair: KeyPair | None,
                 server_public: str | None) -> None:
        self.endpoint = endpoint
        self._registry = registry
        self._keypair = keypair
        self._server_public = server_public
        self._idle: list[Client] = []
        self._lock = threading.Lock()
        self.last_heard: float | None = None
        # When the newest heartbeat this peer answered was sent (monotonic): a lease is renewed by
        # the answers of a majority (policies/README.md, "HARestarter").
        self.last_acknowledged: float | None = None

    @contextmanager
    def client(self) -> Iterator[Client]:
        """A client of this peer for one exchange (pooled: requests to one peer run side by side)."""
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = Client(self.endpoint, registry=self._registry, keypair=self._keypair,
                            server_public=self._server_public)
        healthy = False
        try:
            yield client
            healthy = True
        finally:
            if healthy:
                with self._lock:
                    self._idle.append(client)
            else:
                client.close()  # its socket may still get a late answer: never reuse it

    def request(self, message: object, *, timeout: float) -> object:
        with self.client() as client:
            return client.request(message, timeout=timeout)

    def heard(self) -> None:
        self.last_heard = time.monotonic()

    def silent_for(self) -> float:
        return float("inf") if self.last_heard is None else time.monotonic() - self.last_heard

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()


class Peers:
    """Every daemon this one talks to: gossip membership, and the heartbeat stream to each.

    Each interval the membership says which heartbeats to send (carrying its view, so daemons
    learn of each other from seeds without a master); a daemon heard from is alive, silent for
    ``suspect_after`` suspect, for ``dead_after`` dead. Remote components ask their link how long
    their host has been silent: component liveness rides on this one stream per pair.

    With ``forgotten_hosts`` (the state folder's list), the daemons forgotten on purpose stay
    forgotten across restarts of this one.
    """

    def __init__(self, *, own_endpoint: str, registry: MessageRegistry, keypair: KeyPair | None,
                 known_keys: Callable[[str], str | None], interval: float = 0.5, suspect_after: float = 1.5,
                 dead_after: float = 5.0, forgotten_hosts: ForgottenHosts | None = None) -> None:
        self.own_endpoint = own_endpoint
        self._registry = registry
        self._keypair = keypair
        self._known_keys = known_keys
        self._links: dict[str, PeerLink] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.interval = interval
        self._forgotten_hosts = forgotten_hosts
        forgotten = forgotten_hosts.kept if forgotten_hosts is not None else {}
        if forgotten:
            logger.info("forgotten on purpose (sd-actors forget-host), counted in no majority until heard from again: "
                        "%s", ", ".join(sorted(forgotten)))
        self.membership = Membership(own_endpoint, keypair.public.decode() if keypair else "",
                                     incarnation=int(time.time() * 1000), clock=time.monotonic, interval=interval,
                                     suspect_after=suspect_after, dead_after=dead_after, forgotten=forgotten)
        self._membership_lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name="sd-actors-heartbeat", daemon=True)
        self._thread.start()

    def seed(self, endpoints: Sequence[str]) -> None:
        with self._membership_lock:
            self.membership.seed(endpoints)
            forgotten = self.membership.forgotten()
        for endpoint in sorted(set(endpoints) & forgotten.keys()):
            logger.info("--peer %s was forgotten (sd-actors forget-host): it counts again once it is heard from",
                        endpoint)

    def link(self, endpoint: str, public_key: str | None = None) -> PeerLink:
        with self._lock:
            link = self._links.get(endpoint)
            if link is None:
                with self._membership_lock:
                    gossiped = self.membership.public_key(endpoint)
                key = public_key or gossiped or self._known_keys(endpoint)
                if self._keypair is not None and not key:
                    raise ComponentFailed(TerminationRecord.abnormal(
                        f"the public key of the daemon at {endpoint} is unknown: run 'sd-actors keys trust "
                        f"{endpoint} KEY --state-dir …' on this daemon's host", ()))
                link = PeerLink(endpoint, registry=self._registry, keypair=self._keypair, server_public=key)
                self._links[endpoint] = link
            return link

    def links(self) -> list[PeerLink]:
        with self._lock:
            return list(self._links.values())

    def receive(self, heartbeat: Heartbeat, client_key: str) -> None:
        """A heartbeat arrived; ``client_key`` is the key its frame was authenticated with."""
        sender = heartbeat.sender
        if self._keypair is not None and sender.public_key and sender.public_key != client_key:
            logger.warning("ignored a heartbeat claiming to be %s: signed with another key", sender.address)
            return
        with self._membership_lock:
            self.membership.receive(heartbeat)
            kept = self._forgotten_hosts.kept if self._forgotten_hosts is not None else {}
            back = kept.keys() - self.membership.forgotten().keys()
        self.link(sender.address, client_key or sender.public_key or None).heard()
        if back and self._forgotten_hosts is not None:  # heard from again, or gossip of a later life
            logger.info("forgotten hosts are back in the pool: %s", ", ".join(sorted(back)))
            try:
                self._forgotten_hosts.keep(self._forgotten)
            except OSError as error:
                logger.warning("could not write %s (%s): after a restart, %s will count again only once heard from",
                               self._forgotten_hosts.path, error, ", ".join(sorted(back)))

    def members(self) -> tuple[Member, ...]:
        with self._membership_lock:
            return self.membership.members()

    def _beat(self) -> None:
        while not self._stopping.wait(self.interval):
            with self._membership_lock:
                beats = self.membership.tick()
            for address, heartbeat in beats:
                try:
                    link = self.link(address)
                except ComponentFailed:
                    continue  # learnt by gossip without a key yet
                threading.Thread(target=self._send_beat, args=(link, heartbeat), daemon=True,
                                 name="sd-actors-beat").start()

    def _send_beat(self, link: PeerLink, beat: Heartbeat) -> None:
        sent = time.monotonic()
        with contextlib.suppress(TimeoutError, OSError):
            link.request(beat, timeout=max(self.interval * 2, 0.5))
            link.last_acknowledged = max(sent, link.last_acknowledged or sent)

    def forget(self, address: str) -> None:
        """Remove the dead member at ``address`` (see ``Membership.forget``).

        Written to the state folder before this returns, so a restart does not count it again.

        :raises ValueError: saying why it cannot be forgotten, or that it could not be written.
        """
        with self._membership_lock:
            self.membership.forget(address)
        if self._forgotten_hosts is None:
            return
        try:
            self._forgotten_hosts.keep(self._forgotten)
        except OSError as error:
            raise ValueError(f"it is forgotten only until this daemon restarts: could not write "
                             f"{self._forgotten_hosts.path} ({error}); fix that and forget it again") from None

    def check_forget(self, address: str) -> None:
        """Raise what :meth:`forget` would raise for ``address`` (see ``Membership.check_forget``)."""
        with self._membership_lock:
            self.membership.check_forget(address)

    def _forgotten(self) -> dict[str, int]:
        with self._membership_lock:
            return self.membership.forgotten()

    def incarnation(self, endpoint: str) -> int | None:
        """The life of the daemon at ``endpoint`` (its start time) as last heard of; None if unknown."""
        with self._membership_lock:
            member = self.membership.member(endpoint)
        return None if member is None else member.incarnation

    def electorate(self) -> tuple[str, ...]:
        """Every daemon of the pool this one knows, itself and unheard ``--peer`` seeds included,
        sorted: what a majority is counted over (a dead member counts: it may only be cut off)."""
        with self._membership_lock:
            known = {member.address for member in self.membership.members()}
            return tuple(sorted(known | set(self.membership.unheard_seeds())))

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        for link in self.links():
            link.close()


class RemoteComponent(Component):
    """The stand-in, on the parent's daemon, for a subtree that another host's daemon runs."""

    peers: Peers  # set on the class the daemon makes (see remote_component_type)
    own_endpoint: str

    def __init__(self, context: ComponentContext) -> None:
        super().__init__(context)
        host = context.description.get("sfProcessHost")
        self.host = str(host)
        self.link = self.peers.link(endpoint_of_host(self.host))
        # The life of the daemon that runs the subtree: a later one runs none of it (it is not in
        # that daemon's journal), however short the silence between the two.
        self._life: int | None = None

    def _ask(self, message: object, doing: str) -> None:
        try:
            reply = self.link.request(message, timeout=STEP_TIMEOUT)
        except (TimeoutError, OSError) as error:
            raise ComponentFailed(self.context.record(
                "abnormal", f"{doing} on host {self.host} failed: its daemon ({self.link.endpoint}) did not answer",
                type(error).__name__)) from None
        if isinstance(reply, RequestFailed):
            raise ComponentFailed(to_record(reply.record, self.context.path) if reply.record else self.context.record(
                "abnormal", f"{doing} on host {self.host} failed: {reply.error}"))

    def create(self) -> None:
        from sd_actors.descriptions import encode_description

        if self.link.silent_for() > self._silence_limit():
            # Not heard from lately (or never): a quick question first, so that an unknown or
            # unreachable host fails the deployment at once, naming the host.
            try:
                self.link.request(GetHosts(), timeout=PROBE_TIMEOUT)
            except (TimeoutError, OSError) as error:
                raise ComponentFailed(self.context.record(
                    "abnormal", f"host {self.host} is unreachable: its daemon ({self.link.endpoint}) did not "
                    f"answer within {PROBE_TIMEOUT:g} s; check sfProcessHost and that the daemon runs there",
                    type(error).__name__)) from None
        description = self.context.description
        # The tree alone: the other daemon decodes it (no parsing; no text needed, it journals none).
        self._ask(CreateSubtree(app=self.context.path[0], path=self.context.path, description="",
                                tree=encode_description(description), parent_endpoint=self.own_endpoint),
                  "create")
        self.link.heard()
        self._life = self.peers.incarnation(self.link.endpoint)

    def deploy(self) -> None:
        self._ask(StepSubtree(app=self.context.path[0], path=self.context.path, step="deploy"), "deploy")

    def start(self) -> None:
        self._ask(StepSubtree(app=self.context.path[0], path=self.context.path, step="start"), "start")

    def terminate(self, record: TerminationRecord) -> None:
        if self.link.silent_for() > self._silence_limit():
            return  # its host is gone: the subtree there terminates itself when it misses our heartbeats
        if record.cause == "self-fencing":
            return  # its host holds a lease of its own, and fences it itself when it loses it
        try:
            self.link.request(TerminateSubtree(path=self.context.path, record=to_info(record),
                                               parent_endpoint=self.own_endpoint), timeout=10)
        except (TimeoutError, OSError):
            logger.warning("%s: host %s did not confirm the termination", self.context.ref.name_text, self.host)

    def _silence_limit(self) -> float:
        delay = self.context.inherited("sfLivenessDelay", 1.0)
        factor = self.context.inherited("sfLivenessFactor", 2)
        limit = float(delay if isinstance(delay, int | float) else 1.0) * float(
            factor if isinstance(factor, int) else 2)
        return max(limit, 2 * self.peers.interval)

    def remote_reference(self, relative: tuple[str, ...]) -> ComponentRef:
        """The reference of a component of this subtree, e.g. for a LAZY link from this host."""
        return RemoteComponentRef((*self.context.path, *relative), self.link, self.host, self.context._runtime)

    def ping(self) -> None:
        silent = self.link.silent_for()
        if silent > self._silence_limit():
            raise ConnectionError(f"host {self.host} ({self.link.endpoint}) unreachable: no heartbeat for "
                                  f"{silent:.1f} s")
        life = self.peers.incarnation(self.link.endpoint)
        if self._life is None:
            self._life = life  # not known yet when it was created
        elif life is not None and life > self._life:
            raise ConnectionError(f"host {self.host} ({self.link.endpoint}): its daemon restarted, and its new run "
                                  "has no part of this subtree")


class RemoteComponentRef(ComponentRef):
    """A component that another host's daemon runs, reached through a LAZY link: terminate and
    invoke cross the network; ``call(function)`` cannot (a function does not travel)."""

    def __init__(self, path: tuple[str, ...], link: PeerLink, host: str, runtime: Runtime) -> None:
        from sd_actors.actors._events import State
        from sd_actors.descriptions import ComponentDescription

        super().__init__(path, ComponentDescription(), None, runtime)
        self.link = link
        self.host = host
        self.state = State.STARTED
        self.component_class = f"(on {host})"

    def __repr__(self) -> str:
        return f"<RemoteComponentRef {self.name_text} on {self.host}>"

    def _remote(self, message: object, timeout: float) -> object:
        try:
            reply = self.link.request(message, timeout=timeout)
        except (TimeoutError, OSError) as error:
            raise ComponentFailed(TerminationRecord.abnormal(
                f"host {self.host} did not answer about {self.name_text}", self.path, type(error).__name__)) from None
        if isinstance(reply, RequestFailed):
            raise ComponentFailed(to_record(reply.record, self.path) if reply.record else TerminationRecord.abnormal(
                f"on host {self.host}: {reply.error}", self.path))
        return reply

    def terminate(self, record: TerminationRecord | None = None) -> None:
        record = record or TerminationRecord.normal("terminated on request", self.path)
        self._remote(TerminateComponentRemotely(path=self.path, record=to_info(record)), timeout=60)

    def terminate_nowait(self, record: TerminationRecord | None = None, *, notify_parent: bool = True) -> None:
        record = record or TerminationRecord.normal("terminated on request", self.path)
        message = TerminateComponentRemotely(path=self.path, record=to_info(record), notify_parent=notify_parent)
        threading.Thread(target=self._remote, args=(message, 60), daemon=True, name="sd-actors-remote").start()

    def invoke(self, method: str, *arguments: object, timeout: float | None = None) -> object:
        reply = self._remote(InvokeComponent(path=self.path, method=method, arguments=msgpack.packb(
            list(arguments), default=_plain)), timeout=timeout or STEP_TIMEOUT)
        assert isinstance(reply, InvokeResult)
        return msgpack.unpackb(reply.value)

    def call(self, function: Callable[[Component], object], *, timeout: float | None = None) -> object:
        raise DeploymentError(f"{self.name_text} runs on host {self.host}: a function cannot be sent there; use "
                              "invoke('method', arguments…)")

    def deploy(self) -> None:
        raise DeploymentError(f"{self.name_text} is deployed by host {self.host}'s daemon")

    def start(self) -> None:
        raise DeploymentError(f"{self.name_text} is started by host {self.host}'s daemon")


def _plain(value: object) -> object:
    """msgpack's fallback: dataclasses as maps, tuples and the like as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot send a {type(value).__name__} to another host")


def pack_result(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, default=_plain)
    return packed


class RemoteParent(Component):
    """The stand-in, on the child's daemon, for the parent another daemon runs."""

    has_children = False
    notify: Callable[[ComponentRef, TerminationRecord], None]

    def child_terminated(self, child: ComponentRef, record: TerminationRecord) -> Reaction:
        self.notify(child, record)
        return Reaction.CONTINUE


def endpoint_of_host(host: str) -> str:
    """``h2``, ``h2:3800`` or ``tcp://h2:3800`` as an endpoint."""
    if "://" in host:
        return host
    return f"tcp://{host}" if ":" in host else f"tcp://{host}:3800"
