"""A survivor takes over an HARestarter whose daemon died (policies/README.md, "The HARestarter's own
host"), on three hosts (network namespaces) with a checker polling every hypervisor throughout, as in
test_partition.py."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from sd_actors.policies._takeover import Replica, ReplicaStore
from tests.policies import test_partition as partition
from tests.policies.test_partition import (
    VMS,
    WAIT,
    Pool,
    _assert_never_two_copies,
    _description,
    _each_once_on,
    _start_daemon,
    _up,
    _wait_for_hosts,
)

plugin_folder = partition.plugin_folder  # the fixtures of test_partition.py: three hosts, a daemon and a
pool = partition.pool                    # checker on each

pytest_plugins = ["tests.hosts.fixtures"]

DEPLOYED = {"h2": ("vm1",), "h3": ("vm2", "vm3")}


def test_a_replica_is_kept_on_disk_replaced_by_a_newer_epoch_or_deployment_and_forgotten_up_to_an_epoch(
        tmp_path: Path) -> None:
    def replica(host: str, epoch: int, incarnation: str = "first") -> Replica:
        return Replica(app="ha", path=("ha", "ha"), host=host, epoch=epoch, incarnation=incarnation,
                       description="sfConfig extends {}")

    store = ReplicaStore(tmp_path / "restarters.sqlite3")
    store.keep(replica("tcp://a:3800", 0))
    store.keep(replica("tcp://b:3800", 1))
    older_kept = store.keep(replica("tcp://a:3800", 0))
    older_forgotten = store.forget(("ha", "ha"), "first", 0)
    store.close()
    reopened = ReplicaStore(tmp_path / "restarters.sqlite3")
    kept = reopened.all()
    redeployed = reopened.keep(replica("tcp://c:3800", 0, "second"))
    other_forgotten = reopened.forget(("ha", "ha"), "first", 1)
    forgotten = reopened.forget(("ha", "ha"), "second", 0)

    assert not older_kept
    assert not older_forgotten
    assert kept == [replica("tcp://b:3800", 1)]
    assert redeployed  # a new sd-actors up of it: its first epoch replaces the old deployment's last
    assert not other_forgotten
    assert forgotten
    assert reopened.get(("ha", "ha")) is None
    reopened.close()


def test_a_replica_of_a_deployment_taken_down_is_refused_from_then_on_even_after_a_new_deployment(
        tmp_path: Path) -> None:
    def replica(host: str, epoch: int, incarnation: str) -> Replica:
        return Replica(app="ha", path=("ha", "ha"), host=host, epoch=epoch, incarnation=incarnation,
                       description="sfConfig extends {}")

    store = ReplicaStore(tmp_path / "restarters.sqlite3")
    store.keep(replica("tcp://a:3800", 0, "x"))
    store.keep(replica("tcp://b:3800", 1, "x"))  # taken over from a
    store.forget(("ha", "ha"), "x", 1)  # taken down on b
    store.keep(replica("tcp://c:3800", 0, "y"))  # up again, on c
    stale = store.keep(replica("tcp://a:3800", 0, "x"))  # a, cut off throughout, heals and spreads its own
    store.close()
    reopened = ReplicaStore(tmp_path / "restarters.sqlite3")
    stale_after_restart = reopened.keep(replica("tcp://b:3800", 1, "x"))
    kept = reopened.all()
    reopened.close()

    assert not stale
    assert not stale_after_restart
    assert kept == [replica("tcp://c:3800", 0, "y")]


def _status(pool: Pool, name: str, app: str = "ha") -> list[dict[str, object]]:
    result = pool.cli("status", app, "--json", "--host", pool.endpoint(name))
    return json.loads(result.stdout)["applications"] if result.returncode == 0 else []  # type: ignore[no-any-return]


def _running_restarter(pool: Pool, name: str) -> bool:
    """Whether host ``name``'s daemon runs application ha with its HARestarter started."""
    return any(app["status"] == "running" and any(c["path"] == ["ha", "ha"] and c["state"] == "started"
                                                  for c in app["components"])  # type: ignore[attr-defined]
               for app in _status(pool, name))


def _wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {WAIT} s")
        time.sleep(0.1)  # polling daemons in other namespaces: nothing to wait on here


@pytest.mark.usefixtures("requires_netns")
def test_a_survivor_takes_over_the_restarter_of_a_dead_host_without_stopping_its_vms(
        pool: Pool, tmp_path: Path) -> None:
    _up(pool, _description(pool, tmp_path, VMS))
    pool.wait_for(lambda latest: latest.get("h2") == DEPLOYED["h2"] and latest.get("h3") == DEPLOYED["h3"],
                  "deployed")

    pool.hosts["h1"].kill(pool.daemons["h1"], signal.SIGKILL)  # the HARestarter's host
    killed = time.monotonic()
    _wait_until(lambda: _running_restarter(pool, "h2") or _running_restarter(pool, "h3"), "taken over")
    taken = time.monotonic()
    taker, other = ("h2", "h3") if _running_restarter(pool, "h2") else ("h3", "h2")
    seen_from_other = _status(pool, other)

    # h1 comes back before the next kill: with h1 still dead, the last survivor alone would be no
    # majority of the three, and would fence.
    _start_daemon(pool, "h1")  # it re-deploys ha from its journal, and learns it was taken over
    _wait_for_hosts(pool, taker, {pool.endpoint("h1"): "alive"})
    _wait_until(lambda: any(app["status"] == "replicated" for app in _status(pool, "h1")), "known on h1")
    back = _status(pool, "h1")
    pool.collect()
    untouched = [(s.host, round(s.sent - killed, 2), s.running) for s in pool.sightings
                 if s.host in DEPLOYED and s.sent > killed and s.running != DEPLOYED[s.host]]

    pool.hosts[other].kill(pool.daemons[other], signal.SIGKILL)
    lost = time.monotonic()
    moved = pool.wait_for(_each_once_on({"h1", taker}, {"vm1", "vm2", "vm3"}), f"running on h1 and {taker}")

    down = pool.cli("down", "ha", "--host", pool.endpoint(taker))
    gone = pool.wait_for(lambda latest: not latest.get("h1") and not latest.get(taker), "gone after down")
    _wait_until(lambda: all(app["status"] == "terminated" for app in _status(pool, "h1")), "ended on h1")

    assert not untouched, untouched[:20]  # the VMs ran on, under the old HARestarter then the new one
    assert not _running_restarter(pool, other)
    assert {app["status"]: app["host"] for app in seen_from_other if app["status"] == "replicated"} == {
        "replicated": pool.endpoint(taker)}
    assert [app["status"] for app in back if app["status"] != "replicated"] == ["running"]
    stub = next(c for app in back if app["status"] == "running" for c in app["components"]  # type: ignore[attr-defined]
                if c["path"] == ["ha", "ha"])
    assert [c["path"] for app in back if app["status"] == "running" for c in app["components"]] == [  # type: ignore[attr-defined]
        ["ha"], ["ha", "ha"]], "h1 runs no second copy of the HARestarter's children"
    assert stub["state"] == "started"
    assert {app["host"] for app in back if app["status"] == "replicated"} == {pool.endpoint(taker)}
    _assert_never_two_copies(pool)
    assert down.returncode == 0, down.stdout + down.stderr
    assert all(s.running == () for s in pool.sightings if s.host in ("h1", taker) and s.sent > gone + 0.1)
    print(f"takeover {taken - killed:.2f} s after the kill (polled); VMs of the next dead host running again "
          f"{moved - lost:.2f} s after its kill")


@pytest.mark.usefixtures("requires_netns")
def test_a_cut_off_restarters_host_is_taken_over_and_once_healed_stops_nothing_even_parts_nested_in_a_compound(
        pool: Pool, tmp_path: Path) -> None:
    _up(pool, _description(pool, tmp_path, partition.NESTED))  # vm1 on h2, vm2 and vm3 on h3, in a group on h1
    pool.wait_for(lambda latest: latest.get("h2") == DEPLOYED["h2"] and latest.get("h3") == DEPLOYED["h3"],
                  "deployed")

    pool.hosts["h1"].link_down()  # h1 fences the group; the parts on h2 and h3 run on
    cut = time.monotonic()
    _wait_until(lambda: _running_restarter(pool, "h2") or _running_restarter(pool, "h3"), "taken over")
    taker = "h2" if _running_restarter(pool, "h2") else "h3"
    pool.hosts["h1"].link_up()
    _wait_until(lambda: {app["host"] for app in _status(pool, "h1") if app["status"] == "replicated"} == {
        pool.endpoint(taker)}, "h1 told where its HARestarter went")
    healed = time.monotonic()
    pool.wait_for(lambda latest: time.monotonic() > healed + 1.5, "watched for a while after the heal")
    statistics = pool.cli("status", "ha", "--json", "--host", pool.endpoint(taker))
    elsewhere = pool.cli("down", "ha", "--host", pool.endpoint("h3" if taker == "h2" else "h2"))
    downed = time.monotonic()
    down = pool.cli("down", "ha", "--host", pool.endpoint("h1"))  # where it was deployed: passed on to the taker
    pool.wait_for(lambda latest: all(not latest.get(host) for host in ("h1", "h2", "h3")), "gone after down")
    _wait_until(lambda: [app["status"] for app in _status(pool, taker)] == ["terminated"], "ended on the taker")

    changed = [(s.host, round(s.sent - cut, 2), s.running) for s in pool.sightings
               if s.host in DEPLOYED and cut < s.sent < downed and s.running != DEPLOYED[s.host]]
    assert not changed, changed[:20]  # never stopped: not by h1's fencing, nor by its old HARestarter after the heal
    assert not _running_restarter(pool, "h3" if taker == "h2" else "h2")
    components = {":".join(c["path"]): c["state"] for app in json.loads(statistics.stdout)["applications"]
                  if app["status"] == "running" for c in app["components"]}
    assert components == {"ha": "started", "ha:ha": "started", "ha:ha:group": "started",
                          **{f"ha:ha:group:{vm}": "started" for vm in ("vm1", "vm2", "vm3")}}
    assert elsewhere.returncode == 1
    assert f"its HARestarter runs on {pool.endpoint(taker)}: sd-actors down ha --host {pool.endpoint(taker)}" in (
        elsewhere.stderr)
    assert down.returncode == 0, down.stdout + down.stderr
    _assert_never_two_copies(pool)
