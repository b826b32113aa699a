"""Three simulated hosts for the placement tests: a network namespace, a daemon and a test-driver
hypervisor of its own each (``--hypervisor test:///…/hN.xml``), users reach them with the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sd_actors.actors._client_commands import trust_daemon
from sd_actors.net import authorize, load_or_create_keypair
from tests.hosts import LineReader, TestHosts, open_test_hosts
from tests.plugins.hosts_xml import write_test_host

SD_ACTORS: Final = Path(sys.executable).with_name("sd-actors")
PORT: Final = 3800
WAIT: Final = 30.0
HOST_MEMORY_MIB: Final = 3072
HOST_CPUS: Final = 4
VM_CLASS: Final = "sd_actors.plugins.VM"


@dataclass
class SchedulingPool:
    hosts: TestHosts
    folder: Path
    env: dict[str, str]
    daemons: dict[str, subprocess.Popen[str]]

    def address(self, name: str) -> str:
        return self.hosts[name].address

    def endpoint(self, name: str) -> str:
        return f"tcp://{self.address(name)}:{PORT}"

    def cli(self, *arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SD_ACTORS), *arguments], capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)

    def cli_nowait(self, *arguments: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(SD_ACTORS), *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env)

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.write_text(text)
        return path

    def vms_on(self, name: str) -> dict[str, str]:
        """The VMs host ``name``'s own daemon says it runs: component path → state."""
        result = self.cli("status", "--json", "--host", self.endpoint(name))
        assert result.returncode == 0, result.stderr
        found = {}
        for application in json.loads(result.stdout)["applications"]:
            for component in application["components"]:
                if component["class"] == VM_CLASS and component["host"] == self.address(name):
                    found[":".join(component["path"])] = component["state"]
        return found

    def started_vms(self) -> dict[str, list[str]]:
        """Host name → the started VMs its daemon runs (sorted)."""
        return {host.name: sorted(path for path, state in self.vms_on(host.name).items() if state == "started")
                for host in self.hosts}

    def down(self, app: str, host: str = "h1") -> None:
        result = self.cli("down", app, "--host", self.endpoint(host))
        assert result.returncode == 0, result.stdout + result.stderr

    def wait_until_no_vms(self) -> None:
        """Every host's VMs are gone (the subtrees on other hosts end a moment after down returns)."""
        deadline = time.monotonic() + WAIT
        while any(self.vms_on(host.name) for host in self.hosts):
            assert time.monotonic() < deadline, {host.name: self.vms_on(host.name) for host in self.hosts}
            time.sleep(0.1)  # polling other daemons: nothing to wait on locally


def _start_daemon(pool: SchedulingPool, name: str) -> None:
    hypervisor = write_test_host(pool.folder, name=name, cpus=HOST_CPUS, memory_mib=HOST_MEMORY_MIB)
    peers = [arg for other in pool.hosts if other.name != name for arg in ("--peer", pool.endpoint(other.name))]
    process = pool.hosts[name].popen(
        [str(SD_ACTORS), "daemon", "--bind", pool.endpoint(name), "--state-dir", str(pool.folder / name),
         "--hypervisor", hypervisor, "--heartbeat-interval", "0.2", *peers],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=pool.env)
    assert process.stdout is not None
    line = LineReader(process.stdout).read_line(timeout=WAIT)
    assert "ready" in line, line
    pool.daemons[name] = process


def _wait_for_membership(pool: SchedulingPool) -> None:
    """Each daemon sees the two others alive, so a Scheduler anywhere knows all three hosts."""
    deadline = time.monotonic() + WAIT
    for host in pool.hosts:
        while True:
            result = pool.cli("hosts", "--json", "--host", pool.endpoint(host.name))
            states = [h["state"] for h in json.loads(result.stdout or "[]")]
            if states.count("alive") == len(pool.hosts):
                break
            assert time.monotonic() < deadline, f"{host.name} sees {states}"
            time.sleep(0.1)  # polling other daemons: nothing to wait on locally


@dataclass
class _Keys:
    daemons: dict[str, str]
    user: str


def open_scheduling_pool(folder: Path) -> Iterator[SchedulingPool]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(folder), "XDG_CONFIG_HOME": str(folder / "config"),
           "XDG_STATE_HOME": str(folder / "state")}
    with open_test_hosts(3) as hosts:
        pool = SchedulingPool(hosts, folder, env, {})
        user_folder = folder / "config" / "sd-actors"
        keys = _Keys({host.name: load_or_create_keypair(folder / host.name).public.decode() for host in hosts},
                     load_or_create_keypair(user_folder).public.decode())
        for host in hosts:
            for other in hosts:
                authorize(folder / host.name, keys.daemons[other.name], other.name)
                trust_daemon(pool.endpoint(other.name), keys.daemons[other.name], folder / host.name)
            authorize(folder / host.name, keys.user, "the test user")
            trust_daemon(pool.endpoint(host.name), keys.daemons[host.name], user_folder)
        try:
            for host in hosts:
                _start_daemon(pool, host.name)
            _wait_for_membership(pool)
            yield pool
        finally:
            for process in pool.daemons.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(WAIT)


def scheduled_vms(pool: SchedulingPool, *, count: int, memory: int, hosts: tuple[str, ...] = ("h1", "h2", "h3"),
                  scheduler: str = "", vm: str = "", extra: str = "", prefix: str = "") -> str:
    """A description: a Scheduler over ``hosts``, a Schedulee of ``count`` VMs of ``memory`` MiB."""
    names = ", ".join(f'"{pool.address(h) if h in ("h1", "h2", "h3") else h}"' for h in hosts)
    machines = "\n".join(f'        vm{i} extends VM {{ domainName "{prefix}vm{i}"; memory {memory}; {vm} }}'
                         for i in range(1, count + 1))
    return f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    simpleScheduler extends Scheduler {{ hosts [|{names}|]; {scheduler} }}
    vms extends Schedulee {{
        scheduler LAZY ATTRIB simpleScheduler;
{machines}
    }}
{extra}
}}
"""
