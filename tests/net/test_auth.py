"""CURVE and the ZAP authenticator over real TCP sockets on 127.0.0.1.

The test is the server: it polls its ROUTER socket with a timeout, answers, and closes. Waits
for something that must happen end as soon as it happens (poll, the client's socket monitor,
an Event set by the log handler); only the proofs that something does *not* happen wait out a
short timeout.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from sd_actors.net import (
    AuthorizedKeysError,
    KeyPair,
    MessageRegistry,
    authorize,
    generate_keypair,
    insecure_warning,
    load_or_create_keypair,
    open_authenticator,
    secure_client,
    secure_server,
)
from tests.net.messages import Ping, Pong, make_registry

SOON_MS: Final = 5_000  # upper bound for what must happen; returns as soon as it does
NOTHING_MS: Final = 300  # how long "nothing arrives" is watched
MAX_MESSAGE_SIZE: Final = 1_000

Sockets = Callable[[int], zmq.Socket[Any]]


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.term()  # would hang if a socket were left open: every fixture closes what it opened


@pytest.fixture
def sockets(context: zmq.Context[Any]) -> Iterator[Sockets]:
    """Open sockets with linger 0; all are closed when the test ends."""
    opened: list[zmq.Socket[Any]] = []

    def open_socket(socket_type: int) -> zmq.Socket[Any]:
        socket: zmq.Socket[Any] = context.socket(socket_type)
        socket.setsockopt(zmq.LINGER, 0)
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        socket.close(linger=0)


class Refusals(logging.Handler):
    """Collects the authenticator's warnings and lets a test wait for the next one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._arrived = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._arrived:
            self.records.append(record)
            self._arrived.notify_all()

    def messages(self, level: int = logging.WARNING) -> list[str]:
        with self._arrived:
            return [record.getMessage() for record in self.records if record.levelno >= level]

    def wait_for(self, count: int, level: int = logging.WARNING) -> list[str]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.messages(level)) >= count, timeout=SOON_MS / 1000)
        return self.messages(level)


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, Refusals]]:
    logger = logging.getLogger(f"tests.net.auth.{id(object())}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = Refusals()
    logger.addHandler(handler)
    yield logger, handler
    logger.removeHandler(handler)


@pytest.fixture
def registry() -> MessageRegistry:
    return make_registry()


@pytest.fixture
def server_keys(tmp_path: Path) -> tuple[Path, KeyPair]:
    folder = tmp_path / "daemon"
    return folder, load_or_create_keypair(folder)


def open_server(sockets: Sockets, keypair: KeyPair) -> tuple[zmq.Socket[Any], str]:
    server = sockets(zmq.ROUTER)
    secure_server(server, keypair, max_message_size=MAX_MESSAGE_SIZE)
    server.bind("tcp://127.0.0.1:*")
    return server, server.getsockopt_string(zmq.LAST_ENDPOINT)


def open_client(sockets: Sockets, keypair: KeyPair, server: KeyPair, endpoint: str) -> tuple[zmq.Socket[Any], Monitor]:
    client = sockets(zmq.DEALER)
    secure_client(client, keypair, server.public)
    monitor = Monitor(client, sockets)
    client.connect(endpoint)
    return client, monitor


class Monitor:
    """The client socket's own account of its connection (handshake succeeded, failed, dropped)."""

    def __init__(self, socket: zmq.Socket[Any], sockets: Sockets) -> None:
        endpoint = f"inproc://monitor-{id(self)}"
        socket.monitor(endpoint, zmq.EVENT_ALL)
        self._events = sockets(zmq.PAIR)
        self._events.connect(endpoint)

    def wait_for(self, event: int) -> Mapping[str, object]:
        while self._events.poll(SOON_MS):
            message = recv_monitor_message(self._events)
            if message["event"] == event:
                return message
        raise AssertionError(f"no {zmq.Event(event).name} event within {SOON_MS} ms")


def serve_one(server: zmq.Socket[Any], registry: MessageRegistry) -> Ping:
    """Receive one Ping within SOON_MS, answer it with a Pong, and return it."""
    assert server.poll(SOON_MS), "the server received nothing"
    identity, data = server.recv_multipart()
    frame = registry.decode(data, max_size=MAX_MESSAGE_SIZE)
    assert isinstance(frame.message, Ping)
    server.send_multipart([identity, registry.encode(Pong(text=frame.message.text), request_id=frame.request_id)])
    return frame.message


def ask(client: zmq.Socket[Any], registry: MessageRegistry, text: str, *, request_id: int = 1) -> None:
    client.send(registry.encode(Ping(text=text), request_id=request_id))


def answer(client: zmq.Socket[Any], registry: MessageRegistry, timeout_ms: int = SOON_MS) -> object | None:
    if not client.poll(timeout_ms):
        return None
    return registry.decode(client.recv(), max_size=MAX_MESSAGE_SIZE).message


# -- authorized and unauthorized clients ---------------------------------------------------------------


def test_an_authorized_client_gets_its_reply(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
    server_keys: tuple[Path, KeyPair],
) -> None:
    folder, server_pair = server_keys
    client_pair = generate_keypair()
    authorize(folder, client_pair.public, "alice")

    with open_authenticator(context, authorized=folder, log=log[0]) as authenticator:
        server, endpoint = open_server(sockets, server_pair)
        client, _ = open_client(sockets, client_pair, server_pair, endpoint)
        ask(client, registry, "hello")
        serve_one(server, registry)

        assert answer(client, registry) == Pong(text="hello")
        assert authenticator.statistics().accepted == 1
        assert authenticator.statistics().refused == 0


def test_the_server_learns_which_key_sent_each_message(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
    server_keys: tuple[Path, KeyPair],
) -> None:
    folder, server_pair = server_keys
    client_pair = generate_keypair()
    authorize(folder, client_pair.public)

    with open_authenticator(context, authorized=folder, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        client, _ = open_client(sockets, client_pair, server_pair, endpoint)
        ask(client, registry, "who am I?")
        assert server.poll(SOON_MS)
        _, data = server.recv_multipart(copy=False)

        assert data.get("User-Id") == client_pair.public.decode()
        assert data.get("Peer-Address") == "127.0.0.1"


def test_an_unauthorized_client_gets_nothing_and_the_refusal_is_logged_with_its_address_and_key(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
    server_keys: tuple[Path, KeyPair],
) -> None:
    folder, server_pair = server_keys
    authorize(folder, generate_keypair().public, "someone else")
    stranger = generate_keypair()

    with open_authenticator(context, authorized=folder, log=log[0]) as authenticator:
        server, endpoint = open_server(sockets, server_pair)
        client, monitor = open_client(sockets, stranger, server_pair, endpoint)
        ask(client, registry, "let me in")
        refused = monitor.wait_for(zmq.EVENT_HANDSHAKE_FAILED_AUTH)

        assert refused["value"] == 400, "ZAP status 400: the client gives up, it does not retry"
        assert answer(client, registry, NOTHING_MS) is None, "the request times out"
        assert server.poll(0) == 0, "the server application never saw the request"
        [refusal] = log[1].wait_for(1)
        assert "refused CURVE client 127.0.0.1" in refusal
        assert stranger.public.decode() in refusal
        assert f"sd-actors keys authorize {stranger.public.decode()}" in refusal
        assert authenticator.statistics().refused == 1


def test_after_refusing_a_stranger_the_server_goes_on_serving_authorized_clients(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
    server_keys: tuple[Path, KeyPair],
) -> None:
    folder, server_pair = server_keys
    friend = generate_keypair()
    authorize(folder, friend.public)

    with open_authenticator(context, authorized=folder, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        stranger_client, stranger_monitor = open_client(sockets, generate_keypair(), server_pair, endpoint)
        ask(stranger_client, registry, "stranger")
        stranger_monitor.wait_for(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        friend_client, _ = open_client(sockets, friend, server_pair, endpoint)
        ask(friend_client, registry, "friend")

        assert serve_one(server, registry) == Ping(text="friend")
        assert answer(friend_client, registry) == Pong(text="friend")


def test_a_key_authorized_while_the_server_runs_is_admitted_without_a_restart(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
    server_keys: tuple[Path, KeyPair],
) -> None:
    folder, server_pair = server_keys
    newcomer = generate_keypair()

    with open_authenticator(context, authorized=folder, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        _, early_monitor = open_client(sockets, newcomer, server_pair, endpoint)
        early_monitor.wait_for(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        authorize(folder, newcomer.public, "newcomer")
        client, _ = open_client(sockets, newcomer, server_pair, endpoint)
        ask(client, registry, "now?")
        serve_one(server, registry)

        assert answer(client, registry) == Pong(text="now?")


def test_the_authorized_keys_may_come_from_a_callable(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
) -> None:
    server_pair, client_pair = generate_keypair(), generate_keypair()

    with open_authenticator(context, authorized=lambda: {client_pair.public}, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        client, _ = open_client(sockets, client_pair, server_pair, endpoint)
        ask(client, registry, "callable")
        serve_one(server, registry)

        assert answer(client, registry) == Pong(text="callable")


def test_a_failing_callable_refuses_the_client_logs_why_and_the_authenticator_keeps_serving(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
) -> None:
    server_pair, client_pair = generate_keypair(), generate_keypair()
    broken = threading.Event()

    def authorized() -> set[bytes]:
        if broken.is_set():
            raise OSError("the key database is unreachable")
        return {client_pair.public}

    with open_authenticator(context, authorized=authorized, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        broken.set()
        _, failing_monitor = open_client(sockets, client_pair, server_pair, endpoint)
        failing_monitor.wait_for(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        errors = log[1].wait_for(1, logging.ERROR)
        broken.clear()
        client, _ = open_client(sockets, client_pair, server_pair, endpoint)
        ask(client, registry, "after the failure")
        serve_one(server, registry)

        assert errors == ["the ZAP authenticator failed; refusing the connection"]
        [failure] = [record for record in log[1].records if record.levelno == logging.ERROR]
        assert failure.exc_info is not None
        assert str(failure.exc_info[1]) == "the key database is unreachable"
        assert answer(client, registry) == Pong(text="after the failure")


# -- fail closed ----------------------------------------------------------------------------------------


def test_without_a_running_authenticator_a_secured_server_refuses_everyone(
    sockets: Sockets, registry: MessageRegistry
) -> None:
    server_pair, client_pair = generate_keypair(), generate_keypair()
    server, endpoint = open_server(sockets, server_pair)
    client, monitor = open_client(sockets, client_pair, server_pair, endpoint)
    ask(client, registry, "anyone home?")

    monitor.wait_for(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    assert server.poll(NOTHING_MS) == 0


def test_after_the_authenticator_stops_new_clients_are_refused(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
) -> None:
    server_pair, client_pair = generate_keypair(), generate_keypair()
    with open_authenticator(context, authorized=lambda: {client_pair.public}, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)

    client, monitor = open_client(sockets, client_pair, server_pair, endpoint)
    ask(client, registry, "too late")
    monitor.wait_for(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

    assert server.poll(NOTHING_MS) == 0


def test_one_context_holds_one_authenticator(
    context: zmq.Context[Any], log: tuple[logging.Logger, Refusals]
) -> None:
    with (
        open_authenticator(context, authorized=lambda: set(), log=log[0]),
        pytest.raises(RuntimeError, match="already runs in this ZeroMQ context"),
        open_authenticator(context, authorized=lambda: set(), log=log[0]),
    ):
        pass


def test_security_options_set_after_bind_are_refused_because_they_would_not_apply(sockets: Sockets) -> None:
    server = sockets(zmq.ROUTER)
    server.bind("tcp://127.0.0.1:*")

    with pytest.raises(ValueError, match=r"call secure_server\(\) first"):
        secure_server(server, generate_keypair())


def test_a_broken_authorized_keys_file_stops_the_authenticator_from_starting(
    context: zmq.Context[Any], log: tuple[logging.Logger, Refusals], tmp_path: Path
) -> None:
    (tmp_path / "authorized_keys").write_text("garbage\n")

    with pytest.raises(AuthorizedKeysError) as excinfo, open_authenticator(context, authorized=tmp_path, log=log[0]):
        pass

    assert excinfo.value.line == 1


# -- message size --------------------------------------------------------------------------------------


def test_an_oversized_message_disappears_and_the_server_keeps_serving_the_next_client(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals], registry: MessageRegistry,
) -> None:
    server_pair, big, small = generate_keypair(), generate_keypair(), generate_keypair()
    with open_authenticator(context, authorized=lambda: {big.public, small.public}, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        big_client, big_monitor = open_client(sockets, big, server_pair, endpoint)
        big_monitor.wait_for(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        big_client.send(b"x" * (MAX_MESSAGE_SIZE + 1))
        big_monitor.wait_for(zmq.EVENT_DISCONNECTED)  # libzmq drops the peer that sent it
        small_client, _ = open_client(sockets, small, server_pair, endpoint)
        ask(small_client, registry, "next")

        assert serve_one(server, registry) == Ping(text="next")
        assert answer(small_client, registry) == Pong(text="next")
        assert server.poll(NOTHING_MS) == 0, "the oversized message never reached the server"


def test_a_message_of_exactly_the_limit_arrives_whole(
    context: zmq.Context[Any], sockets: Sockets, log: tuple[logging.Logger, Refusals],
) -> None:
    server_pair, client_pair = generate_keypair(), generate_keypair()
    with open_authenticator(context, authorized=lambda: {client_pair.public}, log=log[0]):
        server, endpoint = open_server(sockets, server_pair)
        client, _ = open_client(sockets, client_pair, server_pair, endpoint)
        client.send(b"x" * MAX_MESSAGE_SIZE)

        assert server.poll(SOON_MS)
        assert len(server.recv_multipart()[1]) == MAX_MESSAGE_SIZE


# -- insecure mode ----------------------------------------------------------------------------------------


def test_the_insecure_warning_says_loudly_what_is_off_and_how_to_turn_it_on() -> None:
    warning = insecure_warning("tcp://0.0.0.0:3800")

    assert warning.startswith("WARNING: --insecure: security is OFF on tcp://0.0.0.0:3800")
    assert "neither encrypted nor authenticated" in warning
    assert "sd-actors keys init" in warning
