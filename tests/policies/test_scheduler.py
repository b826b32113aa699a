"""Scheduler and Schedulee: filters, weighers and reservations on their own, then in a System, then
across three hosts (network namespaces, a daemon and a test-driver hypervisor each)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from sd_actors.actors import ComponentFailed, State, open_system
from sd_actors.descriptions import parse_string
from sd_actors.plugins import hookimpl, hypervisor_connection, make_plugin_manager
from sd_actors.plugins._domain_xml import DomainSpec, Owner, domain_xml
from sd_actors.policies import (
    HostCapacity,
    HostLedger,
    Limits,
    NoHostFits,
    PlacementRequest,
    host_ledger,
    unfit_reason,
    weigh,
)
from tests.plugins.hosts_xml import write_test_host
from tests.policies.scheduling_pool import HOST_MEMORY_MIB, SchedulingPool, open_scheduling_pool, scheduled_vms

pytest_plugins = ["tests.hosts.fixtures"]

VM_512 = PlacementRequest(name="app:vms:vm1", memory_mib=512, vcpus=1)


def host(name: str, *, memory: int = 4096, vcpus: int = 4, used_memory: int = 0, used_vcpus: int = 0,
         vms: int = 0) -> HostCapacity:
    return HostCapacity(host=name, memory_mib=memory, vcpus=vcpus, used_memory_mib=used_memory,
                        used_vcpus=used_vcpus, vms=vms)


# -- filters and weighers ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("capacity", "limits", "reason"), [
    (host("h1"), Limits(), None),
    (host("h1", used_memory=3840), Limits(), "free memory 256 MiB < 512"),
    (host("h1", vcpus=1, used_vcpus=4), Limits(vcpu_ratio=4), "free vcpus 0 < 1 (1 CPUs × vcpuRatio 4)"),
    (host("h1", vms=4), Limits(max_vms=4), "VM count 4 = max 4"),
    (host("h1", vms=3), Limits(max_vms=4), None),
], ids=["fits", "memory", "vcpus", "vm-count", "below-max"])
def test_a_filter_says_why_a_host_is_removed(capacity: HostCapacity, limits: Limits, reason: str | None) -> None:
    assert unfit_reason(VM_512, capacity, limits) == reason


@pytest.mark.parametrize(("policy", "best"), [
    ("spread", "h2"), ("pack", "h3"), ("fewestVMs", "h1"),
], ids=["spread-most-free-memory", "pack-least-free-memory", "fewest-vms"])
def test_a_weigher_orders_the_hosts_by_its_policy(policy: str, best: str) -> None:
    hosts = [host("h1", used_memory=2048, vms=1), host("h2", used_memory=1024, vms=2),
             host("h3", used_memory=3072, vms=3)]

    ranked = weigh(policy, hosts)

    assert ranked is not None
    assert ranked[0].host == best


def test_equal_hosts_are_taken_in_the_order_the_scheduler_lists_them() -> None:
    ranked = weigh("spread", [host("h3"), host("h1"), host("h2")])

    assert ranked is not None
    assert [h.host for h in ranked] == ["h3", "h1", "h2"]


def test_a_policy_that_is_not_built_in_is_left_to_plugins() -> None:
    assert weigh("random", [host("h1")]) is None


def test_no_host_fits_names_each_host_and_the_rule_that_removed_it() -> None:
    request = PlacementRequest(name="vm7", memory_mib=2048, vcpus=1)

    error = NoHostFits(request, {"host1": "free memory 1024 MiB < 2048", "host2": "dead",
                                 "host3": "VM count 4 = max 4"})

    assert str(error) == ("no host fits vm7 (memory 2048 MiB, 1 vcpus): host1: free memory 1024 MiB < 2048; "
                          "host2: dead; host3: VM count 4 = max 4")
    assert error.reasons["host2"] == "dead"


# -- reservations -------------------------------------------------------------------------------------------
@pytest.fixture
def hypervisor(tmp_path: Path) -> str:
    """A simulated host of 2 CPUs and 2048 MiB (libvirt's test driver)."""
    return write_test_host(tmp_path, name="host", cpus=2, memory_mib=2048)


def test_reservations_are_taken_until_the_host_is_full_then_refused_saying_why(hypervisor: str) -> None:
    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        ledger = host_ledger(system.runtime)

        granted = [ledger.reserve(("app", f"vm{i}"), VM_512, Limits())[0] for i in range(4)]
        token, refused, capacity = ledger.reserve(("app", "vm4"), VM_512, Limits())

        assert all(granted)
        assert token is None
        assert refused == "free memory 0 MiB < 512"
        assert capacity.vms == 4
        ledger.release(str(granted[0]))
        assert ledger.capacity("host").free_memory_mib == 512


def test_concurrent_reservations_never_overbook_a_host(hypervisor: str) -> None:
    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        ledger = host_ledger(system.runtime)
        go = threading.Barrier(12)
        tokens: list[str | None] = []
        lock = threading.Lock()

        def reserve(index: int) -> None:
            go.wait()
            token = ledger.reserve(("app", f"vm{index}"), VM_512, Limits())[0]
            with lock:
                tokens.append(token)

        threads = [threading.Thread(target=reserve, args=(i,)) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

        assert len(tokens) == 12
        assert sum(token is not None for token in tokens) == 4
        assert ledger.capacity("host").used_memory_mib == 2048


def test_a_reservation_no_component_claims_lapses(hypervisor: str) -> None:
    now = [0.0]
    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        ledger = HostLedger(system.runtime, clock=lambda: now[0])
        ledger.reserve(("app", "vm1"), VM_512, Limits())

        now[0] = 59.0
        held = ledger.reservations()
        now[0] = 61.0
        lapsed = ledger.reservations()
        ledger.close()

    assert list(held.values()) == [("app", "vm1")]
    assert lapsed == {}


# -- in a System ----------------------------------------------------------------------------------------------
def description(body: str, scheduler: str = 'hosts [|"localhost"|];') -> str:
    return f"""
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound {{
    simpleScheduler extends Scheduler {{ {scheduler} }}
    vms extends Schedulee {{
        scheduler LAZY ATTRIB simpleScheduler;
        {body}
    }}
}}
"""


def test_a_schedulees_children_get_the_host_the_scheduler_chose_and_hold_its_reservation(hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; memory 1024; } b extends VM { domainName "b"; }')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        root = system.deploy(parse_string(source), name="app")
        vms = system.lookup(("app", "vms"))
        held = sorted(host_ledger(system.runtime).reservations().values())
        hosts = [child.description["sfProcessHost"] for child in vms.children]
        system.terminate("app")
        after = host_ledger(system.runtime).reservations()

    assert root.state is State.TERMINATED
    assert hosts == ["localhost", "localhost"]
    assert held == [("app", "vms", "a"), ("app", "vms", "b")]
    assert after == {}


def test_a_ledger_made_after_a_restart_counts_the_reservations_of_what_already_runs(hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; memory 1024; }')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        system.deploy(parse_string(source), name="app")
        fresh = HostLedger(system.runtime)
        counted = list(fresh.reservations().values())
        used = fresh.capacity("localhost").used_memory_mib
        fresh.close()

    assert counted == [("app", "vms", "a")]
    assert used == 1024


def test_a_child_that_fits_nowhere_fails_the_deployment_and_the_others_reservations_are_released(
        hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; memory 1536; } b extends VM { domainName "b"; '
                         'memory 1024; }')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        with pytest.raises(ComponentFailed) as failure:
            system.deploy(parse_string(source), name="app")
        left = host_ledger(system.runtime).reservations()

    assert "no host fits app:vms:b (memory 1024 MiB, 1 vcpus): localhost: free memory 512 MiB < 1024" in \
        failure.value.record.description
    assert left == {}


def test_the_reservation_of_a_child_whose_deploy_fails_is_released(hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; } b extends VM { domainName "b"; domainType "nosuch"; }')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        with pytest.raises(ComponentFailed) as failure:
            system.deploy(parse_string(source), name="app")
        left = host_ledger(system.runtime).reservations()

    assert failure.value.record.path == ("app", "vms", "b")
    assert left == {}


def test_without_a_daemon_only_the_systems_own_host_can_be_used(hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; }', 'hosts [|"elsewhere"|];')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system, \
            pytest.raises(ComponentFailed) as failure:
        system.deploy(parse_string(source), name="app")

    assert "elsewhere: unreachable: this System has no daemon" in failure.value.record.description


def test_a_child_given_an_sfprocesshost_by_its_author_is_not_placed(hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; sfProcessHost "localhost"; }')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        system.deploy(parse_string(source), name="app")

        assert host_ledger(system.runtime).reservations() == {}


def test_a_child_whose_domain_already_runs_here_is_placed_here_again_even_on_a_full_host(hypervisor: str) -> None:
    # What a daemon restarted after leaving its VMs running sees when it re-deploys: placing the
    # child anywhere else would start a second copy.
    source = description('a extends VM { domainName "a"; memory 2048; }')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system:
        connection = hypervisor_connection(system, hypervisor)
        left = connection.defineXML(domain_xml(DomainSpec(
            name="a", memory=2048, vcpus=1, domain_type="test",
            owner=Owner(app="app", component="app:vms:a", host="crashed", process="rootProcess"))))
        left.create()
        system.deploy(parse_string(source), name="app")
        child = system.lookup(("app", "vms", "a"))
        used = host_ledger(system.runtime).capacity("localhost").used_memory_mib

        assert child.state is State.STARTED
        assert child.description["sfProcessHost"] == "localhost"
        assert used == 2048


class LastHostPolicy:
    """A third-party policy: the last host offered, when the Scheduler's policy is "last"."""

    @hookimpl
    def sd_actors_place(self, component: PlacementRequest, hosts: Sequence[HostCapacity],
                        policy: str) -> HostCapacity | None:
        return hosts[-1] if policy == "last" else None


def test_hook_sd_actors_place_lets_a_plugin_choose_among_the_hosts_that_fit(hypervisor: str) -> None:
    manager = make_plugin_manager(load_entry_points=False, plugins=[LastHostPolicy()])
    source = description('a extends VM { domainName "a"; }', 'hosts [|"localhost", "127.0.0.1"|]; policy "last";')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}, plugin_manager=manager) as system:
        system.deploy(parse_string(source), name="app")

        assert system.lookup(("app", "vms", "a")).description["sfProcessHost"] == "127.0.0.1"


def test_hook_sd_actors_place_unanswered_for_an_unknown_policy_fails_naming_it(hypervisor: str) -> None:
    source = description('a extends VM { domainName "a"; }', 'hosts [|"localhost"|]; policy "last";')

    with open_system(properties={"sd_actors.hypervisor": hypervisor}) as system, \
            pytest.raises(ComponentFailed) as failure:
        system.deploy(parse_string(source), name="app")

    assert "no plugin places by policy 'last'; the built-in policies are spread, pack and fewestVMs" in \
        failure.value.record.description


# -- across three hosts ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(requires_netns: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulingPool]:
    """Three hosts of 4 CPUs and 3072 MiB, shared by the tests below (each takes its apps down)."""
    yield from open_scheduling_pool(tmp_path_factory.mktemp("pool"))


def test_the_scheduler_spreads_twelve_vms_over_three_hosts_by_free_memory(pool: SchedulingPool) -> None:
    source = pool.write("spread.sf", scheduled_vms(pool, count=12, memory=256))

    result = pool.cli("up", str(source), "--name", "spread", "--host", pool.endpoint("h1"))
    placed = pool.started_vms()
    pool.down("spread")
    pool.wait_until_no_vms()

    assert result.returncode == 0, result.stdout + result.stderr
    assert placed == {"h1": [f"spread:vms:vm{i}" for i in (1, 10, 4, 7)],
                      "h2": [f"spread:vms:vm{i}" for i in (11, 2, 5, 8)],
                      "h3": [f"spread:vms:vm{i}" for i in (12, 3, 6, 9)]}


def test_when_no_host_has_room_up_fails_naming_each_host_and_the_filter_that_removed_it(
        pool: SchedulingPool) -> None:
    nowhere = str(pool.hosts.network.network_address + 200)
    source = pool.write("big.sf", scheduled_vms(pool, count=1, memory=4096, hosts=("h1", "h2", "h3", nowhere)))

    result = pool.cli("up", str(source), "--name", "big", "--host", pool.endpoint("h1"))
    placed = pool.started_vms()

    assert result.returncode == 1
    h1, h2, h3 = (pool.address(h) for h in ("h1", "h2", "h3"))
    assert (f"no host fits big:vms:vm1 (memory 4096 MiB, 1 vcpus): {h1}: free memory 3072 MiB < 4096; {h2}: free "
            f"memory 3072 MiB < 4096; {h3}: free memory 3072 MiB < 4096; {nowhere}: not in the pool") in result.stdout
    assert placed == {"h1": [], "h2": [], "h3": []}


def test_a_full_host_is_named_with_its_vm_count_when_the_scheduler_caps_it(pool: SchedulingPool) -> None:
    source = pool.write("capped.sf", scheduled_vms(pool, count=4, memory=256, scheduler="maxVMsPerHost 1;"))

    result = pool.cli("up", str(source), "--name", "capped", "--host", pool.endpoint("h2"))

    assert result.returncode == 1
    h1, h2, h3 = (pool.address(h) for h in ("h1", "h2", "h3"))
    assert (f"no host fits capped:vms:vm4 (memory 256 MiB, 1 vcpus): {h1}: VM count 1 = max 1; {h2}: VM count 1 = "
            f"max 1; {h3}: VM count 1 = max 1") in result.stdout
    assert pool.started_vms() == {"h1": [], "h2": [], "h3": []}


def test_two_ups_at_once_from_two_hosts_never_overbook_a_host(pool: SchedulingPool) -> None:
    ups = []
    for app, host in (("first", "h1"), ("second", "h2")):
        source = pool.write(f"{app}.sf", scheduled_vms(pool, count=12, memory=512, prefix=f"{app}-"))
        ups.append(pool.cli_nowait("up", str(source), "--name", app, "--host", pool.endpoint(host)))
    outputs = [up.communicate(timeout=120)[0] for up in ups]

    placed = pool.started_vms()
    pool.down("first", "h1")
    pool.down("second", "h2")
    pool.wait_until_no_vms()

    per_host = HOST_MEMORY_MIB // 512
    assert all(len(vms) <= per_host for vms in placed.values()), placed
    failed = [output for up, output in zip(ups, outputs, strict=True) if up.returncode != 0]
    assert failed, outputs
    assert all("no host fits" in output for output in failed), failed
    assert sum(len(vms) for vms in placed.values()) == 12 * (2 - len(failed))


def test_a_dead_host_is_left_out_and_named_dead_when_nothing_fits(pool: SchedulingPool) -> None:
    # Last of the pool's tests: it kills h3's daemon.
    pool.hosts["h3"].kill(pool.daemons["h3"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (state := _state_seen_by("h1", "h3", pool)) != "dead":
        assert time.monotonic() < deadline, f"h1 still sees h3 {state}"
        time.sleep(0.2)  # polling a daemon's view of the pool: nothing to wait on locally
    fits = pool.write("survivors.sf", scheduled_vms(pool, count=4, memory=256))
    too_big = pool.write("too-big.sf", scheduled_vms(pool, count=1, memory=4096))

    placed = pool.cli("up", str(fits), "--name", "survivors", "--host", pool.endpoint("h1"))
    on_survivors = {name: len(pool.vms_on(name)) for name in ("h1", "h2")}
    refused = pool.cli("up", str(too_big), "--name", "toobig", "--host", pool.endpoint("h1"))
    pool.down("survivors")

    assert placed.returncode == 0, placed.stdout + placed.stderr
    assert on_survivors == {"h1": 2, "h2": 2}
    assert refused.returncode == 1
    assert f"{pool.address('h3')}: dead" in refused.stdout


def _state_seen_by(observer: str, observed: str, pool: SchedulingPool) -> str:
    result = pool.cli("hosts", "--json", "--host", pool.endpoint(observer))
    return str({h["address"]: h["state"] for h in json.loads(result.stdout)}.get(pool.endpoint(observed)))
