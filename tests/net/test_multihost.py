"""Three hosts (network namespaces), a daemon on each: one description spans them, and a host dying,
restarting or losing its link is noticed by the parent on another host, whose record names the host."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgpack
import pytest

from sd_actors.actors._client_commands import trust_daemon
from sd_actors.actors._daemon import known_daemon_key, make_registry
from sd_actors.net import authorize, load_or_create_keypair
from sd_actors.net._node import Client
from sd_actors.net._peer_protocol import InvokeComponent, InvokeResult
from tests.hosts import LineReader, TestHost, TestHosts, open_test_hosts

pytest_plugins = ["tests.hosts.fixtures"]
pytestmark = pytest.mark.usefixtures("requires_netns")

SD_ACTORS = Path(sys.executable).with_name("sd-actors")
PORT = 3800
DELAY = 0.5
FACTOR = 2
WAIT = 20.0


@dataclass
class Pool:
    hosts: TestHosts
    daemons: dict[str, subprocess.Popen[str]]
    env: dict[str, str]
    state: dict[str, Path]

    def endpoint(self, name: str) -> str:
        return f"tcp://{self.hosts[name].address}:{PORT}"

    def cli(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SD_ACTORS), *arguments], capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)

    def status(self, host: str) -> dict[str, object]:
        result = self.cli("status", "--json", "--host", self.endpoint(host))
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]


def _keys(folder: Path) -> str:
    return load_or_create_keypair(folder).public.decode()


def _start_daemon(pool: Pool, name: str, seeds: list[str] | None = None) -> None:
    host: TestHost = pool.hosts[name]
    others = [other.name for other in pool.hosts if other.name != name] if seeds is None else seeds
    peers = [arg for other in others for arg in ("--peer", pool.endpoint(other))]
    process = host.popen([str(SD_ACTORS), "daemon", "--bind", pool.endpoint(name), "--state-dir",
                          str(pool.state[name]), *peers], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, env=pool.env)
    assert process.stdout is not None
    line = LineReader(process.stdout).read_line(timeout=WAIT)
    assert "ready" in line, line
    pool.daemons[name] = process


@pytest.fixture
def seeds() -> dict[str, list[str]] | None:
    """Which daemons each daemon is told of with --peer (None: all the others)."""
    return None


@pytest.fixture
def pool(tmp_path: Path, seeds: dict[str, list[str]] | None) -> Iterator[Pool]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    with open_test_hosts(3) as hosts:
        state = {host.name: tmp_path / host.name for host in hosts}
        pool = Pool(hosts, {}, env, state)
        daemon_keys = {name: _keys(folder) for name, folder in state.items()}
        user_folder = tmp_path / "config" / "sd-actors"
        user_key = _keys(user_folder)
        for name, folder in state.items():
            for other, key in daemon_keys.items():
                authorize(folder, key, other)
                trust_daemon(pool.endpoint(other), key, folder)
            authorize(folder, user_key, "the test user")
            trust_daemon(pool.endpoint(name), daemon_keys[name], user_folder)
        for host in hosts:
            _start_daemon(pool, host.name, None if seeds is None else seeds[host.name])
        yield pool
        for process in pool.daemons.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(WAIT)


def _description(pool: Pool, tmp: Path, delay: float = DELAY) -> Path:
    path = tmp / "spread.sf"
    path.write_text(f"""
#include "org/smartfrog/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay {delay};
    sfLivenessFactor {FACTOR};
    local extends Prim;
    second extends Compound {{ sfProcessHost "{pool.hosts['h2'].address}"; a extends Prim; b extends Prim; }}
    third extends Compound {{ sfProcessHost "{pool.hosts['h3'].address}"; c extends Prim; }}
}}
""")
    return path


def _wait_for_app(pool: Pool, host: str, app: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + WAIT
    while True:
        applications = {a["name"]: a for a in pool.status(host)["applications"]}  # type: ignore[union-attr]
        if app in applications and applications[app]["status"] == status:
            return applications[app]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"{app} on {host} is {applications.get(app)}, not {status}")
        time.sleep(0.1)  # polling a remote daemon's status: nothing to wait on locally


def test_a_description_spanning_three_hosts_is_created_by_each_hosts_daemon(pool: Pool, tmp_path: Path) -> None:
    description = _description(pool, tmp_path)

    result = pool.cli("up", str(description), "--name", "spread", "--host", pool.endpoint("h1"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "spread is up" in result.stdout
    progress = [line.split() for line in result.stdout.splitlines() if line.startswith(" ")]
    assert ["spread:second:a", "created", pool.hosts["h2"].address] in [line[1:4] for line in progress]
    on_h1 = _components(pool, "h1")
    on_h2 = _components(pool, "h2")
    on_h3 = _components(pool, "h3")
    assert on_h1[("spread", "local")] == ("started", "sd_actors.actors.Prim")
    assert on_h1[("spread", "second")][0] == "started"
    assert ("spread", "second", "a") not in on_h1
    assert on_h2[("spread", "second", "a")] == ("started", "sd_actors.actors.Prim")
    assert on_h2[("spread", "second", "b")] == ("started", "sd_actors.actors.Prim")
    assert on_h3[("spread", "third", "c")] == ("started", "sd_actors.actors.Prim")
    hosts = pool.cli("hosts", "--json", "--host", pool.endpoint("h1"))
    states = {h["address"]: h["state"] for h in json.loads(hosts.stdout)}
    assert states[pool.endpoint("h2")] == "alive"
    assert states[pool.endpoint("h3")] == "alive"


def _components(pool: Pool, host: str) -> dict[tuple[str, ...], tuple[str, str]]:
    """Every component a host's daemon runs: path → (state, class)."""
    found: dict[tuple[str, ...], tuple[str, str]] = {}
    for app in pool.status(host)["applications"]:  # type: ignore[attr-defined]
        for component in app["components"]:
            found[tuple(component["path"])] = (component["state"], component["class"])
    return found


def test_up_over_three_hosts_shows_each_components_start_once_before_it_says_up(pool: Pool, tmp_path: Path) -> None:
    description = _description(pool, tmp_path)

    result = pool.cli("up", str(description), "--name", "spread", "--host", pool.endpoint("h1"))

    assert result.returncode == 0, result.stdout + result.stderr
    progress = [line.split() for line in result.stdout.splitlines() if line.startswith(" ")]
    started = {line[1] for line in progress if line[2] == "started"}
    assert started == {"spread", "spread:local", "spread:second", "spread:second:a", "spread:second:b",
                       "spread:third", "spread:third:c"}
    assert "spread is up: 7 components started in " in result.stdout


def test_killing_a_hosts_daemon_fails_its_remote_parent_with_a_record_naming_the_host(
        pool: Pool, tmp_path: Path) -> None:
    assert pool.cli("up", str(_description(pool, tmp_path)), "--name", "spread", "--host",
                    pool.endpoint("h1")).returncode == 0

    started = time.monotonic()
    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)
    app = _wait_for_app(pool, "h1", "spread", "failed")
    elapsed = time.monotonic() - started

    record = app["record"]
    assert isinstance(record, dict)
    assert pool.hosts["h3"].address in record["description"]
    assert elapsed < DELAY * FACTOR + 1 + 1.5  # delay × factor + 1 s, plus the status polling


def test_a_hosts_daemon_restarted_at_once_fails_its_remote_parent_with_a_record_saying_so(
        pool: Pool, tmp_path: Path) -> None:
    delay = 2.0  # a silence limit of 4 s: longer than the restart, so only the new incarnation tells
    assert pool.cli("up", str(_description(pool, tmp_path, delay)), "--name", "spread", "--host",
                    pool.endpoint("h1")).returncode == 0

    killed = time.monotonic()
    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)
    _start_daemon(pool, "h3")  # the same folder and address; its journal has no part of spread
    back = time.monotonic() - killed
    app = _wait_for_app(pool, "h1", "spread", "failed")

    record = app["record"]
    assert isinstance(record, dict)
    assert back < delay * FACTOR
    assert f"host {pool.hosts['h3'].address}" in record["description"]
    assert "its daemon restarted, and its new run has no part of this subtree" in record["description"]


def test_cutting_a_hosts_link_is_detected_and_the_host_rejoins_when_it_comes_back(
        pool: Pool, tmp_path: Path) -> None:
    assert pool.cli("up", str(_description(pool, tmp_path)), "--name", "spread", "--host",
                    pool.endpoint("h1")).returncode == 0

    started = time.monotonic()
    pool.hosts["h2"].link_down()
    app = _wait_for_app(pool, "h1", "spread", "failed")
    elapsed = time.monotonic() - started
    pool.hosts["h2"].link_up()
    rejoined = _wait_for_host(pool, "h1", pool.endpoint("h2"), "alive")

    record = app["record"]
    assert isinstance(record, dict)
    assert pool.hosts["h2"].address in record["description"]
    assert elapsed < DELAY * FACTOR + 1 + 1.5  # delay × factor + 1 s, plus the status polling
    assert rejoined


def _wait_for_host(pool: Pool, host: str, address: str, state: str) -> bool:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        result = pool.cli("hosts", "--json", "--host", pool.endpoint(host))
        if {h["address"]: h["state"] for h in json.loads(result.stdout)}.get(address) == state:
            return True
        time.sleep(0.1)  # polling a remote daemon: nothing to wait on locally
    return False


@pytest.mark.parametrize("seeds", [{"h1": [], "h2": ["h1"], "h3": ["h1"]}])
def test_daemons_told_only_of_one_peer_learn_of_each_other_by_gossip(pool: Pool) -> None:
    learnt = _wait_for_host(pool, "h2", pool.endpoint("h3"), "alive")

    assert learnt
    assert _wait_for_host(pool, "h3", pool.endpoint("h2"), "alive")


def test_a_subtree_for_a_host_without_a_daemon_fails_the_deploy_with_a_record_naming_the_host(
        pool: Pool, tmp_path: Path) -> None:
    nowhere = str(pool.hosts.network.network_address + 200)
    description = tmp_path / "nowhere.sf"
    description.write_text(f"""
#include "org/smartfrog/components.sf"
sfConfig extends Compound {{ away extends Compound {{ sfProcessHost "{nowhere}"; a extends Prim; }} }}
""")
    trust_daemon(f"tcp://{nowhere}:{PORT}", load_or_create_keypair(tmp_path / "nowhere").public.decode(),
                 pool.state["h1"])

    result = pool.cli("up", str(description), "--name", "away", "--host", pool.endpoint("h1"))

    assert result.returncode == 1
    assert f"host {nowhere} is unreachable" in result.stdout


def test_a_lazy_link_to_a_component_on_another_host_reaches_it_across_the_network(
        pool: Pool, tmp_path: Path) -> None:
    description = tmp_path / "reach.sf"
    description.write_text(f"""
#include "org/smartfrog/components.sf"
#include "org/smartfrog/services/shellscript/components.sf"
#include "org/smartfrog/sfcore/workflow/components.sf"
sfConfig extends Compound {{
    second extends Compound {{
        sfProcessHost "{pool.hosts['h2'].address}";
        sh extends BashShell;
        a extends Prim;
    }}
    stop extends Terminator {{ kill LAZY ATTRIB second:a; type "normal"; description "stopped from h1"; }}
}}
""")

    result = pool.cli("up", str(description), "--name", "reach", "--host", pool.endpoint("h1"))
    app = _wait_for_app(pool, "h1", "reach", "terminated")

    assert result.returncode == 0, result.stdout + result.stderr
    record = app["record"]
    assert isinstance(record, dict)
    assert record["kind"] == "normal"


def test_a_method_of_a_component_on_another_host_is_invoked_by_name(pool: Pool, tmp_path: Path) -> None:
    description = tmp_path / "invoke.sf"
    description.write_text(f"""
#include "org/smartfrog/components.sf"
#include "org/smartfrog/services/shellscript/components.sf"
sfConfig extends Compound {{ second extends Compound {{ sfProcessHost "{pool.hosts['h2'].address}";
    sh extends BashShell; }} }}
""")
    assert pool.cli("up", str(description), "--name", "inv", "--host", pool.endpoint("h1")).returncode == 0
    user = load_or_create_keypair(Path(pool.env["XDG_CONFIG_HOME"]) / "sd-actors")
    server = known_daemon_key(Path(pool.env["XDG_CONFIG_HOME"]) / "sd-actors", pool.endpoint("h2"))

    with Client(pool.endpoint("h2"), registry=make_registry(), keypair=user, server_public=server) as client:
        reply = client.request(InvokeComponent(path=("inv", "second", "sh"), method="run",
                                               arguments=msgpack.packb(["echo from h2"])), timeout=WAIT)

    assert isinstance(reply, InvokeResult)
    result = msgpack.unpackb(reply.value)
    assert result["exit_status"] == 0
    assert result["stdout"] == "from h2\n"


def test_stopping_a_hosts_daemon_ends_the_subtree_it_ran_for_another_host_and_fails_that_parent(
        pool: Pool, tmp_path: Path) -> None:
    marker = f"sd-hosted-{time.monotonic_ns()}"
    description = tmp_path / "hosted.sf"
    description.write_text(f"""
#include "org/smartfrog/components.sf"
#include "org/smartfrog/services/shellscript/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay {DELAY};
    sfLivenessFactor {FACTOR};
    third extends Compound {{ sfProcessHost "{pool.hosts['h3'].address}";
        job extends BashShell {{ commands ["exec -a {marker} sleep 300"]; }} }}
}}
""")
    assert pool.cli("up", str(description), "--name", "hosted", "--host", pool.endpoint("h1")).returncode == 0
    assert _process_running(marker)

    pool.daemons["h3"].send_signal(signal.SIGTERM)

    assert pool.daemons["h3"].wait(WAIT) == 0
    assert not _process_running(marker)  # nobody would ever stop it again
    app = _wait_for_app(pool, "h1", "hosted", "failed")
    record = app["record"]
    assert isinstance(record, dict)
    assert pool.hosts["h3"].address in record["description"]


def _process_running(marker: str) -> bool:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, check=False).returncode == 0
