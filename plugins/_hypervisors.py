"""Hypervisors: one libvirt connection per URI and System, and what a hypervisor has and uses.

Every component of a System that talks to the same hypervisor (VMs, storage backends, the
policies asking where there is room) goes through one connection. It is cheaper than a
connection each, and with libvirt's test driver it is required: each connection to
``test:///path/host.xml`` loads that file into a state of its own, so a VM defined through one
connection would be invisible to a capacity query made through another.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sd_actors.actors import DeploymentError

if TYPE_CHECKING:
    import libvirt

# libvirt is imported where a connection is used, not here: sd_actors.plugins is imported by
# every command, and libvirt's import costs `sd-actors up` 15 ms it does not need.

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


class HypervisorError(DeploymentError):
    """A hypervisor could not be reached or asked."""


class SharesObjects(Protocol):
    """What owns the shared connections: a ``ComponentContext`` or a ``System``."""

    def shared(self, key: object, factory: Callable[[], object]) -> object: ...


def hypervisor_connection(owner: SharesObjects, uri: str) -> libvirt.virConnect:
    """The one libvirt connection of ``owner``'s System to the hypervisor at ``uri``.

    Opened on first use (libvirt's event loop is registered before, so domain events work) and
    closed when the System closes: callers never close it. A connection that died (libvirtd
    restarted) is opened again on the next call, so ask for it each time rather than keeping it
    for long. Components pass their ``ComponentContext``; code embedding a System passes the
    ``System``.

    :param owner: a ``ComponentContext`` or a ``System``.
    :param uri: a libvirt URI: ``qemu:///system``, ``test:///default``, ``test:///path/host.xml``…
    :raises HypervisorError: when libvirt cannot connect, saying to what and what to check.
    """
    return _hypervisor(owner, uri).connection()


def watch_domain_lifecycle(owner: SharesObjects, uri: str, uuid: str, on_event: Callable[[int, int], None], *,
                           events: Collection[int] | None = None) -> Callable[[], None]:
    """Call ``on_event(event, detail)`` for each lifecycle event of domain ``uuid`` on ``uri``.

    One libvirt callback per System and hypervisor serves every domain (registering one per
    domain costs libvirt a walk over all of them), and it is registered again on a connection
    opened again. ``on_event`` runs on libvirt's event thread: hand the work to your own.

    :param events: only these events (``libvirt.VIR_DOMAIN_EVENT_STOPPED``, …); None: all. An
        event no watcher wants is dropped before its domain is even looked at: defining and
        starting 1,000 domains makes 2,000 events that watchers of stops do not want.

    :returns: the function that stops the watching.
    :raises HypervisorError: when libvirt cannot connect or register the callback.
    """
    return _hypervisor(owner, uri).watch(uuid, on_event, None if events is None else frozenset(events))


def _hypervisor(owner: SharesObjects, uri: str) -> _Hypervisor:
    hypervisor = owner.shared(("libvirt", uri), lambda: _Hypervisor(uri))
    if not isinstance(hypervisor, _Hypervisor):  # another kind of object under libvirt's key
        raise HypervisorError(f"the System's shared object for {uri!r} is {hypervisor!r}, not a libvirt connection")
    return hypervisor


class _Hypervisor:
    """The shared connection to one URI: opened on first use, again if it died, closed with the System;
    with the one lifecycle callback that tells each watched domain's watcher."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._lock = threading.Lock()
        self._connection: libvirt.virConnect | None = None
        self._watchers: dict[str, tuple[frozenset[int] | None, Callable[[int, int], None]]] = {}
        self._wanted: collections.Counter[int | None] = collections.Counter()
        """How many watchers want each event (None: every event)."""
        self._registered: libvirt.virConnect | None = None
        """The connection that carries the lifecycle callback."""

    def watch(self, uuid: str, on_event: Callable[[int, int], None], events: frozenset[int] | None
              ) -> Callable[[], None]:
        connection = self.connection()
        watcher = (events, on_event)
        with self._lock:
            self._forget(uuid)
            self._watchers[uuid] = watcher
            self._wanted.update((None,) if events is None else events)
            if self._registered is not connection:
                self._register(connection)

        def unwatch() -> None:
            with self._lock:
                if self._watchers.get(uuid) is watcher:
                    self._forget(uuid)

        return unwatch

    def _forget(self, uuid: str) -> None:
        # Called with the lock held.
        previous = self._watchers.pop(uuid, None)
        if previous is not None:
            self._wanted.subtract((None,) if previous[0] is None else previous[0])
            self._wanted += collections.Counter()  # drops the events no one wants any more

    def _register(self, connection: libvirt.virConnect) -> None:
        import libvirt
        # Called with the lock held.
        try:
            connection.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._dispatch, None)
        except libvirt.libvirtError as error:
            raise HypervisorError(f"cannot watch the domain events of hypervisor {self._uri!r}: {error}") from error
        self._registered = connection

    def _dispatch(self, _connection: libvirt.virConnect, domain: libvirt.virDomain, event: int, detail: int,
                  _opaque: object) -> None:
        import libvirt
        if event not in self._wanted and None not in self._wanted:
            return
        try:
            uuid = domain.UUIDString()
        except libvirt.libvirtError:
            return
        watcher = self._watchers.get(uuid)
        if watcher is not None and (watcher[0] is None or event in watcher[0]):
            watcher[1](event, detail)

    def connection(self) -> libvirt.virConnect:
        import libvirt

        from sd_actors.plugins._libvirt_events import open_connection
        with self._lock:
            previous = self._connection
            if previous is not None and _alive(previous):
                return previous
            try:
                self._connection = open_connection(self._uri)
            except libvirt.libvirtError as error:
                raise HypervisorError(f"cannot connect to hypervisor {self._uri!r}: {error}; give a libvirt URI this "
                                      "host serves (qemu:///system, xen:///system, test:///default, "
                                      "test:///path/host.xml) and check that its daemon runs") from error
            if previous is not None:
                logger.warning("the connection to hypervisor %r had died: opened it again", self._uri)
                with contextlib.suppress(libvirt.libvirtError):
                    previous.close()
                if self._watchers:  # the watched domains go on being told
                    self._register(self._connection)
            return self._connection

    def close(self) -> None:
        import libvirt
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(libvirt.libvirtError):
                connection.close()


def _alive(connection: libvirt.virConnect) -> bool:
    import libvirt
    # Local, no round trip: the remote driver answers from its keepalive state.
    try:
        return bool(connection.isAlive())
    except libvirt.libvirtError:  # closed: "invalid connection pointer"
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class HypervisorCapacity:
    """What a hypervisor host has and what its running domains take, at one moment."""

    memory_mib: int
    """The host's memory."""
    free_memory_mib: int
    """Memory the host reports free (libvirt's node free memory; the test driver's never changes)."""
    vcpus: int
    """The host's CPUs (logical, as libvirt counts them)."""
    running_vms: int
    """Domains that are running (or paused: they still hold their memory)."""
    vm_memory_mib: int
    """Memory given to the running domains (their current memory, rounded down to MiB)."""
    vm_vcpus: int
    """Virtual CPUs of the running domains."""

    @property
    def unreserved_memory_mib(self) -> int:
        """Memory no running domain was given: what a scheduler can still place (may go below 0 if overcommitted)."""
        return self.memory_mib - self.vm_memory_mib


def hypervisor_capacity(connection: libvirt.virConnect) -> HypervisorCapacity:
    """Size and use of the host behind ``connection`` (from getInfo, getFreeMemory and its running domains).

    Works on every driver sd-actors uses, the test driver's simulated hosts included.

    :param connection: from :func:`hypervisor_connection`, so it sees the System's own domains.
    :raises HypervisorError: when libvirt cannot answer.
    """
    import libvirt
    try:
        _model, memory_mib, cpus, *_rest = connection.getInfo()
        free_bytes = connection.getFreeMemory()
        memory_kib = vcpus = 0
        running = 0
        for domain in connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                _state, _max_kib, current_kib, domain_vcpus, _cpu_time = domain.info()
            except libvirt.libvirtError as error:
                if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # gone since it was listed: it no longer takes anything
                raise
            running += 1
            memory_kib += current_kib
            vcpus += domain_vcpus
    except libvirt.libvirtError as error:
        raise HypervisorError(f"cannot read the capacity of a hypervisor: {error}") from error
    return HypervisorCapacity(memory_mib=memory_mib, free_memory_mib=free_bytes // _MIB, vcpus=cpus,
                              running_vms=running, vm_memory_mib=memory_kib // 1024, vm_vcpus=vcpus)
