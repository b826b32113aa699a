"""VirtualCluster: size VMs from one template, named, addressed and given roles; scaled while it runs.

In a System, VMs run on libvirt's ``test:///default`` driver (one in-memory hypervisor per
process: each test names its domains uniquely) and a FakeClock keeps their state polls still.
Through the command line, a daemon does the same and ``sd-actors up`` of a changed size scales
the running cluster.
"""

from __future__ import annotations

import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import libvirt
import pytest

from sd_actors.actors import ComponentFailed, FakeClock, LifecycleEvent, State, System, open_system
from sd_actors.actors._update import UpdateRefused, apply_update, plan_update, running_components
from sd_actors.descriptions import parse_string
from tests.actors.daemon_helpers import DaemonProcess, User, eventually, free_port, json_of, running_daemon
from tests.policies.two_daemons import component_hosts, two_daemons

HYPERVISOR: Final = "test:///default"


def cluster_description(prefix: str, *, size: int, memory: int = 256, naming: str = "",
                        ip_base: str = "10.1.0.10") -> str:
    return f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    cluster extends VirtualCluster {{
        size {size};
        naming "{naming or prefix + '-%d'}";
        ipBase "{ip_base}";
        template extends ClusterNode {{
            memory {memory};
            kernel "/boot/vmlinuz";
            hypervisor "{HYPERVISOR}";
        }}
    }}
}}
"""


@pytest.fixture
def system() -> Iterator[System]:
    with open_system(clock=FakeClock()) as opened:
        yield opened


@pytest.fixture
def prefix() -> str:
    return f"vc{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hypervisor() -> Iterator[libvirt.virConnect]:
    connection = libvirt.open(HYPERVISOR)
    yield connection
    connection.close()


def running_domains(connection: libvirt.virConnect, prefix: str) -> dict[str, str]:
    """Name → UUID of the running domains whose name starts with ``prefix``."""
    return {domain.name(): domain.UUIDString() for domain in connection.listAllDomains()
            if domain.name().startswith(prefix) and domain.isActive()}


def member_names(system: System, app: str) -> list[str]:
    return [child.name for child in system.lookup(f"{app}:cluster").children if child.alive]


def scale(system: System, app: str, old: str, new: str) -> None:
    """What the daemon does for ``sd-actors up`` of a running application (tested end to end below)."""
    changes = plan_update(app, parse_string(old), parse_string(new), system.runtime.component_types)
    apply_update(running_components(system, app, changes))


def test_a_cluster_is_size_vms_named_from_0_with_consecutive_addresses_a_head_and_workers(
        system: System, prefix: str, hypervisor: libvirt.virConnect) -> None:
    system.deploy(parse_string(cluster_description(prefix, size=4)), name="c")

    assert member_names(system, "c") == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2", f"{prefix}-3"]
    assert sorted(running_domains(hypervisor, prefix)) == member_names(system, "c")
    for number in range(4):
        member = system.lookup(f"c:cluster:{prefix}-{number}")
        assert member.description["role"] == ("head" if number == 0 else "worker")
        xml = ET.fromstring(hypervisor.lookupByName(f"{prefix}-{number}").XMLDesc())  # noqa: S314 (libvirt's)
        assert xml.findtext("memory") == str(256 * 1024)
        command_line = xml.findtext("os/cmdline") or ""
        assert f"ip=10.1.0.{10 + number}:" in command_line
        assert f"hostname={prefix}-{number}" in command_line


def test_the_cluster_starts_only_once_every_member_runs(system: System, prefix: str) -> None:
    started: list[tuple[str, ...]] = []
    system.subscribe(lambda event: started.append(event.path) if event.new is State.STARTED else None)

    system.deploy(parse_string(cluster_description(prefix, size=3)), name="c")

    members = [("c", "cluster", f"{prefix}-{number}") for number in range(3)]
    assert started.index(("c", "cluster")) > max(started.index(member) for member in members)


def test_scaling_4_to_6_to_3_adds_members_then_removes_the_highest_numbered_and_leaves_the_others(
        system: System, prefix: str, hypervisor: libvirt.virConnect) -> None:
    four, six, three = (cluster_description(prefix, size=size) for size in (4, 6, 3))
    system.deploy(parse_string(four), name="c")
    before = running_domains(hypervisor, prefix)
    ended: list[LifecycleEvent] = []
    system.subscribe(lambda event: ended.append(event) if event.new.is_final else None)

    scale(system, "c", four, six)

    assert member_names(system, "c") == [f"{prefix}-{number}" for number in range(6)]
    after_growing = running_domains(hypervisor, prefix)
    assert {name: after_growing[name] for name in before} == before  # the same four domains, untouched
    assert system.lookup(f"c:cluster:{prefix}-5").description["ip"] == "10.1.0.15"
    assert ended == []

    scale(system, "c", six, three)

    assert member_names(system, "c") == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]
    assert running_domains(hypervisor, prefix) == {name: after_growing[name] for name in member_names(system, "c")}
    assert [event.path[-1] for event in ended] == [f"{prefix}-5", f"{prefix}-4", f"{prefix}-3"]
    assert all(event.new is State.TERMINATED for event in ended)
    assert system.lookup("c:cluster").description["size"] == 3


def test_a_member_that_fails_while_scaling_up_takes_the_new_ones_back_and_the_cluster_runs_on(
        system: System, prefix: str, hypervisor: libvirt.virConnect) -> None:
    four, six = (cluster_description(prefix, size=size) for size in (4, 6))
    system.deploy(parse_string(four), name="c")
    before = running_domains(hypervisor, prefix)
    # Someone else's domain has the name member 5 would get: the VM refuses to touch it.
    stranger = hypervisor.defineXML(f"<domain type='test'><name>{prefix}-5</name><memory>1024</memory>"
                                    "<os><type>hvm</type></os></domain>")

    with pytest.raises(ComponentFailed, match=f"a domain named '{prefix}-5' already exists"):
        scale(system, "c", four, six)

    assert member_names(system, "c") == [f"{prefix}-{number}" for number in range(4)]
    assert running_domains(hypervisor, prefix) == before
    assert system.lookup("c:cluster").description["size"] == 4
    assert system.lookup("c:cluster").state is State.STARTED
    stranger.undefine()


def test_a_change_the_running_cluster_cannot_take_is_refused_naming_it_and_nothing_changes(
        system: System, prefix: str) -> None:
    four = cluster_description(prefix, size=4)
    system.deploy(parse_string(four), name="c")

    with pytest.raises(UpdateRefused) as refused:
        scale(system, "c", four, cluster_description(prefix, size=6, memory=512))

    assert refused.value.reasons == ("c:cluster: template changed (VirtualCluster can change only size)",)
    assert "sd-actors down c, then up" in refused.value.hint
    assert len(member_names(system, "c")) == 4


@pytest.mark.parametrize(("mistake", "message"), [
    ({"size": 0}, "size is 0; give the number of members, 1 or more, e.g. size 4;"),
    ({"naming": "node"}, "naming 'node' must hold exactly one number placeholder (%d, or %02d for zero-padded"),
    ({"naming": "a:%d"}, "naming 'a:%d' makes names with ':' or spaces"),
    ({"ip_base": "10.1.0"}, "ipBase is '10.1.0'; give the first member's address, e.g. ipBase \"10.1.0.10\";"),
    ({"ip_base": "255.255.255.254"}, "ipBase '255.255.255.254' leaves no room for 4 consecutive addresses"),
], ids=["size", "no placeholder", "colon", "address", "overflow"])
def test_a_cluster_that_cannot_make_its_members_fails_before_any_exists_saying_what_to_fix(
        system: System, prefix: str, hypervisor: libvirt.virConnect, mistake: dict[str, object], message: str) -> None:
    text = cluster_description(prefix, **{"size": 4, **mistake})  # type: ignore[arg-type]

    with pytest.raises(ComponentFailed, match=re.escape(f"c:cluster: {message}")):
        system.deploy(parse_string(text), name="c")

    assert running_domains(hypervisor, prefix) == {}


# -- through the command line ------------------------------------------------------------------------


def members_in_status(user: User, daemon: DaemonProcess) -> list[str]:
    status = json_of(user.run("status", "c", "--json", "--host", daemon.host))
    assert isinstance(status, dict), status
    components = status["applications"][0]["components"]
    return [c["path"][-1] for c in components if len(c["path"]) == 3 and c["state"] == "started"]


def test_up_again_with_a_changed_size_scales_the_running_cluster_4_6_3(tmp_path: Path, prefix: str) -> None:
    user = User.make(tmp_path / "alice")
    source = tmp_path / "c.sf"
    with running_daemon(user, tmp_path / "state", free_port()) as daemon:
        source.write_text(cluster_description(prefix, size=4))
        first = user.run("up", str(source), "--host", daemon.host)
        assert first.returncode == 0, first.stderr
        assert "c is up: 6 components started" in first.stdout

        source.write_text(cluster_description(prefix, size=6))
        grown = user.run("up", str(source), "--host", daemon.host)

        assert grown.returncode == 0, grown.stderr
        assert "updating c (c:cluster: size) on " in grown.stdout
        assert re.search(rf"c:cluster:{prefix}-5\s+started", grown.stdout)
        assert "c is updated: 2 components started, 0 terminated" in grown.stdout
        assert members_in_status(user, daemon) == [f"{prefix}-{number}" for number in range(6)]

        source.write_text(cluster_description(prefix, size=3))
        shrunk = user.run("up", str(source), "--host", daemon.host)

        assert shrunk.returncode == 0, shrunk.stderr
        assert "c is updated: 0 components started, 3 terminated" in shrunk.stdout
        assert members_in_status(user, daemon) == [f"{prefix}-{number}" for number in range(3)]

        again = user.run("up", str(source), "--host", daemon.host)
        assert "c is already running" in again.stdout

        source.write_text(cluster_description(prefix, size=3, memory=512))
        refused = user.run("up", str(source), "--host", daemon.host)
        assert refused.returncode == 1
        assert "c:cluster: template changed (VirtualCluster can change only size)" in refused.stderr
        assert "hint: sd-actors down c, then up" in refused.stderr

        # The journal holds the new size: a restarted daemon brings back three members.
        daemon.stop()
        daemon.start()
        eventually(lambda: members_in_status(user, daemon) == [f"{prefix}-{number}" for number in range(3)],
                   timeout=20, what="the three members back after a restart")


# -- composed with the other policies ----------------------------------------------------------------


def test_an_harestarter_around_a_schedulee_around_a_cluster_each_does_its_part(
        system: System, prefix: str, hypervisor: libvirt.virConnect) -> None:
    source = f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    placer extends Scheduler {{ hosts [|"localhost"|]; }}
    ha extends HARestarter {{
        vms extends Schedulee {{
            scheduler LAZY ATTRIB placer;
            cluster extends VirtualCluster {{
                size 3;
                naming "{prefix}-%d";
                template extends ClusterNode {{ memory 256; hypervisor "{HYPERVISOR}"; }}
            }}
        }}
    }}
}}
"""
    system.deploy(parse_string(source), name="c")
    cluster = system.lookup("c:ha:vms:cluster")
    first = running_domains(hypervisor, prefix)
    redeployed = threading.Event()
    system.subscribe(lambda event: redeployed.set()
                     if event.path == ("c", "ha", "vms", "cluster") and event.new is State.STARTED else None)

    hypervisor.lookupByName(f"{prefix}-1").destroy()  # behind sd-actors' back: the member fails

    assert redeployed.wait(timeout=10), "the HARestarter did not deploy the Schedulee again"
    again = system.lookup("c:ha:vms:cluster")
    assert cluster.description["sfProcessHost"] == "localhost"  # the Scheduler placed the cluster
    assert cluster.state is State.FAILED  # the member's failure failed the cluster (shared fate) ...
    assert again is not cluster  # ... and the HARestarter deployed the Schedulee, so the cluster, again
    assert member_names(system, "c:ha:vms") == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]
    now = running_domains(hypervisor, prefix)
    assert sorted(now) == sorted(first)
    assert now[f"{prefix}-1"] != first[f"{prefix}-1"]  # a new domain in place of the destroyed one
    restarter = system.lookup("c:ha")
    assert restarter.call(lambda component: component.statistics()).restarts == 1


def test_a_cluster_with_a_scheduler_has_its_members_placed_over_the_hosts_and_scaled_there(
        tmp_path: Path, prefix: str) -> None:
    user = User.make(tmp_path / "alice")
    source = tmp_path / "c.sf"

    def description(size: int) -> str:
        return f"""#include "/ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    placer extends Scheduler {{ hosts [|"{pool.entry.host}", "{pool.other}"|]; }}
    cluster extends VirtualCluster {{
        size {size};
        naming "{prefix}-%d";
        scheduler LAZY ATTRIB placer;
        template extends ClusterNode {{ memory 2048; }}
    }}
}}
"""

    with two_daemons(user, tmp_path) as pool:
        source.write_text(description(4))
        up = user.run("up", str(source), "--insecure", "--host", pool.entry.host)
        assert up.returncode == 0, up.stdout + up.stderr
        members = component_hosts(user, pool.entry, "c", 2)
        # spread: most free memory first, ties in the Scheduler's order of hosts
        here, there = members[f"{prefix}-0"][1], pool.other
        assert members == {f"{prefix}-0": ("started", here), f"{prefix}-1": ("started", there),
                           f"{prefix}-2": ("started", here), f"{prefix}-3": ("started", there)}
        assert here != there

        source.write_text(description(5))  # two 2 GiB members fill each 4 GiB host
        full = user.run("up", str(source), "--insecure", "--host", pool.entry.host)
        assert full.returncode == 1
        assert f"no host fits c:cluster:{prefix}-4 (memory 2048 MiB, 1 vcpus)" in full.stderr
        assert "c runs as before" in full.stderr

        source.write_text(description(2))
        shrunk = user.run("up", str(source), "--insecure", "--host", pool.entry.host)
        assert shrunk.returncode == 0, shrunk.stdout + shrunk.stderr
        assert component_hosts(user, pool.entry, "c", 2) == {f"{prefix}-0": ("started", here),
                                                             f"{prefix}-1": ("started", there)}
