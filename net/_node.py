"""A daemon's ZeroMQ endpoint: one ROUTER serving requests, one I/O thread, handlers on a pool.

ZeroMQ sockets belong to one thread. The I/O thread owns the ROUTER; handlers run on a thread pool
(a deploy may take minutes) and hand their replies back through a queue and an inproc wake-up
socket. A frame that does not decode — not msgpack, another protocol version, too large, unknown
kind, wrong field types — is dropped, counted and logged; the node keeps serving.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import zmq

from sd_actors.net._auth import AuthorizedKeysSource, ZapAuthenticator, secure_client, secure_server
from sd_actors.net._errors import WireError
from sd_actors.net._keys import KeyPair
from sd_actors.net._wire import DEFAULT_MAX_FRAME_SIZE, MessageRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """One request received by a node; ``reply`` may be called from any thread, several times."""

    message: object
    request_id: int
    client_key: str
    peer_address: str
    _node: Node = field(repr=False)
    _identity: bytes = field(repr=False)

    def reply(self, message: object) -> None:
        self._node._send(self._identity, self._node.registry.encode(message, request_id=self.request_id))


@dataclass(frozen=True, slots=True)
class NodeStatistics:
    received: int
    replied: int
    dropped: dict[str, int]


class Node:
    """Serves requests on ``bind`` until :meth:`close`.

    :param keypair: the daemon's CURVE keys; None runs without security (``--insecure``).
    :param authorized: who may connect (a key folder or a callable giving Z85 keys).
    :param handler: called on a worker thread with each :class:`Request`.
    """

    def __init__(
        self,
        *,
        bind: str,
        registry: MessageRegistry,
        handler: Callable[[Request], None],
        keypair: KeyPair | None,
        authorized: AuthorizedKeysSource | None = None,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        workers: int = 16,
        log: logging.Logger = logger,
        quick: tuple[type, ...] = (),
    ) -> None:
        self.registry = registry
        # Requests answered on the I/O thread itself: cheap ones (heartbeats) skip two thread switches.
        self._quick = quick
        self._handler = handler
        self._max_frame_size = max_frame_size
        self._log = log
        self._context: zmq.Context[Any] = zmq.Context()
        self._authenticator: ZapAuthenticator | None = None
        self._router: zmq.Socket[Any] = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if keypair is not None:
            if authorized is None:
                raise ValueError("a secured node needs the authorized keys")
            self._authenticator = ZapAuthenticator(self._context, authorized=authorized, log=log)
            secure_server(self._router, keypair, max_message_size=max_frame_size)
        else:
            self._router.setsockopt(zmq.MAXMSGSIZE, max_frame_size)
        try:
            self._router.bind(bind)
        except zmq.ZMQError as error:
            self._close_sockets()
            raise OSError(f"cannot listen on {bind}: {error}") from None
        self.endpoint = str(self._router.getsockopt_string(zmq.LAST_ENDPOINT))
        self._wake_address = f"inproc://sd-actors-wake-{id(self)}"
        self._wake_receiver: zmq.Socket[Any] = self._context.socket(zmq.PULL)
        self._wake_receiver.bind(self._wake_address)
        self._wake_sender: zmq.Socket[Any] = self._context.socket(zmq.PUSH)
        self._wake_sender.connect(self._wake_address)
        self._wake_lock = threading.Lock()
        self._outbox: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sd-actors-request")
        self._stopping = threading.Event()
        self._received = 0
        self._replied = 0
        self._dropped: collections.Counter[str] = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="sd-actors-io", daemon=True)
        self._thread.start()

    def statistics(self) -> NodeStatistics:
        return NodeStatistics(self._received, self._replied, dict(self._dropped))

    def _send(self, identity: bytes, data: bytes) -> None:
        if threading.current_thread() is self._thread:
            try:
                self._router.send_multipart([identity, data], zmq.NOBLOCK)
                self._replied += 1
            except zmq.ZMQError as error:
                self._log.warning("reply to a client that went away dropped: %s", error)
            return
        self._outbox.append((identity, data))
        with self._wake_lock:
            if not self._stopping.is_set():
                with contextlib.suppress(zmq.Again):
                    self._wake_sender.send(b"", zmq.NOBLOCK)

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_receiver, zmq.POLLIN)
        while not self._stopping.is_set():
            events = dict(poller.poll(200))
            if self._wake_receiver in events:
                while True:
                    try:
                        self._wake_receiver.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            while self._outbox:
                identity, data = self._outbox.popleft()
                try:
                    self._router.send_multipart([identity, data], zmq.NOBLOCK)
                    self._replied += 1
                except zmq.ZMQError as error:
                    self._log.warning("reply to a client that went away dropped: %s", error)
            if self._router in events:
                self._receive_all()

    def _receive_all(self) -> None:
        while True:
            try:
                parts = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._received += 1
            if len(parts) != 2:
                self._drop("frame-count", f"{len(parts) - 1} data frames, expected 1", parts[0])
                continue
            identity, payload = parts[0].bytes, parts[1]
            try:
                frame = self.registry.decode(payload.bytes, max_size=self._max_frame_size)
            except WireError as error:
                self._drop(type(error).__name__, str(error), parts[1])
                continue
            request = Request(frame.message, frame.request_id, _frame_property(payload, "User-Id"),
                              _frame_property(payload, "Peer-Address"), self, identity)
            if isinstance(frame.message, self._quick):
                self._handle(request)
            else:
                try:
                    self._pool.submit(self._handle, request)
                except RuntimeError:  # close() has shut the pool: the node is stopping, the client times out
                    self._log.debug("request %s dropped: the node is closing", type(frame.message).__name__)

    def _drop(self, cause: str, detail: str, frame: zmq.Frame) -> None:
        self._dropped[cause] += 1
        self._log.warning("dropped a frame from %s (%s): %s", _frame_property(frame, "Peer-Address") or "?",
                          cause, detail)

    def _handle(self, request: Request) -> None:
        try:
            self._handler(request)
        except Exception:  # noqa: BLE001 (a handler's bug must not stop the node; the client times out)
            self._log.exception("request %s failed", type(request.message).__name__)

    def _close_sockets(self) -> None:
        self._router.close(0)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    def close(self) -> None:
        """Stop serving: pending requests finish, then the sockets and threads stop."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._wake_lock:
            self._stopping.set()
        self._thread.join()
        self._wake_sender.close(0)
        self._wake_receiver.close(0)
        self._close_sockets()


def _frame_property(frame: zmq.Frame, name: str) -> str:
    try:
        return str(frame.get(name))
    except (zmq.ZMQError, UnicodeDecodeError):
        return ""


class Client:
    """A blocking client of one daemon (the command line's): one DEALER, one request at a time."""

    def __init__(self, endpoint: str, *, registry: MessageRegistry, keypair: KeyPair | None,
                 server_public: str | bytes | None, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self.endpoint = endpoint
        self._registry = registry
        self._max_frame_size = max_frame_size
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket: zmq.Socket[Any] = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if keypair is not None:
            if server_public is None:
                raise ValueError("a secured client needs the daemon's public key")
            secure_client(self._socket, keypair, server_public)
        self._socket.connect(endpoint)
        self._ids = itertools.count(1)

    def request(self, message: object, *, timeout: float) -> object:
        """Send ``message`` and return the answer; TimeoutError when none comes in ``timeout`` seconds."""
        for reply in self.stream(message, timeout=timeout):
            return reply
        raise TimeoutError(f"no answer from {self.endpoint}")

    def stream(self, message: object, *, timeout: float, end: tuple[type, ...] = (),
               first_timeout: float | None = None) -> Iterator[object]:
        """Send ``message`` and yield answers until one of the ``end`` types (or the first if none).

        ``first_timeout`` bounds the wait for the first answer (a daemon that is not there), then
        ``timeout`` the wait between answers (a long deployment).
        """
        request_id = next(self._ids)
        self._socket.send(self._registry.encode(message, request_id=request_id))
        wait = timeout if first_timeout is None else first_timeout
        while True:
            if not self._socket.poll(int(wait * 1000)):
                raise TimeoutError(f"no answer from {self.endpoint} within {wait:g} s")
            wait = timeout
            data = self._socket.recv()
            try:
                frame = self._registry.decode(data, max_size=self._max_frame_size)
            except WireError as error:
                logger.warning("dropped a bad answer from %s: %s", self.endpoint, error)
                continue
            if frame.request_id != request_id:
                continue  # the answer to an earlier request that timed out
            yield frame.message
            if not end or isinstance(frame.message, end):
                return

    def close(self) -> None:
        self._socket.close(0)
        self._context.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Client", "Node", "NodeStatistics", "Request"]
