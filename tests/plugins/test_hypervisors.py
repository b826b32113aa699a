"""Hypervisors: one libvirt connection per URI and System, simulated hosts, and their capacity.

Hosts are libvirt test-driver files (tests/plugins/hosts_xml.py): each file is a hypervisor of its
own, with the CPUs and memory it says, and each connection to it has its own state. So what a
System's VMs did is seen only through the System's own connection.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import libvirt
import pytest

from sd_actors.actors import ABNORMAL, ComponentSpec, FakeClock, State, System, open_system
from sd_actors.plugins import (
    HypervisorCapacity,
    HypervisorError,
    hypervisor_capacity,
    hypervisor_connection,
)
from sd_actors.plugins._libvirt_events import open_connection
from tests.plugins.hosts_xml import write_test_host
from tests.plugins.test_storage import (  # noqa: F401 (hypervisor: the session libvirtd fixture, reused)
    hypervisor,
    libvirtd_clients_of_this_process,
)

MEMORY_MIB: Final = 64
WAIT: Final = 10.0
THROUGH_LIBVIRTD: Final = "test+unix:///default"
"""libvirtd's own test driver: a connection libvirtd can drop, as a restarted libvirtd does."""


@pytest.fixture
def system() -> Iterator[System]:
    with open_system(host="host1") as system:
        yield system


def vm(name: str, uri: str, **attributes: object) -> ComponentSpec:
    return ComponentSpec("sd_actors.plugins.VM", {"domainName": name, "memory": MEMORY_MIB, "vcpus": 2,
                                                  "hypervisor": uri, **attributes})


def test_vms_and_a_capacity_query_of_one_system_see_the_same_simulated_host(system: System, tmp_path: Path) -> None:
    uri = write_test_host(tmp_path, name="host1", cpus=8, memory_mib=4096)

    system.deploy(vm("web1", uri), name="web1")
    system.deploy(vm("web2", uri), name="web2")

    connection = hypervisor_connection(system, uri)
    assert sorted(domain.name() for domain in connection.listAllDomains()) == ["web1", "web2"]
    assert hypervisor_capacity(connection) == HypervisorCapacity(
        memory_mib=4096, free_memory_mib=0, vcpus=8, running_vms=2, vm_memory_mib=2 * MEMORY_MIB, vm_vcpus=4)
    assert hypervisor_capacity(connection).unreserved_memory_mib == 4096 - 2 * MEMORY_MIB
    separate = open_connection(uri)  # another connection: the file's state afresh, without the System's VMs
    try:
        assert separate.listAllDomains() == []
    finally:
        separate.close()


def test_two_simulated_hosts_have_their_own_size_and_their_own_vms(system: System, tmp_path: Path) -> None:
    small = write_test_host(tmp_path, name="small", cpus=2, memory_mib=1024)
    large = write_test_host(tmp_path, name="large", cpus=32, memory_mib=65536)

    system.deploy(vm("on-small", small), name="a")
    system.deploy(vm("on-large-1", large), name="b")
    system.deploy(vm("on-large-2", large, memory=512), name="c")

    on_small = hypervisor_capacity(hypervisor_connection(system, small))
    on_large = hypervisor_capacity(hypervisor_connection(system, large))
    assert (on_small.memory_mib, on_small.vcpus, on_small.running_vms, on_small.vm_memory_mib) == (1024, 2, 1, 64)
    assert (on_large.memory_mib, on_large.vcpus, on_large.running_vms, on_large.vm_memory_mib) == (65536, 32, 2,
                                                                                                   64 + 512)
    assert [d.name() for d in hypervisor_connection(system, small).listAllDomains()] == ["on-small"]


def test_a_stopped_vm_no_longer_counts_and_the_connection_outlives_it(system: System, tmp_path: Path) -> None:
    uri = write_test_host(tmp_path, name="host1", cpus=4, memory_mib=2048)
    system.deploy(vm("web1", uri), name="web1")
    connection = hypervisor_connection(system, uri)
    assert hypervisor_capacity(connection).running_vms == 1

    system.terminate("web1")

    assert connection.isAlive() == 1
    assert hypervisor_capacity(connection).running_vms == 0
    assert connection.listAllDomains() == []


def test_the_connection_is_one_per_uri_and_closes_with_the_system(tmp_path: Path) -> None:
    uri = write_test_host(tmp_path, name="host1", cpus=4, memory_mib=2048)
    with open_system() as system:
        connection = hypervisor_connection(system, uri)
        assert hypervisor_connection(system, uri) is connection
        assert hypervisor_connection(system, "test:///default") is not connection

    with pytest.raises(libvirt.libvirtError):
        connection.isAlive()


def test_an_unknown_hypervisor_says_which_uri_and_what_to_check(system: System) -> None:
    with pytest.raises(HypervisorError) as excinfo:
        hypervisor_connection(system, "nosuchdriver:///")

    assert "cannot connect to hypervisor 'nosuchdriver:///'" in str(excinfo.value)
    assert "check that its daemon runs" in str(excinfo.value)


def test_a_connection_that_died_is_opened_again_on_the_next_call(system: System, tmp_path: Path) -> None:
    uri = write_test_host(tmp_path, name="host1", cpus=4, memory_mib=2048)
    first = hypervisor_connection(system, uri)

    first.close()  # what a libvirtd restart does to it, as far as its users can tell
    again = hypervisor_connection(system, uri)

    assert again is not first
    assert again.isAlive() == 1
    assert hypervisor_capacity(again).memory_mib == 2048


def test_a_vm_goes_on_watching_its_domain_after_libvirtd_dropped_the_systems_connection(
        hypervisor: str) -> None:  # noqa: F811 (the imported fixture)
    name = f"sd-{uuid.uuid4().hex[:10]}"
    observer = open_connection(THROUGH_LIBVIRTD)
    try:
        before = libvirtd_clients_of_this_process()
        with open_system(clock=FakeClock(), host="host1") as system:
            ref = system.deploy(vm(name, THROUGH_LIBVIRTD), name="app")
            (systems,) = libvirtd_clients_of_this_process() - before

            subprocess.run(["virt-admin", "client-disconnect", "libvirtd", systems], check=True, capture_output=True)
            ref.call(lambda component: component.ping(), timeout=WAIT)  # its look fails, then it reconnects

            assert ref.state is State.STARTED
            observer.lookupByName(name).destroy()  # only libvirt's event, on the new connection, can tell it
            ended = system.wait_for_state("app", {State.TERMINATED, State.FAILED}, timeout=WAIT)
            assert ended.record is not None
            assert ended.record.kind == ABNORMAL
            assert "shutoff (destroyed)" in ended.record.description
        assert name not in {domain.name() for domain in observer.listAllDomains()}
    finally:
        observer.close()


def test_a_watcher_of_some_events_is_told_only_those(system: System, tmp_path: Path) -> None:
    import queue

    from sd_actors.plugins._hypervisors import watch_domain_lifecycle

    uri = write_test_host(tmp_path, name="host1", cpus=4, memory_mib=2048)
    connection = hypervisor_connection(system, uri)
    told: dict[str, queue.Queue[int]] = {"stops": queue.Queue(), "every": queue.Queue()}
    uuids = {name: str(uuid.uuid4()) for name in told}
    # Watched before they exist (their UUIDs are chosen here), so that no event can come first.
    watch_domain_lifecycle(system, uri, uuids["stops"], lambda event, _detail: told["stops"].put(event),
                           events={libvirt.VIR_DOMAIN_EVENT_STOPPED})
    watch_domain_lifecycle(system, uri, uuids["every"], lambda event, _detail: told["every"].put(event))
    for name in ("stops", "every"):
        domain = connection.defineXML(f"<domain type='test'><name>{name}</name><uuid>{uuids[name]}</uuid>"
                                      f"<memory unit='MiB'>{MEMORY_MIB}</memory><os><type>hvm</type></os></domain>")
        domain.create()
        domain.destroy()

    assert [told["every"].get(timeout=WAIT) for _ in range(3)] == [
        libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STOPPED]
    # The events come in order, those of "stops" first: by now it has been told all it will be.
    assert [told["stops"].get_nowait() for _ in range(told["stops"].qsize())] == [libvirt.VIR_DOMAIN_EVENT_STOPPED]
