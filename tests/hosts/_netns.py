"""Simulated hosts: Linux network namespaces joined by veth pairs to a bridge.

``open_test_hosts(3)`` builds, as root::

    root namespace                          namespace sd-<pid>-<n>-h1 (and h2, h3)
    bridge sdb<pid>-<n>  10.77.X.1/24  ---  sdv<pid>-<n>-1 ==veth== eth0 10.77.X.2/24, lo up

The test process itself talks to every host through the bridge's address. Inside each
namespace, /etc/hosts names the hosts (``ip netns exec`` shows /etc/netns/<namespace>/hosts as
/etc/hosts), so ``h2`` resolves there as it would on a real network.

Every name carries the pid of the process that made it, so a later run can tell a live
neighbour (another pytest worker) from the leftovers of a run that crashed before cleaning up,
and remove only the latter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM
from types import MappingProxyType
from typing import Any, ClassVar, Final

IP: Final = "ip"
# `ip netns exec NS` bind-mounts every file in /etc/netns/NS over the one of the same name in /etc.
NETNS_ETC: Final = Path("/etc/netns")
# Interface names are at most IFNAMSIZ - 1 bytes.
MAX_INTERFACE_NAME: Final = 15
INTERFACE: Final = "eth0"
DEFAULT_TERMINATE_TIMEOUT: Final = 2.0
IP_TIMEOUT: Final = 30.0

# The names this module gives, by the pid and use number they carry.
NAMESPACE_NAME: Final = re.compile(r"sd-(?P<pid>\d+)-(?P<use>\d+)-h\d+")
LINK_NAME: Final = re.compile(r"sd[bv](?P<pid>\d+)-(?P<use>\d+)(?:-\d+)?")
# What `ip` says when the kernel or the container refuses namespaces, bridges or veth pairs
# outright, as opposed to a mistake in how they are being made.
REFUSALS: Final = (
    "Operation not permitted",
    "Permission denied",
    "Operation not supported",
    "Unknown device type",
    'Object "netns" is unknown',
)


class NetnsError(RuntimeError):
    """An `ip` command that builds or removes simulated hosts failed."""


class NetnsUnavailable(NetnsError):
    """This machine cannot make simulated hosts: not root, no iproute2, or namespaces refused."""


class _Uses:
    """Numbers the live uses of ``open_test_hosts`` in this process.

    Process-wide state, which STYLE.md section 5 otherwise rules out, because what it tracks is
    process-wide: names must differ between uses that are open at the same time (threads), and
    the stale cleanup must tell this process's live names from those of a crashed run that had
    the same pid (common in containers, where pytest tends to get the same pid every run).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers: set[int] = set()
        self._namespaces: set[str] = set()

    def claim(self) -> int:
        """The smallest use number not open now, so names stay short."""
        with self._lock:
            number = next(n for n in range(1, len(self._numbers) + 2) if n not in self._numbers)
            self._numbers.add(number)
            return number

    def claim_namespaces(self, names: Sequence[str]) -> None:
        with self._lock:
            taken = self._namespaces.intersection(names)
            if taken:
                raise NetnsError(
                    f"namespaces {sorted(taken)} are in use by another open_test_hosts in this process; "
                    "give each use its own prefix"
                )
            self._namespaces.update(names)

    def release(self, number: int, namespaces: Sequence[str]) -> None:
        with self._lock:
            self._numbers.discard(number)
            self._namespaces.difference_update(namespaces)

    def is_open(self, number: int) -> bool:
        with self._lock:
            return number in self._numbers

    def has_namespace(self, name: str) -> bool:
        with self._lock:
            return name in self._namespaces


_USES: Final = _Uses()


class _Processes:
    """The processes that hosts started with ``popen``, to stop them all at the end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: list[tuple[str, subprocess.Popen[Any]]] = []

    def add(self, namespace: str, process: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._started.append((namespace, process))

    def namespace_of(self, process: subprocess.Popen[Any]) -> str | None:
        with self._lock:
            return next((namespace for namespace, started in self._started if started is process), None)

    def stop_all(self, *, timeout: float) -> None:
        """SIGTERM every process still running, SIGKILL those still running ``timeout`` s later, reap all."""
        with self._lock:
            processes = [process for _, process in self._started]
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(SIGTERM)
        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def close_pipes(self) -> None:
        with self._lock:
            processes = [process for _, process in self._started]
        for process in processes:
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TestHost:
    """One simulated host: a network namespace with one interface on the shared bridge."""

    __test__: ClassVar[bool] = False  # a support class, not a pytest test class

    name: str
    """``h1``, ``h2``, ...: what the host is called in every host's /etc/hosts."""
    namespace: str
    address: str
    """The IPv4 address of ``interface``, without the prefix length."""
    interface: str
    """The interface inside the namespace (``eth0``)."""
    bridge_port: str
    """The other end of the veth pair, in the root namespace, attached to the bridge: the cable."""
    _processes: _Processes = dataclasses.field(repr=False, compare=False)

    def run(
        self, argv: Sequence[str | os.PathLike[str]], *, timeout: float | None = 60.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside the host and wait for it, like ``subprocess.run``."""
        return subprocess.run(self._in_namespace(argv), timeout=timeout, **kwargs)

    def popen(self, argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the host, like ``subprocess.Popen``.

        The process is stopped and reaped when the hosts are closed, if it has not ended by then.
        ``ip netns exec`` replaces itself with ``argv``, so the ``Popen``'s pid is the process's own.
        """
        process = subprocess.Popen(self._in_namespace(argv), **kwargs)
        self._processes.add(self.namespace, process)
        return process

    def kill(self, process: subprocess.Popen[Any], signal: int = SIGKILL) -> None:
        """Send ``signal`` to a process this host started (default: SIGKILL, as in ``kill -9``)."""
        owner = self._processes.namespace_of(process)
        if owner != self.namespace:
            where = "by another host" if owner is not None else "by no host"
            raise ValueError(f"process {process.pid} was started {where}, not by {self.name}; kill it there")
        process.send_signal(signal)

    def link_down(self) -> None:
        """Cut the cable: set the bridge side of the host's veth pair down.

        The host keeps its address and routes; its packets just stop arriving, as when a cable is pulled.
        """
        _ip("link", "set", "dev", self.bridge_port, "down")

    def link_up(self) -> None:
        """Plug the cable back in."""
        _ip("link", "set", "dev", self.bridge_port, "up")

    def _in_namespace(self, argv: Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
        if isinstance(argv, str):
            raise TypeError(f"argv is a list of arguments, not a command line: write {argv.split()!r}")
        return [IP, "netns", "exec", self.namespace, *argv]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TestHosts:
    """The simulated hosts of one ``open_test_hosts``, by name: ``hosts["h2"]``."""

    __test__: ClassVar[bool] = False  # a support class, not a pytest test class

    hosts: tuple[TestHost, ...]
    bridge: str
    network: ipaddress.IPv4Network
    root_address: str
    """The root namespace's address on the bridge: where a host reaches the test process."""
    names: Mapping[str, str]
    """Host name to address, as in each host's /etc/hosts."""

    def __getitem__(self, name: str) -> TestHost:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(f"no host {name!r}; the hosts are {', '.join(self.names)}")

    def __iter__(self) -> Iterator[TestHost]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)


def check_netns_available() -> None:
    """Raise ``NetnsUnavailable`` saying why, if this process plainly cannot make simulated hosts."""
    if os.geteuid() != 0:
        raise NetnsUnavailable(
            "simulated hosts need root (network namespaces, veth pairs and a bridge); run the tests as root, as CI does"
        )
    if shutil.which(IP) is None:
        raise NetnsUnavailable("simulated hosts need `ip` from iproute2 on PATH; install the iproute2 package")
    _ip("netns", "list")


def netns_unavailable_reason() -> str | None:
    """Why simulated hosts cannot be made here, or ``None`` if they can (proved by making one)."""
    try:
        with open_test_hosts(1):
            pass
    except NetnsUnavailable as error:
        return str(error)
    return None


@contextlib.contextmanager
def open_test_hosts(
    count: int = 3,
    *,
    prefix: str | None = None,
    subnet: str | None = None,
    terminate_timeout: float = DEFAULT_TERMINATE_TIMEOUT,
) -> Iterator[TestHosts]:
    """Make ``count`` simulated hosts ``h1``..``hN`` on one bridge; remove them all on exit.

    :param count: how many hosts.
    :param prefix: namespaces are called ``<prefix>-h1``...; by default ``sd-<pid>-<n>``. Leftover
        namespaces with the given prefix are taken for a crashed earlier run and removed.
    :param subnet: an IPv4 network for the bridge, such as ``"10.77.5.0/24"``; by default a random
        ``10.77.X.0/24`` that no route in the root namespace overlaps. The root namespace gets the
        first address, ``h1`` the second, and so on.
    :param terminate_timeout: on exit, processes started with ``popen`` get SIGTERM and this many
        seconds to end before SIGKILL.
    :raises NetnsUnavailable: not root, no ``ip``, or the kernel refuses namespaces.
    """
    check_netns_available()
    if count < 1:
        raise ValueError(f"count is {count}; ask for at least one host")
    if prefix is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", prefix):
        raise ValueError(f"prefix {prefix!r} is not a namespace name; use letters, digits, '_', '.' and '-'")
    network = _choose_network(subnet, count)

    processes = _Processes()
    use = _USES.claim()
    try:
        hosts = _plan(count, prefix=prefix, network=network, use=use, processes=processes)
        _USES.claim_namespaces([host.namespace for host in hosts])
    except BaseException:
        _USES.release(use, [])
        raise
    try:
        _remove_leftovers(hosts, prefix)
        _build(hosts)
        yield hosts
    except BaseException as failure:
        _close(hosts, processes, use=use, terminate_timeout=terminate_timeout, failure=failure)
        raise
    _close(hosts, processes, use=use, terminate_timeout=terminate_timeout, failure=None)


def _plan(
    count: int, *, prefix: str | None, network: ipaddress.IPv4Network, use: int, processes: _Processes
) -> TestHosts:
    """Name and number the hosts of one use, before anything is made."""
    pid = os.getpid()
    addresses = [str(network[index + 1]) for index in range(1, count + 1)]
    return TestHosts(
        hosts=tuple(
            TestHost(
                name=f"h{index}",
                namespace=f"{prefix or f'sd-{pid}-{use}'}-h{index}",
                address=address,
                interface=INTERFACE,
                bridge_port=_link_name(f"sdv{pid}-{use}-{index}"),
                _processes=processes,
            )
            for index, address in enumerate(addresses, start=1)
        ),
        bridge=_link_name(f"sdb{pid}-{use}"),
        network=network,
        root_address=str(network[1]),
        names=MappingProxyType({f"h{index}": address for index, address in enumerate(addresses, start=1)}),
    )


def _close(
    hosts: TestHosts, processes: _Processes, *, use: int, terminate_timeout: float, failure: BaseException | None
) -> None:
    """Tear the hosts down; what could not be removed is an error, or a note on the test's own failure."""
    try:
        problems = _tear_down(hosts, processes, terminate_timeout=terminate_timeout)
    finally:
        _USES.release(use, [host.namespace for host in hosts])
    if problems:
        message = "simulated hosts were not all removed:\n" + "\n".join(problems)
        if failure is None:
            raise NetnsError(message)
        failure.add_note(message)


def _build(hosts: TestHosts) -> None:
    prefix_length = hosts.network.prefixlen
    _ip("link", "add", "name", hosts.bridge, "type", "bridge")
    _ip("addr", "add", f"{hosts.root_address}/{prefix_length}", "dev", hosts.bridge)
    _ip("link", "set", "dev", hosts.bridge, "up")
    for host in hosts:
        _ip("netns", "add", host.namespace)
        _write_hosts_file(host.namespace, hosts.names)
        # The far end is made inside the namespace in the same call: no moment when a stray
        # eth0 sits in the root namespace, and the pair always goes when the namespace goes.
        veth = ("link", "add", "name", host.bridge_port, "type", "veth")
        _ip(*veth, "peer", "name", host.interface, "netns", host.namespace)
        _ip("link", "set", "dev", host.bridge_port, "master", hosts.bridge, "up")
        _ip("link", "set", "dev", "lo", "up", namespace=host.namespace)
        _ip("addr", "add", f"{host.address}/{prefix_length}", "dev", host.interface, namespace=host.namespace)
        _ip("link", "set", "dev", host.interface, "up", namespace=host.namespace)


def _tear_down(hosts: TestHosts, processes: _Processes, *, terminate_timeout: float) -> list[str]:
    """Stop the processes, remove the namespaces and the bridge; return what could not be removed."""
    problems: list[str] = []
    try:
        processes.stop_all(timeout=terminate_timeout)
    finally:
        for host in hosts:
            problems += _remove_namespace(host.namespace)
        problems += _remove_link(hosts.bridge)
        processes.close_pipes()
    return problems


def _remove_leftovers(hosts: TestHosts, prefix: str | None) -> None:
    """Remove namespaces and links that a crashed earlier run left behind.

    Whatever already has one of the names ``hosts`` are about to take is such a leftover: default
    names carry this process's pid and a use number that no open use in it has, and a prefix
    names one run at a time (``open_test_hosts`` says so).
    """
    problems: list[str] = []
    ours = {host.namespace for host in hosts}
    for name in sorted(_namespaces() | _netns_etc_entries()):
        if name in ours or _is_leftover_namespace(name, prefix):
            problems += _remove_namespace(name)
    ours = {hosts.bridge, *(host.bridge_port for host in hosts)}
    for link in _json(_ip("-j", "link", "show")):
        match = LINK_NAME.fullmatch(link["ifname"])
        if link["ifname"] in ours or (match and _is_dead(int(match["pid"]), int(match["use"]))):
            problems += _remove_link(link["ifname"])
    if problems:
        raise NetnsError("leftovers of an earlier run could not be removed:\n" + "\n".join(problems))


def _is_leftover_namespace(name: str, prefix: str | None) -> bool:
    if _USES.has_namespace(name):
        return False
    match = NAMESPACE_NAME.fullmatch(name)
    if match:
        return _is_dead(int(match["pid"]), int(match["use"]))
    return prefix is not None and re.fullmatch(rf"{re.escape(prefix)}-h\d+", name) is not None


def _is_dead(pid: int, use: int) -> bool:
    """Whether the use ``use`` of process ``pid`` has ended: its process is gone, or it is us and not open."""
    if pid == os.getpid():
        return not _USES.is_open(use)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _remove_namespace(name: str) -> list[str]:
    """Kill what runs in the namespace, delete its veth pairs and the namespace; return what failed."""
    problems: list[str] = []
    if name in _namespaces():
        try:
            for pid in _ip("netns", "pids", name).split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), SIGKILL)
            # Deleting one end deletes the pair, at once; the namespace's own devices would only
            # go later, when the kernel frees the namespace.
            for link in _json(_ip("-j", "link", "show", "type", "veth", namespace=name)):
                _ip("link", "del", "dev", link["ifname"], namespace=name)
            _ip("netns", "del", name)
        except NetnsError as error:
            problems.append(str(error))
    shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
    return problems


def _remove_link(name: str) -> list[str]:
    if not any(link["ifname"] == name for link in _json(_ip("-j", "link", "show"))):
        return []
    try:
        _ip("link", "del", "dev", name)
    except NetnsError as error:
        return [str(error)]
    return []


def _namespaces() -> set[str]:
    return {entry["name"] for entry in _json(_ip("-j", "netns", "list"))}


def _netns_etc_entries() -> set[str]:
    try:
        return {entry.name for entry in NETNS_ETC.iterdir()}
    except FileNotFoundError:
        return set()


def _write_hosts_file(namespace: str, names: Mapping[str, str]) -> None:
    folder = NETNS_ETC / namespace
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# The simulated hosts of tests/hosts; `ip netns exec {namespace}` shows this file as /etc/hosts.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        *(f"{address}\t{name}" for name, address in names.items()),
    ]
    (folder / "hosts").write_text("\n".join(lines) + "\n")


def _choose_network(subnet: str | None, count: int) -> ipaddress.IPv4Network:
    routes = _routes()
    if subnet is not None:
        network = ipaddress.IPv4Network(subnet)
        # Network, root namespace, the hosts, broadcast.
        if network.num_addresses < count + 3:
            raise ValueError(f"subnet {subnet} is too small for {count} hosts; use a larger one such as a /24")
        clash = next((route for route in routes if route.overlaps(network)), None)
        if clash is not None:
            raise NetnsError(f"subnet {subnet} overlaps the root namespace's route to {clash}; pass another subnet")
        return network
    if count + 3 > 256:
        raise ValueError(f"{count} hosts do not fit in a /24; pass a larger subnet")
    for third in random.sample(range(256), 256):
        network = ipaddress.IPv4Network(f"10.77.{third}.0/24")
        if not any(route.overlaps(network) for route in routes):
            return network
    raise NetnsError("every 10.77.X.0/24 overlaps a route in the root namespace; pass subnet=")


def _routes() -> list[ipaddress.IPv4Network]:
    routes = []
    for route in _json(_ip("-j", "-4", "route", "show", "table", "all")):
        with contextlib.suppress(ValueError):
            routes.append(ipaddress.IPv4Network(route["dst"], strict=False))
    return routes


def _link_name(name: str) -> str:
    if len(name) > MAX_INTERFACE_NAME:
        raise ValueError(f"interface name {name!r} is longer than {MAX_INTERFACE_NAME} characters; use fewer hosts")
    return name


def _ip(*args: str, namespace: str | None = None) -> str:
    argv = [IP, *(("-n", namespace) if namespace is not None else ()), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT, check=False)
    if result.returncode != 0:
        message = f"`{' '.join(argv)}` failed: {result.stderr.strip() or f'exit status {result.returncode}'}"
        if any(refusal in result.stderr for refusal in REFUSALS):
            raise NetnsUnavailable(f"{message} (simulated hosts need CAP_SYS_ADMIN and CAP_NET_ADMIN)")
        raise NetnsError(message)
    return result.stdout


def _json(text: str) -> list[dict[str, Any]]:
    # `ip -j` prints nothing at all, not [], when there is nothing to list.
    return json.loads(text) if text.strip() else []
