"""Two daemons on this machine that know each other (insecure, on 127.0.0.1 ports of their own),
each with a simulated hypervisor of 4 CPUs and 4 GiB: enough hosts for a Scheduler to choose."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of
from tests.plugins.hosts_xml import write_test_host


@dataclass(frozen=True)
class TwoDaemons:
    entry: DaemonProcess
    """The daemon the user talks to."""
    other: str
    """The other daemon's host name as sfProcessHost and Scheduler.hosts take it (``127.0.0.1:PORT``);
    it sorts before the entry's."""


@contextmanager
def two_daemons(user: User, folder: Path) -> Iterator[TwoDaemons]:
    early, late = sorted((free_port(), free_port()), key=str)
    daemons = [DaemonProcess(user, folder / f"state-{port}", port, "--insecure", "--peer", f"tcp://127.0.0.1:{other}",
                             "--hypervisor", write_test_host(folder, name=f"host-{port}", cpus=4, memory_mib=4096),
                             "--heartbeat-interval", "0.2")
               for port, other in ((early, late), (late, early))]
    try:
        for daemon in daemons:
            daemon.start()
        entry = daemons[1]

        def both_alive() -> bool:
            hosts = json_of(user.run("hosts", "--json", "--insecure", "--host", entry.host))
            assert isinstance(hosts, list)
            return sum(host["state"] == "alive" for host in hosts) == 2

        eventually(both_alive, timeout=15, what="the two daemons see each other alive")
        yield TwoDaemons(entry, f"127.0.0.1:{early}")
    finally:
        for daemon in daemons:
            if daemon.process is not None:
                daemon.stop()


def component_hosts(user: User, daemon: DaemonProcess, app: str, depth: int) -> dict[str, tuple[str, str]]:
    """Name → (state, host) of the components ``depth`` levels below ``app``'s root, as status says."""
    status = json_of(user.run("status", app, "--json", "--insecure", "--host", daemon.host))
    assert isinstance(status, dict)
    return {component["path"][-1]: (component["state"], component["host"])
            for component in status["applications"][0]["components"] if len(component["path"]) == depth + 1}
