"""A daemon that runs a part for an HARestarter elsewhere and is restarted at once (policies/README.md,
"A daemon that stops, or restarts"): the part is not in its journal, so its new run has none. The
HARestarter's stand-in fails as soon as the daemon's new life is heard of (a higher incarnation),
however short the silence, and the part is deployed there again: a real guest is re-attached (the
new component takes it over before the host watchdog's old guard fires), never left stopped."""

from __future__ import annotations

import time
from pathlib import Path

from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of
from tests.plugins.hosts_xml import write_test_host
from tests.policies import test_watchdog
from tests.policies.test_watchdog import DEAD_AFTER, Pool
from tests.policies.two_daemons import component_hosts

pool = test_watchdog.pool  # three daemons: one on qemu:///system (real guests), two simulated hosts
pytest_plugins = ["tests.plugins.test_guest_boot"]  # qemu_hypervisor, for that fixture

WAIT = 20.0


def test_a_part_whose_daemon_restarts_within_the_liveness_limit_is_deployed_there_again(tmp_path: Path) -> None:
    user = User.make(tmp_path / "alice")
    ports = free_port(), free_port()
    entry, other = (DaemonProcess(user, tmp_path / f"state-{port}", port, "--insecure", "--peer",
                                  f"tcp://127.0.0.1:{peer}", "--heartbeat-interval", "0.2", "--hypervisor",
                                  write_test_host(tmp_path, name=f"host-{port}", cpus=4, memory_mib=4096))
                    for port, peer in (ports, ports[::-1]))
    source = tmp_path / "ha.sf"
    source.write_text(f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay 1.0; sfLivenessFactor 2;
    ha extends HARestarter {{
        vm extends VM {{ domainName "quick"; memory 32; sfProcessHost "{other.host}"; }}
    }}
}}
""")

    def domains() -> object:
        listed = json_of(user.run("domains", "--json", "--insecure", "--host", other.host))
        assert isinstance(listed, dict)
        return listed["running"]

    def both_alive() -> bool:
        hosts = json_of(user.run("hosts", "--json", "--insecure", "--host", entry.host))
        assert isinstance(hosts, list)
        return [host["state"] for host in hosts] == ["alive", "alive"]

    try:
        entry.start()
        other.start()
        eventually(both_alive, timeout=WAIT, what="the two daemons see each other alive")
        up = user.run("up", str(source), "--name", "ha", "--insecure", "--host", entry.host)
        before = domains()
        killed = time.monotonic()
        other.kill()  # libvirt's test driver: the domain dies with the daemon's process
        other.start()
        back_after = time.monotonic() - killed
        eventually(domains, timeout=WAIT, what="the part deployed again on its restarted daemon")
        after = component_hosts(user, entry, "ha", 2)
        log = entry.log()
    finally:
        for daemon in (entry, other):
            if daemon.process is not None:
                daemon.stop()

    assert up.returncode == 0, up.stdout + up.stderr
    assert before == ["quick"]
    assert back_after < 2.0  # within the stand-in's silence limit (2 s): silence alone would not tell
    assert after == {"vm": ("started", other.host)}
    assert "its daemon restarted" in log, log[-3000:]


def test_a_real_guest_whose_daemon_restarts_at_once_keeps_running_and_is_taken_over_by_a_new_part(
        pool: Pool, tmp_path: Path) -> None:
    description = tmp_path / "quick.sf"
    # The HARestarter runs on a, its part on the qemu host. The guest has no disk: its BIOS finds
    # nothing to boot and keeps trying, as a running machine.
    description.write_text(f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    sfLivenessDelay 0.5; sfLivenessFactor 4;
    ha extends HARestarter {{
        vm extends VM {{
            domainName "{pool.domain}"; domainType "qemu"; memory 32; vcpus 1; sfProcessHost "{pool.qemu.host}";
            domainLivenessDelay 200;
        }}
    }}
}}
""")
    up = pool.user.run("up", str(description), "--name", "quick", "--insecure", "--host", pool.a.host, timeout=120)
    pool.wait_for_guest(running=True)
    with pool.guest_changes() as seen_stopped:
        killed = time.monotonic()
        pool.qemu.kill()
        pool.qemu.start()
        back_after = time.monotonic() - killed
        eventually(lambda: "restarting it as generation 1" in pool.a.log(), timeout=WAIT,
                   what="the part restarted by its HARestarter")
        eventually(lambda: time.monotonic() > killed + DEAD_AFTER + 1, timeout=WAIT,
                   what="watched past the old lease's end")
    after = component_hosts(pool.user, pool.a, "quick", 2)
    down = pool.user.run("down", "quick", "--insecure", "--host", pool.a.host)  # else stopping restarts it

    assert up.returncode == 0, up.stdout + up.stderr
    assert back_after < 2.0  # within the stand-in's silence limit (2 s): silence alone would not tell
    assert not seen_stopped, f"the guest stopped {seen_stopped[0] - killed:.2f} s after the kill"
    assert after == {"vm": ("started", pool.qemu.host)}
    assert "its daemon restarted" in pool.a.log()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "re-attached to domain" in pool.qemu.log()
    assert "destroy" not in (pool.qemu.state_dir / "watchdog.log").read_text()
    print(f"daemon back {back_after:.2f} s after kill -9; the part deployed there again, the guest ran throughout")
