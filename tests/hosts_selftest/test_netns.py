"""Simulated hosts: namespaces that reach each other, lose their link on demand and leave nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hosts import LineReader, NetnsUnavailable, TestHost, TestHosts, open_test_hosts

pytest_plugins = ["tests.hosts.fixtures"]

# Echoes every connection back to its sender; says on which port once it is listening.
ECHO_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], 0))
print("listening on", server.getsockname()[1], flush=True)
while True:
    connection, _ = server.accept()
    with connection:
        while data := connection.recv(4096):
            connection.sendall(data)
"""

# Sends its third argument to the echo server and prints what comes back.
ECHO_CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as connection:
    connection.sendall(sys.argv[3].encode())
    connection.shutdown(socket.SHUT_WR)
    reply = b""
    while data := connection.recv(4096):
        reply += data
print(reply.decode(), end="")
"""

READY_TIMEOUT = 10.0
NETNS_ETC = Path("/etc/netns")


def start_echo_server(host: TestHost) -> int:
    """Start an echo server on the host's address; its port, once it listens."""
    server = host.popen([sys.executable, "-c", ECHO_SERVER, host.address], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    line = LineReader(server.stdout).read_line(timeout=READY_TIMEOUT)
    return int(line.removeprefix("listening on "))


def echo_from_root(address: str, port: int, message: str, *, timeout: float) -> str:
    with socket.create_connection((address, port), timeout=timeout) as connection:
        connection.sendall(message.encode())
        connection.shutdown(socket.SHUT_WR)
        return connection.makefile(encoding="utf-8").read()


def leftovers(names: list[str]) -> list[str]:
    """Which of these namespace and interface names still exist."""
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    existing = {line.split()[0] for line in namespaces.splitlines()}
    existing |= {line.split(": ")[1].split("@")[0] for line in links.splitlines()}
    return sorted(existing.intersection(names))


def names_of(hosts: TestHosts) -> list[str]:
    return [hosts.bridge, *(host.namespace for host in hosts), *(host.bridge_port for host in hosts)]


def open_hosts_then_fail(opened: list[TestHosts]) -> None:
    with open_test_hosts(3) as hosts:
        opened.append(hosts)
        hosts["h1"].popen(["sleep", "60"])
        raise RuntimeError("the test failed")


def test_every_host_reaches_every_other_host_by_tcp(test_hosts: TestHosts) -> None:
    ports = {host.name: start_echo_server(host) for host in test_hosts}

    replies = {
        (client.name, server.name): client.run(
            [sys.executable, "-c", ECHO_CLIENT, server.address, str(ports[server.name]), f"{client.name} says hi"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for client in test_hosts
        for server in test_hosts
        if client is not server
    }

    assert replies == {
        ("h1", "h2"): "h1 says hi",
        ("h1", "h3"): "h1 says hi",
        ("h2", "h1"): "h2 says hi",
        ("h2", "h3"): "h2 says hi",
        ("h3", "h1"): "h3 says hi",
        ("h3", "h2"): "h3 says hi",
    }


def test_the_test_process_reaches_every_host_from_the_root_namespace(test_hosts: TestHosts) -> None:
    ports = {host.name: start_echo_server(host) for host in test_hosts}

    replies = {host.name: echo_from_root(host.address, ports[host.name], "ping", timeout=5) for host in test_hosts}

    assert replies == {"h1": "ping", "h2": "ping", "h3": "ping"}


def test_host_names_resolve_to_their_addresses_inside_every_host(test_hosts: TestHosts) -> None:
    resolved = {
        (host.name, name): host.run(["getent", "hosts", name], capture_output=True, text=True, check=True).stdout
        for host in test_hosts
        for name in test_hosts.names
    }

    assert {pair: line.split() for pair, line in resolved.items()} == {
        (host.name, name): [address, name] for host in test_hosts for name, address in test_hosts.names.items()
    }
    assert test_hosts.names == {host.name: host.address for host in test_hosts}


def test_a_cut_link_makes_its_host_unreachable_until_it_is_plugged_back_in(test_hosts: TestHosts) -> None:
    h3 = test_hosts["h3"]
    port = start_echo_server(h3)
    assert echo_from_root(h3.address, port, "before", timeout=5) == "before"

    h3.link_down()

    with pytest.raises(TimeoutError):
        echo_from_root(h3.address, port, "during", timeout=0.5)

    h3.link_up()

    assert echo_from_root(h3.address, port, "after", timeout=5) == "after"


def test_kill_sends_a_signal_to_a_process_the_host_started(test_hosts: TestHosts) -> None:
    h2 = test_hosts["h2"]
    sleeper = h2.popen(["sleep", "60"])

    h2.kill(sleeper, signal.SIGKILL)

    assert sleeper.wait(timeout=5) == -signal.SIGKILL


def test_kill_refuses_a_process_another_host_started(test_hosts: TestHosts) -> None:
    sleeper = test_hosts["h1"].popen(["sleep", "60"])

    with pytest.raises(ValueError, match="started by another host, not by h2"):
        test_hosts["h2"].kill(sleeper)


@pytest.mark.usefixtures("requires_netns")
def test_nothing_the_hosts_made_remains_after_the_context_exits() -> None:
    with open_test_hosts(3) as hosts:
        names = names_of(hosts)
        assert leftovers(names) == sorted(names)

    assert leftovers(names) == []
    assert not any((NETNS_ETC / host.namespace).exists() for host in hosts)


@pytest.mark.usefixtures("requires_netns")
def test_nothing_the_hosts_made_remains_when_the_test_inside_fails() -> None:
    opened: list[TestHosts] = []

    with pytest.raises(RuntimeError, match="the test failed"):
        open_hosts_then_fail(opened)

    assert leftovers(names_of(opened[0])) == []


@pytest.mark.usefixtures("requires_netns")
def test_processes_still_running_at_exit_are_terminated_then_killed_and_reaped() -> None:
    ignores_sigterm = (
        "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); input()"
    )

    with open_test_hosts(1, terminate_timeout=0.3) as hosts:
        polite = hosts["h1"].popen(["sleep", "60"])
        stubborn = hosts["h1"].popen(
            [sys.executable, "-c", ignores_sigterm], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert stubborn.stdout is not None
        assert LineReader(stubborn.stdout).read_line(timeout=READY_TIMEOUT) == "ready"

    assert (polite.returncode, stubborn.returncode) == (-signal.SIGTERM, -signal.SIGKILL)
    assert stubborn.stdin is not None
    assert stubborn.stdin.closed


@pytest.mark.usefixtures("requires_netns")
@pytest.mark.parametrize(
    "crashed", ["gone", "same pid"], ids=["whose process is gone", "whose pid this process has now"]
)
def test_leftovers_of_a_crashed_run_are_removed_before_new_hosts_are_made(crashed: str) -> None:
    # No process has a pid as large as pid_max, so that run is certainly over; and in a container
    # pytest often gets the same pid on every run.
    crashed_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) if crashed == "gone" else os.getpid()
    namespace, bridge = f"sd-{crashed_pid}-1-h1", f"sdb{crashed_pid}-1"
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    subprocess.run(["ip", "link", "add", "name", bridge, "type", "bridge"], check=True)
    orphan = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "60"])

    with open_test_hosts(1) as hosts:
        reply = hosts["h1"].run(["getent", "hosts", "h1"], capture_output=True, text=True, check=True).stdout

    assert reply.split() == [hosts["h1"].address, "h1"]
    assert orphan.wait(timeout=5) == -signal.SIGKILL
    assert leftovers([namespace, bridge]) == []


@pytest.mark.usefixtures("requires_netns")
def test_a_prefix_names_the_namespaces_and_replaces_leftovers_with_that_prefix() -> None:
    prefix = f"sdself{os.getpid()}"
    subprocess.run(["ip", "netns", "add", f"{prefix}-h2"], check=True)

    with open_test_hosts(2, prefix=prefix) as hosts:
        namespaces = [host.namespace for host in hosts]
        reply = hosts["h2"].run(["getent", "hosts", "h1"], capture_output=True, text=True, check=True).stdout

    assert namespaces == [f"{prefix}-h1", f"{prefix}-h2"]
    assert reply.split() == [hosts["h1"].address, "h1"]
    assert leftovers(namespaces) == []


def test_without_root_making_hosts_fails_saying_root_is_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(NetnsUnavailable, match="simulated hosts need root"), open_test_hosts(3):
        pass
