"""A pool of daemons on 127.0.0.1 for the takeover tests: insecure, a heartbeat every 0.2 s, each
with a simulated hypervisor of its own and every other daemon as a ``--peer``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of
from tests.plugins.hosts_xml import write_test_host


@contextmanager
def loopback_daemons(user: User, folder: Path, count: int, *options: str) -> Iterator[list[DaemonProcess]]:
    """``count`` daemons that know each other, sorted by address, once the first sees all alive."""
    ports = sorted((free_port() for _ in range(count)), key=lambda port: f"tcp://127.0.0.1:{port}")
    daemons = [DaemonProcess(user, folder / f"state-{port}", port, "--insecure", "--heartbeat-interval", "0.2",
                             "--hypervisor", write_test_host(folder, name=f"host-{port}", cpus=4, memory_mib=4096),
                             *(option for other in ports if other != port
                               for option in ("--peer", f"tcp://127.0.0.1:{other}")), *options)
               for port in ports]
    try:
        for daemon in daemons:
            daemon.start()

        def all_alive() -> bool:
            hosts = json_of(user.run("hosts", "--json", "--insecure", "--host", daemons[0].host))
            assert isinstance(hosts, list)
            return sum(host["state"] == "alive" for host in hosts) == count

        eventually(all_alive, timeout=20, what=f"the {count} daemons see each other alive")
        yield daemons
    finally:
        for daemon in daemons:
            if daemon.process is not None:
                daemon.stop()
