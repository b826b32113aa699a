"""LoadBalancer: the moves it plans, then `sd-actors rebalance` evening out a pool of three hosts."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sd_actors.policies import HostCapacity, Limits, PlacementRequest, plan_moves
from sd_actors.policies._balancer import Movable
from tests.policies.scheduling_pool import SchedulingPool, open_scheduling_pool, scheduled_vms

pytest_plugins = ["tests.hosts.fixtures"]


def host(name: str, *, vms: int = 0, used_memory: int = 0, memory: int = 4096) -> HostCapacity:
    return HostCapacity(host=name, memory_mib=memory, vcpus=4, used_memory_mib=used_memory, used_vcpus=vms, vms=vms)


def movable(name: str, on: str, memory: int = 256) -> Movable:
    return Movable(name=name, path=f"app:vms:{name}", host=on,
                   request=PlacementRequest(name=f"app:vms:{name}", memory_mib=memory, vcpus=1))


def loads_after(hosts: dict[str, HostCapacity], moves: list[tuple[str, str]]) -> dict[str, int]:
    counts = {name: capacity.vms for name, capacity in hosts.items()}
    for source, target in moves:
        counts[source] -= 1
        counts[target] += 1
    return counts


def test_an_unbalanced_pool_is_planned_even_one_move_at_a_time() -> None:
    hosts = {"h1": host("h1", vms=6, used_memory=1536), "h2": host("h2"), "h3": host("h3")}
    components = [movable(f"vm{i}", "h1") for i in range(1, 7)]

    moves = plan_moves(hosts, components, metric="vmCount", max_imbalance=1, limits=Limits())

    assert [(m.source, m.target) for m in moves] == [("h1", "h2"), ("h1", "h3"), ("h1", "h2"), ("h1", "h3")]
    assert loads_after(hosts, [(m.source, m.target) for m in moves]) == {"h1": 2, "h2": 2, "h3": 2}
    assert len({m.name for m in moves}) == 4


def test_a_pool_within_its_imbalance_is_left_alone() -> None:
    hosts = {"h1": host("h1", vms=3), "h2": host("h2", vms=2), "h3": host("h3", vms=2)}

    moves = plan_moves(hosts, [movable("vm1", "h1")], metric="vmCount", max_imbalance=1, limits=Limits())

    assert moves == []


def test_only_the_components_that_may_move_are_moved() -> None:
    hosts = {"h1": host("h1", vms=6), "h2": host("h2")}

    moves = plan_moves(hosts, [movable("vm1", "h1")], metric="vmCount", max_imbalance=1, limits=Limits())

    assert [m.name for m in moves] == ["vm1"]


def test_by_memory_the_move_that_narrows_the_gap_most_is_chosen() -> None:
    hosts = {"h1": host("h1", vms=3, used_memory=3072), "h2": host("h2", vms=1, used_memory=1024)}
    components = [movable("small", "h1", 256), movable("medium", "h1", 1024), movable("large", "h1", 1792)]

    moves = plan_moves(hosts, components, metric="memory", max_imbalance=512, limits=Limits())

    assert [(m.name, m.target) for m in moves] == [("medium", "h2")]


def test_a_component_is_not_moved_to_a_host_it_does_not_fit() -> None:
    hosts = {"h1": host("h1", vms=4, used_memory=2048), "h2": host("h2", memory=512)}

    moves = plan_moves(hosts, [movable("vm1", "h1", 1024)], metric="vmCount", max_imbalance=1, limits=Limits())

    assert moves == []


# -- across three hosts ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pool(requires_netns: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchedulingPool]:
    yield from open_scheduling_pool(tmp_path_factory.mktemp("pool"))


def test_rebalance_evens_out_an_unbalanced_pool_and_never_moves_a_pinned_vm(pool: SchedulingPool) -> None:
    h1 = pool.address("h1")
    pinned = f'        pinnedVm extends VM {{ domainName "pinnedVm"; memory 256; sfProcessHost "{h1}"; }}'
    balancer = "    balancer extends LoadBalancer { schedulee LAZY ATTRIB vms; maxImbalance 1; }"
    text = scheduled_vms(pool, count=6, memory=256, scheduler='policy "pack";', vm="restartable true;",
                         extra=balancer).replace("scheduler LAZY ATTRIB simpleScheduler;",
                                                 "scheduler LAZY ATTRIB simpleScheduler;\n" + pinned)
    source = pool.write("packed.sf", text)
    assert pool.cli("up", str(source), "--name", "packed", "--host", pool.endpoint("h1")).returncode == 0
    packed = {name: len(vms) for name, vms in pool.started_vms().items()}

    plan = pool.cli("rebalance", "packed", "--dry-run", "--host", pool.endpoint("h1"))
    after_plan = {name: len(vms) for name, vms in pool.started_vms().items()}
    moved = pool.cli("rebalance", "packed", "--host", pool.endpoint("h1"))
    balanced = pool.started_vms()
    again = pool.cli("rebalance", "packed", "--host", pool.endpoint("h1"))
    pool.down("packed")
    pool.wait_until_no_vms()

    h2, h3 = pool.address("h2"), pool.address("h3")
    assert packed == {"h1": 7, "h2": 0, "h3": 0}
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"packed:balancer: {h1} 7, {h2} 0, {h3} 0 VMs (max imbalance 1)" in plan.stdout
    assert plan.stdout.count(" would move packed:vms:vm") == 4
    assert "dry run: nothing was moved" in plan.stdout
    assert after_plan == packed
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert moved.stdout.count(" moved packed:vms:vm") == 4
    assert {name: len(vms) for name, vms in balanced.items()} == {"h1": 3, "h2": 2, "h3": 2}
    assert "packed:vms:pinnedVm" in balanced["h1"]
    assert "pinnedVm" not in moved.stdout
    assert f"{h1} 3, {h2} 2, {h3} 2 VMs" in again.stdout
    assert "balanced: nothing to move" in again.stdout


def test_rebalance_of_an_application_without_a_load_balancer_says_how_to_add_one(pool: SchedulingPool) -> None:
    source = pool.write("plain.sf", scheduled_vms(pool, count=1, memory=256))
    assert pool.cli("up", str(source), "--name", "plain", "--host", pool.endpoint("h1")).returncode == 0

    result = pool.cli("rebalance", "plain", "--host", pool.endpoint("h1"))
    pool.down("plain")
    pool.wait_until_no_vms()

    assert result.returncode == 1
    assert "plain has no LoadBalancer" in result.stderr
    assert "balancer extends LoadBalancer { schedulee LAZY ATTRIB vms; }" in result.stderr


def test_a_balancer_with_an_interval_evens_out_the_pool_by_itself(pool: SchedulingPool) -> None:
    balancer = "    balancer extends LoadBalancer { schedulee LAZY ATTRIB vms; balanceInterval 0.3; }"
    source = pool.write("drifting.sf", scheduled_vms(pool, count=6, memory=256, scheduler='policy "pack";',
                                                      vm="restartable true;", extra=balancer))
    assert pool.cli("up", str(source), "--name", "drifting", "--host", pool.endpoint("h1")).returncode == 0

    deadline = time.monotonic() + 30
    counts = {}
    while time.monotonic() < deadline:
        counts = {name: len(vms) for name, vms in pool.started_vms().items()}
        if counts == {"h1": 2, "h2": 2, "h3": 2}:
            break
        time.sleep(0.2)  # polling three daemons: nothing to wait on locally
    pool.down("drifting")
    pool.wait_until_no_vms()

    assert counts == {"h1": 2, "h2": 2, "h3": 2}
