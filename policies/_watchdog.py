"""The host watchdog: stops a daemon's HA domains when the daemon can no longer fence them itself.

A daemon fences itself (policies/README.md, "Never two copies"), but only while it runs: killed
with ``kill -9`` or frozen (SIGSTOP), it cannot stop its domains, and qemu's outlive it. So each
daemon state folder has one small watchdog process beside its daemon. Every time the daemon
checks its lease it tells the watchdog when the lease ends and which of its domains carry
``haGeneration`` (hypervisor URI and UUID); a domain just defined is told at once, before it is
started, and the watchdog acknowledges each report. When a domain's lease comes within ``fence_before``
of its end (the time the daemon itself would fence) and no newer word has come, the watchdog
destroys the domain (libvirt ``destroy``: it stops; its definition and volumes stay for whatever
restarts it), writes what it did to ``watchdog.log`` in the state folder, and carries on. It
never gives up on a domain it could not destroy (libvirtd down): it tries again, backing off.

A daemon stopped cleanly is no exception: it detaches its applications and their VMs keep running,
but it renews no lease any more, so its HA domains are destroyed like a dead daemon's unless a
daemon is back on the folder in time. Domains of libvirt's test driver are never reported: they
live in the daemon's process and die with it.

The two speak over a unix socket in the state folder (``watchdog.sock``); a lock file
(``watchdog.lock``) keeps to one watchdog per folder. A daemon that starts connects to the
watchdog still running there (a previous run's: it is adopted), or starts one. The watchdog
answers each connection with the last lease it heard of, so a daemon restarted before that lease
ended continues it instead of fencing what it re-attaches. Domains a previous run reported stay
guarded under that run's lease until the new daemon reports them as its own again. The clocks
are ``CLOCK_MONOTONIC``, one per boot, the same in every process of the host.

The watchdog leaves when it guards nothing and no daemon is connected. This file runs as a
script (``python _watchdog.py STATE_DIR``) and imports only the standard library (libvirt once
it guards a domain), so that it starts quickly and depends on nothing else of sd-actors.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

logger = logging.getLogger(__name__)

SOCKET_FILE: Final = "watchdog.sock"
LOCK_FILE: Final = "watchdog.lock"
LOG_FILE: Final = "watchdog.log"
START_TIMEOUT: Final = 5.0
"""Seconds a daemon waits for the watchdog it started to listen (a few tens of milliseconds usually)."""
FIRST_CONTACT: Final = 10.0
"""Seconds a watchdog started by a daemon waits for it to connect before it leaves."""
RETRY: Final = 0.2
"""Seconds before a destroy that failed (libvirtd restarting, say) is tried again, doubled after each
failure up to :data:`MAX_RETRY`: the watchdog never gives up on a domain that may still run."""
MAX_RETRY: Final = 5.0
ACK_TIMEOUT: Final = 2.0
"""Seconds a daemon waits for the watchdog's greeting, or for the acknowledgement of a report."""


@dataclass(frozen=True, slots=True)
class GuardedDomain:
    """A running domain the daemon's fencing would stop: where it runs, and who it is."""

    hypervisor: str
    uuid: str
    component: str
    """The component's complete name, for the log."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseNews:
    """What the watchdog last heard of a daemon's lease (monotonic clock)."""

    endpoint: str
    lease_expiry: float
    fence_before: float

    @property
    def fence_at(self) -> float:
        return self.lease_expiry - self.fence_before


# -- the daemon's side --------------------------------------------------------------------------------
class HostWatchdog:
    """A daemon's connection to the watchdog of its state folder (adopted, or started by :meth:`open`).

    Thread-safe: each report (its line and the acknowledgement) holds :attr:`lock`; a caller that
    must order a report after others it races with takes that lock around both.
    """

    def __init__(self, state_dir: Path, endpoint: str) -> None:
        self.state_dir = state_dir
        self.endpoint = endpoint
        self.inherited: LeaseNews | None = None
        """The lease of the previous daemon of this folder, if the adopted watchdog still counted on it."""
        self.adopted_pid: int | None = None
        self._socket: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started_at = -math.inf
        self._guarding = False
        self.lock = threading.RLock()
        """Held through each report: one line and its acknowledgement at a time on the socket."""

    @classmethod
    def open(cls, state_dir: Path, endpoint: str) -> HostWatchdog:
        """Adopt the watchdog running for ``state_dir``, or start one and connect to it."""
        watchdog = cls(state_dir, endpoint)
        if not watchdog._connect():
            watchdog._start()
        return watchdog

    def report(self, news: LeaseNews, domains: Iterable[GuardedDomain], *, partial: bool = False) -> bool:
        """Tell the watchdog the lease and every HA domain to guard (``partial``: only domains to add
        to those it guards); True once it acknowledged them, False if it cannot be reached (started
        again, at most every :data:`START_TIMEOUT` seconds, it hears the next report)."""
        with self.lock:
            return self._report(news, domains, partial=partial)

    def _report(self, news: LeaseNews, domains: Iterable[GuardedDomain], *, partial: bool) -> bool:
        if self._socket is None and not self._connect():
            if time.monotonic() - self._started_at < START_TIMEOUT:
                return False
            logger.warning("watchdog: none answers for %s; starting one", self.state_dir)
            if not self._start():
                return False
        assert self._socket is not None
        listed = [[d.hypervisor, d.uuid, d.component] for d in domains]
        line = json.dumps({"endpoint": news.endpoint, "lease_expiry": news.lease_expiry,
                           "fence_before": news.fence_before, "domains": listed, "partial": partial})
        try:
            self._socket.sendall(line.encode() + b"\n")
            _read_line(self._socket)  # its acknowledgement: the domains are guarded
        except (OSError, ValueError):
            self._disconnect()
            return False
        self._guarding = bool(listed) or (partial and self._guarding)
        return True

    def close(self) -> None:
        """Stop talking to the watchdog: it keeps guarding what it was last told, under that lease
        (guarding nothing, it leaves at once, and a watchdog this daemon started is reaped)."""
        with self.lock:
            self._disconnect()
        process, self._process = self._process, None
        if process is None:
            return
        deadline = time.monotonic() + (0 if self._guarding else 1.0)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # it leaves as soon as it sees this daemon gone
        if process.returncode is None:
            # It outlives this daemon on purpose; subprocess reaps it later, once it has left.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                del process

    def _connect(self) -> bool:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _short_path(self.state_dir / SOCKET_FILE) as address:
                connection.settimeout(ACK_TIMEOUT)
                connection.connect(address)
                greeting = _read_line(connection)
        except (OSError, ValueError):
            connection.close()
            return False
        self._socket = connection
        self.adopted_pid = int(greeting.get("pid", 0)) or None
        last = greeting.get("lease")
        if self.inherited is None and last is not None and last["endpoint"] == self.endpoint:
            news = LeaseNews(endpoint=last["endpoint"], lease_expiry=last["lease_expiry"],
                             fence_before=last["fence_before"])
            if news.fence_at > time.monotonic():
                self.inherited = news
        for fenced in greeting.get("fenced", ()):
            logger.warning("watchdog: while no daemon renewed the lease it destroyed %s", fenced)
        return True

    def _start(self) -> bool:
        """Start a watchdog for the folder and connect to it (to another one if it won the folder's lock)."""
        self._started_at = time.monotonic()
        # Its own session: a signal to the daemon's process group (Ctrl-C) does not reach it.
        with (self.state_dir / LOG_FILE).open("ab") as log:
            self._process = subprocess.Popen([sys.executable, __file__, str(self.state_dir)],
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                             start_new_session=True, close_fds=True)
        while time.monotonic() < self._started_at + START_TIMEOUT:
            if self._connect():
                return True
            time.sleep(0.01)  # it binds its socket within a few tens of milliseconds
        logger.error("watchdog: the one started for %s does not answer; see %s", self.state_dir,
                     self.state_dir / LOG_FILE)
        return False

    def _disconnect(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


# -- the watchdog's side ------------------------------------------------------------------------------
@dataclass(slots=True)
class _Guard:
    domain: GuardedDomain
    fence_at: float
    connection: int
    """Which daemon connection reported it last (a later one takes it over by reporting it)."""
    failures: int = 0


class _Watchdog:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.guards: dict[str, _Guard] = {}
        self.last: LeaseNews | None = None
        self.fenced: list[str] = []
        """What it destroyed since the last daemon connected: told to the next one."""
        self._connections: dict[str, Any] = {}

    def hear(self, connection: int, message: dict[str, Any]) -> None:
        news = LeaseNews(endpoint=str(message["endpoint"]), lease_expiry=float(message["lease_expiry"]),
                         fence_before=float(message["fence_before"]))
        reported = {uuid: GuardedDomain(hypervisor, uuid, component)
                    for hypervisor, uuid, component in message["domains"]}
        if not message.get("partial"):  # a whole list: what it leaves out, no component there holds any more
            for uuid, guard in list(self.guards.items()):
                if guard.connection == connection and uuid not in reported:
                    del self.guards[uuid]  # stopped by its daemon (down, fencing), or migrated away
        for uuid, domain in reported.items():
            if uuid not in self.guards:
                logger.info("guarding %s (domain %s on %s) until %.3f", domain.component, uuid, domain.hypervisor,
                            news.fence_at)
            self.guards[uuid] = _Guard(domain, news.fence_at, connection)
        self.last = news

    def next_deadline(self) -> float:
        return min((guard.fence_at for guard in self.guards.values()), default=math.inf)

    def fence_due(self, now: float) -> None:
        for uuid, guard in sorted(self.guards.items(), key=lambda item: item[1].fence_at):
            if guard.fence_at > now:
                continue
            try:
                destroyed = self._destroy(guard.domain)
            except Exception as error:  # noqa: BLE001 (libvirt unreachable: try again shortly)
                logger.error("could not destroy %s (domain %s on %s): %s; trying again", guard.domain.component,
                             uuid, guard.domain.hypervisor, error)
                guard.fence_at = now + min(RETRY * 2 ** guard.failures, MAX_RETRY)
                guard.failures += 1
                continue
            del self.guards[uuid]
            what = f"{guard.domain.component} (domain {uuid} on {guard.domain.hypervisor})"
            if destroyed:
                logger.warning("destroyed %s: no daemon renewed its lease (due to be fenced at %.3f, %.3f s before "
                               "it was); its definition and volumes are kept", what, guard.fence_at,
                               time.monotonic() - guard.fence_at)
                self.fenced.append(what)
            else:
                logger.info("%s no longer runs: nothing to destroy", what)

    def _destroy(self, domain: GuardedDomain) -> bool:
        libvirt = _libvirt()
        connection = self._connections.get(domain.hypervisor)
        if connection is None:
            connection = self._connections[domain.hypervisor] = libvirt.open(domain.hypervisor)
        try:
            target = connection.lookupByUUIDString(domain.uuid)
        except libvirt.libvirtError as error:
            if error.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            self._connections.pop(domain.hypervisor, None)  # perhaps a stale connection: a new one next time
            raise
        if not target.isActive():
            return False
        logger.warning("destroying %s (domain %s on %s): its daemon did not renew its lease", domain.component,
                       domain.uuid, domain.hypervisor)
        target.destroy()
        return True

    def prepare(self) -> None:
        """Connect to each guarded hypervisor now, so that fencing does not wait for it."""
        for guard in self.guards.values():
            if guard.domain.hypervisor not in self._connections:
                libvirt = _libvirt()
                with contextlib.suppress(libvirt.libvirtError):
                    self._connections[guard.domain.hypervisor] = libvirt.open(guard.domain.hypervisor)

    def greeting(self) -> bytes:
        last = None if self.last is None else {"endpoint": self.last.endpoint, "lease_expiry": self.last.lease_expiry,
                                               "fence_before": self.last.fence_before}
        greeting = {"pid": os.getpid(), "lease": last, "fenced": self.fenced}
        self.fenced = []
        return json.dumps(greeting).encode() + b"\n"


def _libvirt() -> Any:
    """libvirt, imported when first needed, its errors said once by this watchdog (not also on stderr)."""
    import libvirt

    libvirt.registerErrorHandler(lambda _context, _error: None, None)
    return libvirt


@dataclass(slots=True)
class _Client:
    """The connection of the daemon that speaks for the folder now."""

    socket: socket.socket
    number: int
    buffered: bytes = b""

    def read(self, watchdog: _Watchdog) -> bool:
        """Take in every report that has come; False once the daemon has closed the connection."""
        while True:
            try:
                data = self.socket.recv(65536)
            except BlockingIOError:
                return True
            except OSError:
                data = b""
            if not data:
                return False
            *lines, self.buffered = (self.buffered + data).split(b"\n")
            for line in lines:
                try:
                    watchdog.hear(self.number, json.loads(line))
                except (ValueError, KeyError, TypeError) as error:
                    logger.error("ignored a malformed report %r: %s", line[:200], error)
                    continue
                with contextlib.suppress(OSError):  # gone: nothing waits for the acknowledgement
                    self.socket.send(b"{}\n")  # a short line: it never fills the socket's buffer


def serve(state_dir: Path) -> int:
    """Watch ``state_dir``'s daemon until it guards nothing and no daemon is connected; 0 when done
    (or when another watchdog already watches the folder)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog[%(process)d] %(levelname)s %(message)s")
    lock = (state_dir / LOCK_FILE).open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another one watches this folder: the daemon connects to it
    watchdog = _Watchdog(state_dir)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = state_dir / SOCKET_FILE
    path.unlink(missing_ok=True)  # a previous watchdog's, gone: the lock says no other one runs
    with _short_path(path) as address:
        listener.bind(address)
    os.chmod(path, 0o600)
    listener.listen(4)
    logger.info("watching the daemon of %s", state_dir)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    client: _Client | None = None
    connections = 0
    idle_since = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            watchdog.fence_due(now)
            if client is None and not watchdog.guards and now - idle_since > (FIRST_CONTACT if connections == 0
                                                                                else 0):
                logger.info("nothing to guard and no daemon: leaving")
                return 0
            wait = min(watchdog.next_deadline() - now, FIRST_CONTACT if client is None else math.inf)
            for key, _ in selector.select(None if wait == math.inf else max(wait, 0)):
                if key.fileobj is listener:
                    accepted, _ = listener.accept()
                    if client is not None:  # the newest daemon of this folder speaks for it
                        client.read(watchdog)  # after what the previous one said last
                        selector.unregister(client.socket)
                        client.socket.close()
                    connections += 1
                    client = _Client(accepted, connections)
                    client.socket.sendall(watchdog.greeting())
                    client.socket.setblocking(False)
                    selector.register(client.socket, selectors.EVENT_READ)
                    logger.info("a daemon connected (connection %d)", connections)
                elif client is not None and key.fileobj is client.socket and not client.read(watchdog):
                    selector.unregister(client.socket)
                    client.socket.close()
                    client = None
                    idle_since = time.monotonic()
                    logger.info("the daemon disconnected; %d domains stay guarded until %s", len(watchdog.guards),
                                f"{watchdog.next_deadline():.3f}" if watchdog.guards else "-")
            watchdog.prepare()
    finally:
        path.unlink(missing_ok=True)
        listener.close()
        lock.close()


def _read_line(connection: socket.socket) -> dict[str, Any]:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            raise ValueError("the watchdog closed the connection")
        data += chunk
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError(f"unexpected greeting {value!r}")
    return value


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """``path`` as a unix socket address: one longer than the kernel's 107 bytes goes through an open
    descriptor of its folder (``/proc/self/fd/N/name``)."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{path.name}"
    finally:
        os.close(folder)


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1])))
