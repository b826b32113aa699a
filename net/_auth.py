"""Who may connect: CURVE on the sockets, and a ZAP authenticator that admits authorized keys only.

CURVE alone encrypts, but a CURVE server accepts every client that knows the server's public
key. libzmq asks a ZAP handler (RFC 27, bound in the same context at
``inproc://zeromq.zap.01``) about each handshake; :func:`open_authenticator` runs one that
admits exactly the public keys in ``authorized_keys`` (or those a callable returns) and logs
every refusal.

Why our own ZAP handler rather than pyzmq's ``zmq.auth.thread.ThreadAuthenticator`` with a
credentials callback: the callback is not told the peer's address, so a refusal could not be
logged with it, and pyzmq logs refusals at DEBUG; an exception in the callback ends pyzmq's
thread, after which every handshake hangs with no word in the log; and pyzmq admits NULL (no
security) connections by default. The protocol is six frames in, six frames out: owning the
loop is shorter than working around those.

Two libzmq behaviours shape the helpers below:

- with no ZAP handler bound, a CURVE server admits every client. :func:`secure_server` sets
  ZMQ_ZAP_ENFORCE_DOMAIN, so that a server whose authenticator is not running refuses everyone
  instead;
- ZMQ_MAXMSGSIZE limits the encrypted CURVE message, which is 33 bytes longer than the
  payload, so :func:`secure_server` adds those bytes: the limit it is given is the largest frame
  the application receives. A peer that sends more is disconnected by libzmq (the message is
  lost, the peer reconnects) and the server never sees it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import zmq
from zmq.utils import z85

from sd_actors.net._errors import WireError
from sd_actors.net._keys import AUTHORIZED_KEYS_FILE, KeyPair, authorized_keys, parse_key
from sd_actors.net._wire import DEFAULT_MAX_FRAME_SIZE

ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
"""Where libzmq looks for the ZAP handler of a context (RFC 27)."""

ZAP_DOMAIN: Final = b"sd-actors"
"""The ZAP domain of every server socket :func:`secure_server` configures."""

CURVE_MESSAGE_OVERHEAD: Final = 33
"""Bytes CURVE adds to each message: the MESSAGE command name, nonce, MAC and flags."""

_ZAP_VERSION: Final = b"1.0"
_STOP_TIMEOUT: Final = 10.0  # seconds; the handler answers within microseconds unless a callback hangs

AuthorizedKeysSource = Callable[[], AbstractSet[bytes]] | Path
"""Either a folder holding ``authorized_keys`` (reread when it changes), or a callable returning
the set of Z85 public keys to admit (called at each handshake)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthenticatorStatistics:
    """How many handshakes the authenticator admitted and refused so far."""

    accepted: int
    refused: int


class ZapAuthenticator:
    """A running ZAP handler; made by :func:`open_authenticator`, which also stops it."""

    def __init__(self, context: zmq.Context[Any], *, authorized: AuthorizedKeysSource, log: logging.Logger) -> None:
        self._log = log
        self._accepted = 0
        self._refused = 0
        if isinstance(authorized, Path):
            self._source = f"{authorized / AUTHORIZED_KEYS_FILE}"
            self._keys: Callable[[], AbstractSet[bytes]] = _AuthorizedKeysFile(authorized, log=log).keys
        else:
            self._source = "the authorized keys"
            self._keys = authorized
        self._keys()  # a broken authorized_keys fails here, at startup, not at the first handshake
        self._zap = context.socket(zmq.REP)
        self._zap.setsockopt(zmq.LINGER, 0)
        try:
            self._zap.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as error:
            self._zap.close()
            if error.errno == zmq.EADDRINUSE:
                raise RuntimeError(
                    "a ZAP authenticator already runs in this ZeroMQ context; "
                    "hint: open one authenticator per context and share it between sockets"
                ) from None
            raise
        # A PAIR of inproc sockets wakes the handler thread to stop: no polling interval to wait out.
        stop_endpoint = f"inproc://sd-actors-zap-stop-{os.urandom(16).hex()}"
        self._stop_sender = context.socket(zmq.PAIR)
        self._stop_sender.setsockopt(zmq.LINGER, 0)
        self._stop_sender.bind(stop_endpoint)
        stop_receiver = context.socket(zmq.PAIR)
        stop_receiver.setsockopt(zmq.LINGER, 0)
        stop_receiver.connect(stop_endpoint)
        # The sockets are handed over to the thread (thread start is the memory barrier libzmq
        # asks for) and only that thread uses and closes them from now on.
        self._thread = threading.Thread(
            target=self._serve, args=(self._zap, stop_receiver), name="sd-actors-zap", daemon=True
        )
        self._thread.start()

    def statistics(self) -> AuthenticatorStatistics:
        """A snapshot of the counters."""
        return AuthenticatorStatistics(accepted=self._accepted, refused=self._refused)

    def stop(self) -> None:
        """Stop answering; with ZMQ_ZAP_ENFORCE_DOMAIN set, handshakes are refused from now on."""
        if self._stop_sender.closed:
            return
        if self._thread.is_alive():
            self._stop_sender.send(b"stop")
            self._thread.join(_STOP_TIMEOUT)
        self._stop_sender.close()
        if self._thread.is_alive():
            self._log.error(
                "the ZAP authenticator did not stop within %.0f s; a credentials callback hangs", _STOP_TIMEOUT
            )

    def _serve(self, zap: zmq.Socket[Any], stop: zmq.Socket[Any]) -> None:
        try:
            poller = zmq.Poller()
            poller.register(zap, zmq.POLLIN)
            poller.register(stop, zmq.POLLIN)
            while True:
                ready = dict(poller.poll())
                if stop in ready:
                    return
                if zap in ready:
                    request = zap.recv_multipart()
                    zap.send_multipart(self._answer(request))
        finally:
            zap.close()
            stop.close()

    def _answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request; never raises, since a dead handler would hang all handshakes."""
        request_id = request[1] if len(request) > 1 else b""
        try:
            if len(request) < 6 or request[0] != _ZAP_VERSION:
                self._log.error("malformed ZAP request from libzmq (%d frames); refusing it", len(request))
                return self._refuse(request_id, b"500", b"malformed ZAP request")
            address = request[3].decode("utf-8", "replace") or "an unknown address"
            mechanism = request[5]
            credentials = request[6:]
            if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
                self._log.warning(
                    "refused a %s connection from %s: only CURVE clients with an authorized key are admitted "
                    "(the client may be running with --insecure)",
                    mechanism.decode("ascii", "replace"),
                    address,
                )
                return self._refuse(request_id, b"400", b"only CURVE is accepted")
            key = z85.encode(credentials[0])
            if key in self._keys():
                self._accepted += 1
                self._log.debug("admitted CURVE client %s with key %s", address, key.decode("ascii"))
                return [_ZAP_VERSION, request_id, b"200", b"OK", key, b""]
            shown = key.decode("ascii")
            self._log.warning(
                "refused CURVE client %s with key %s: not in %s; to admit it, run `sd-actors keys authorize %s`",
                address,
                shown,
                self._source,
                shown,
            )
            return self._refuse(request_id, b"400", b"key not authorized")
        # Whatever went wrong (a credentials callback that raised, an unreadable file), the
        # handshake is refused, the cause is logged and the handler goes on serving.
        except Exception:  # noqa: BLE001
            self._log.exception("the ZAP authenticator failed; refusing the connection")
            return self._refuse(request_id, b"500", b"authenticator failure")

    def _refuse(self, request_id: bytes, status: bytes, text: bytes) -> list[bytes]:
        self._refused += 1
        return [_ZAP_VERSION, request_id, status, text, b"", b""]


@contextmanager
def open_authenticator(
    context: zmq.Context[Any], *, authorized: AuthorizedKeysSource, log: logging.Logger
) -> Iterator[ZapAuthenticator]:
    """Run a ZAP handler in ``context`` that admits only authorized CURVE keys, until the block ends.

    Open it before the server sockets take connections (a secured socket refuses everyone while
    no handler runs). One authenticator serves every socket of the context.

    :param authorized: a key folder, whose ``authorized_keys`` is reread when it changes (if
        the new version has bad lines, they are logged and the previous keys stay in force); or
        a callable returning the Z85 public keys to admit, called at each handshake.
    :param log: where refusals go (WARNING, with the peer's address and key) and admissions
        (DEBUG).
    :raises AuthorizedKeysError: the folder's ``authorized_keys`` has bad lines.
    :raises RuntimeError: another ZAP handler already runs in ``context``.
    """
    authenticator = ZapAuthenticator(context, authorized=authorized, log=log)
    try:
        yield authenticator
    finally:
        authenticator.stop()


class _AuthorizedKeysFile:
    """The keys of one ``authorized_keys`` file, read again only when the file changes."""

    def __init__(self, folder: Path, *, log: logging.Logger) -> None:
        self._folder = folder
        self._path = folder / AUTHORIZED_KEYS_FILE
        self._log = log
        self._signature: tuple[int, int, int, int] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._loaded = False

    def keys(self) -> frozenset[bytes]:
        try:
            status = self._path.stat()
            signature = (status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)
        except FileNotFoundError:
            signature = None
        if self._loaded and signature == self._signature:
            return self._keys
        try:
            keys = frozenset(entry.public for entry in authorized_keys(self._folder))
        except WireError as error:
            if not self._loaded:
                raise
            self._log.error("%s; the keys read before stay in force", error)
            return self._keys
        self._keys, self._signature, self._loaded = keys, signature, True
        return keys


def secure_server(
    socket: zmq.Socket[Any], keypair: KeyPair, *, max_message_size: int = DEFAULT_MAX_FRAME_SIZE
) -> None:
    """Make ``socket`` a CURVE server that asks the ZAP authenticator about every client.

    Call it before ``bind``. Also sets ZMQ_ZAP_ENFORCE_DOMAIN (no handler running means nobody
    gets in) and ZMQ_MAXMSGSIZE (a peer sending a message over ``max_message_size`` bytes is
    disconnected and its message dropped; the socket goes on serving everyone else).
    """
    _check_unused(socket, "secure_server")
    socket.setsockopt(zmq.CURVE_SERVER, 1)
    socket.setsockopt(zmq.CURVE_SECRETKEY, parse_key(keypair.secret, source="the server's secret key"))
    socket.setsockopt(zmq.CURVE_PUBLICKEY, parse_key(keypair.public, source="the server's public key"))
    socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    socket.setsockopt(zmq.MAXMSGSIZE, max_message_size + CURVE_MESSAGE_OVERHEAD)


def secure_client(socket: zmq.Socket[Any], keypair: KeyPair, server_public: bytes | str) -> None:
    """Make ``socket`` a CURVE client of the server whose public key is ``server_public``.

    Call it before ``connect``. A server that does not authorize ``keypair.public`` refuses the
    handshake: the socket then sends nothing and receives nothing (its asks time out), and the
    server logs the refusal with this key.
    """
    _check_unused(socket, "secure_client")
    socket.setsockopt(zmq.CURVE_SERVERKEY, parse_key(server_public, source="the server's public key"))
    socket.setsockopt(zmq.CURVE_PUBLICKEY, parse_key(keypair.public, source="the client's public key"))
    socket.setsockopt(zmq.CURVE_SECRETKEY, parse_key(keypair.secret, source="the client's secret key"))


def insecure_warning(endpoint: str | None = None) -> str:
    """What to print, loudly, when running with ``--insecure``."""
    where = f" on {endpoint}" if endpoint else ""
    return (
        f"WARNING: --insecure: security is OFF{where}. Traffic is neither encrypted nor authenticated: "
        "anyone who can reach this port can deploy, read and destroy virtual machines, and anyone on "
        "the path can read and change what is sent. Use it only for local experiments on a trusted "
        "host; for anything else run `sd-actors keys init` and drop --insecure."
    )


def _check_unused(socket: zmq.Socket[Any], helper: str) -> None:
    if not zmq.has("curve"):
        raise RuntimeError(f"{helper}: this libzmq was built without CURVE; hint: install pyzmq's wheel, which has it")
    endpoint = socket.getsockopt(zmq.LAST_ENDPOINT)
    if endpoint:
        raise ValueError(
            f"{helper}() was called after the socket was bound or connected ({endpoint!r}); "
            f"hint: call {helper}() first, since security options apply only to later connections"
        )
