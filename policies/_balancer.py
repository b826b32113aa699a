"""LoadBalancer: keeps the hosts of a Schedulee's Scheduler within an imbalance, one move at a time.

``balancer extends LoadBalancer { schedulee LAZY ATTRIB vms; metric "vmCount"; maxImbalance 1; }``
compares the live hosts of the Scheduler by ``metric`` (``vmCount``: machines; ``memory``: MiB
used or reserved). While the most and the least loaded differ by more than ``maxImbalance``, it
plans to move one of the Schedulee's children from a loaded host to the least loaded one where
it fits. Only children the Schedulee may move are moved: placed by its Scheduler and not ``pinned``.
A child that is a VM (or holds one VM) migrates live when both hosts' hypervisors can
(:func:`~sd_actors.plugins._migration.migration_unsupported_reason`); otherwise it is restarted on
the other host if it says ``restartable true``, else left where it is, saying why.
``sd-actors rebalance APP [--dry-run]`` shows the plan and carries it out; with
``balanceInterval`` (seconds, 0: never) the balancer also makes one move by itself each interval.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TextIO

import msgpack

from sd_actors.actors import Component, ComponentFailed, ComponentRef, DeploymentError, LinkError
from sd_actors.actors._remote import Peers, endpoint_of_host
from sd_actors.net._peer_protocol import DomainsReply, ListDomains
from sd_actors.net._protocol import RequestFailed
from sd_actors.plugins._migration import migration_unsupported_reason
from sd_actors.plugins.hookspecs import hookimpl
from sd_actors.policies._placement import HostCapacity, Limits, PlacementRequest, PolicyError, unfit_reason

if TYPE_CHECKING:
    from sd_actors.actors import Timer

METRICS: Final = ("vmCount", "memory")
LOAD_BALANCER_CLASS: Final = "sd_actors.policies.LoadBalancer"
ASK_TIMEOUT: Final = 3.0
"""Seconds another host's daemon has to say which hypervisor it runs."""
MIGRATE: Final = "migrate"
RESTART: Final = "restart"


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """One planned move: a child of the Schedulee, from one host to another."""

    name: str
    path: str
    source: str
    target: str
    way: str = RESTART
    """:data:`MIGRATE` (live) or :data:`RESTART` (terminated, then deployed on the target)."""
    migration: tuple[tuple[str, ...], str] | None = None
    """For a migration: the VM's path below the child and the target's hypervisor URI."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Movable:
    name: str
    path: str
    host: str
    request: PlacementRequest
    restartable: bool = True
    vms: tuple[tuple[tuple[str, ...], str], ...] = ()
    """The VMs of its subtree: path below the child, and their own ``hypervisor`` ("" if none)."""


def plan_moves(hosts: Mapping[str, HostCapacity], movable: list[Movable], *, metric: str, max_imbalance: int,
               limits: Limits) -> list[Move]:
    """The moves that bring ``hosts`` within ``max_imbalance`` by ``metric``, one component at a time.

    Each step takes the least loaded host as the target and, from the most loaded host down, the
    movable component whose move narrows the gap between the two the most (and fits the target).
    It stops when the hosts are within the imbalance or no move narrows the gap.
    """
    hosts = dict(hosts)
    left = list(movable)
    moves: list[Move] = []

    def load(host: str) -> int:
        capacity = hosts[host]
        return capacity.vms if metric == "vmCount" else capacity.used_memory_mib

    def weight(component: Movable) -> int:
        return 1 if metric == "vmCount" else component.request.memory_mib

    while hosts and left:
        target = min(hosts, key=load)
        gap_of = {host: load(host) - load(target) for host in hosts}
        if max(gap_of.values()) <= max_imbalance:
            break
        best: Movable | None = None
        for source in sorted(hosts, key=load, reverse=True):
            gap = gap_of[source]
            candidates = [c for c in left if c.host == source and 0 < weight(c) < gap
                          and unfit_reason(c.request, hosts[target], limits) is None]
            if candidates:
                best = min(candidates, key=lambda c: abs(gap - 2 * weight(c)))
                break
        if best is None:
            break
        moves.append(Move(name=best.name, path=best.path, source=best.host, target=target))
        hosts[best.host] = hosts[best.host].with_request(best.request, -1)
        hosts[target] = hosts[target].with_request(best.request)
        left.remove(best)
    return moves


class LoadBalancer(Component):
    """Evens out the load of a Schedulee's hosts by migrating or restarting its movable children elsewhere."""

    def create(self) -> None:
        context = self.context
        metric = context.typed_attribute("metric", str, "vmCount")
        imbalance = context.typed_attribute("maxImbalance", int, 1)
        interval = context.typed_attribute("balanceInterval", (int, float), 0)
        if metric not in METRICS:
            raise PolicyError(f"{context.ref.name_text}: metric is {metric!r}; give one of {', '.join(METRICS)}")
        assert isinstance(imbalance, int)
        assert isinstance(interval, int | float)
        if imbalance < 0 or interval < 0:
            raise PolicyError(f"{context.ref.name_text}: maxImbalance and balanceInterval must be 0 or more; found "
                              f"{imbalance} and {interval}")
        self.metric, self.max_imbalance, self.interval = str(metric), imbalance, float(interval)
        self._timer: Timer | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._timer = self.context.call_later(self.interval, self._tick)

    def terminate(self, record: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _tick(self) -> None:
        try:
            self.rebalance(False, 1)
        except DeploymentError as error:
            import logging

            logging.getLogger(__name__).warning("%s: %s", self.context.ref.name_text, error)
        self._timer = self.context.call_later(self.interval, self._tick)

    def rebalance(self, dry_run: bool = False, limit: int = 0) -> dict[str, object]:
        """Plan (and unless ``dry_run`` carry out, at most ``limit`` if not 0) the moves; what was seen and done."""
        schedulee = self._schedulee()
        survey = schedulee.invoke("survey")
        assert isinstance(survey, dict)
        hosts = {str(h["host"]): HostCapacity(host=str(h["host"]), **h["capacity"])
                 for h in survey["hosts"] if h["capacity"] is not None}
        limits = Limits(max_vms=int(survey["limits"]["max_vms"]), vcpu_ratio=float(survey["limits"]["vcpu_ratio"]))
        listed = schedulee.invoke("movable")
        assert isinstance(listed, list)
        movable = [Movable(name=m["name"], path=m["path"], host=m["host"],
                           request=PlacementRequest(name=m["path"], memory_mib=m["memory_mib"], vcpus=m["vcpus"]),
                           restartable=m.get("restartable", True) is True,
                           vms=tuple((tuple(path), str(uri)) for path, uri in m.get("vms", ())))
                   for m in listed if m["host"] in hosts]
        moves, left = self._plan(hosts, movable, limits)
        if limit:
            moves = moves[:limit]
        done: list[str] = []
        error = ""
        if not dry_run:
            for move in moves:  # one at a time: each is up on its new host before the next begins
                try:
                    schedulee.invoke("move", move.name, move.target,
                                     [list(move.migration[0]), move.migration[1]] if move.migration else [])
                except (ComponentFailed, DeploymentError) as failure:
                    error = f"moving {move.path} to {move.target} failed: {failure}"
                    break
                done.append(move.path)
        loads = {host: (c.vms if self.metric == "vmCount" else c.used_memory_mib) for host, c in hosts.items()}
        return {"balancer": self.context.ref.name_text, "metric": self.metric, "max_imbalance": self.max_imbalance,
                "loads": loads, "unavailable": {str(h["host"]): h["problem"] for h in survey["hosts"] if h["problem"]},
                "moves": [[m.path, m.source, m.target, m.way] for m in moves], "left": left, "done": done,
                "error": error}

    def _plan(self, hosts: Mapping[str, HostCapacity], movable: list[Movable], limits: Limits
              ) -> tuple[list[Move], dict[str, str]]:
        """The moves, each with its way; a component that can neither migrate nor restart is left out
        (with the reason) and the plan made again without it."""
        hypervisors: dict[str, str] = {}
        left: dict[str, str] = {}
        while True:
            moves = plan_moves(hosts, movable, metric=self.metric, max_imbalance=self.max_imbalance, limits=limits)
            ways = {move.path: self._way(move, next(m for m in movable if m.path == move.path), hypervisors)
                    for move in moves}
            stuck = [path for path, way in ways.items() if isinstance(way, str)]
            if not stuck:
                return [_with_way(move, ways[move.path]) for move in moves], left
            for path in stuck:
                left[path] = str(ways[path])
            movable = [m for m in movable if m.path not in stuck]

    def _way(self, move: Move, component: Movable, hypervisors: dict[str, str]
             ) -> tuple[str, tuple[tuple[str, ...], str] | None] | str:
        """How ``component`` gets to ``move.target``: (way, migration), or why it cannot."""
        if len(component.vms) == 1:
            (path, own_uri), = component.vms
            source = own_uri or self._hypervisor_of(move.source, hypervisors)
            target = own_uri or self._hypervisor_of(move.target, hypervisors)
            unknown = [uri for uri in (source, target) if "://" not in uri]  # why a daemon did not say
            why = unknown[0] if unknown else migration_unsupported_reason(source, target)
            if why is None:
                return MIGRATE, (path, target)
        else:
            why = f"it holds {len(component.vms)} VMs (a live migration moves a child with one)"
        if component.restartable:
            return RESTART, None
        return f"it cannot migrate live ({why}) and is not restartable true"

    def _hypervisor_of(self, host: str, known: dict[str, str]) -> str:
        """The libvirt URI of ``host``'s daemon (its ``--hypervisor``), or why it is not known, as text."""
        if host in known:
            return known[host]
        peers = self.context.shared(Peers, lambda: None)
        if not isinstance(peers, Peers) or host in (self.context.host, "localhost", "127.0.0.1") or \
                endpoint_of_host(host) == peers.own_endpoint:
            from sd_actors.plugins._vm import DEFAULT_HYPERVISOR, HYPERVISOR_ENVIRONMENT, HYPERVISOR_PROPERTY

            try:
                uri = str(self.context.resolve(f"PROPERTY {HYPERVISOR_PROPERTY}"))
            except LinkError:
                import os

                uri = os.environ.get(HYPERVISOR_ENVIRONMENT) or DEFAULT_HYPERVISOR
        else:
            try:
                reply = peers.link(endpoint_of_host(host)).request(ListDomains(), timeout=ASK_TIMEOUT)
            except (TimeoutError, OSError, ComponentFailed) as error:
                reply = RequestFailed(error=f"{type(error).__name__}: {error}")
            uri = reply.hypervisor if isinstance(reply, DomainsReply) else \
                f"unknown (the daemon of {host} did not say which hypervisor it runs: {reply})"
        known[host] = uri
        return uri

    def _schedulee(self) -> ComponentRef:
        schedulee = self.context.attribute("schedulee")
        if not isinstance(schedulee, ComponentRef):
            raise PolicyError(f"{self.context.ref.name_text}: schedulee is {schedulee!r}; give a LAZY link to the "
                              "Schedulee whose children it balances, e.g. schedulee LAZY ATTRIB vms;")
        return schedulee


def _with_way(move: Move, way: tuple[str, tuple[tuple[str, ...], str] | None] | str) -> Move:
    assert not isinstance(way, str)
    return Move(name=move.name, path=move.path, source=move.source, target=move.target, way=way[0],
                migration=way[1])


# -- sd-actors rebalance APP [--dry-run] -----------------------------------------------------------------
def run_rebalance(arguments: argparse.Namespace, out: TextIO) -> int:
    from sd_actors.actors.client import CommandError, connect, request
    from sd_actors.net._peer_protocol import InvokeComponent, InvokeResult
    from sd_actors.net._protocol import GetStatus, StatusReply

    with connect(arguments, out) as client:
        status = request(client, GetStatus(app=arguments.app), timeout=arguments.timeout or 10)
        assert isinstance(status, StatusReply)
        balancers = [component.path for application in status.applications if application.name == arguments.app
                     for component in application.components if component.component_class == LOAD_BALANCER_CLASS]
        if not balancers:
            raise CommandError(f"{arguments.app} has no LoadBalancer on {client.endpoint}: add one to its "
                               "description, e.g. balancer extends LoadBalancer { schedulee LAZY ATTRIB vms; }", 1)
        failed = False
        for path in balancers:
            reply = request(client, InvokeComponent(path=path, method="rebalance", arguments=msgpack.packb(
                [arguments.dry_run])), timeout=arguments.timeout or 600)
            assert isinstance(reply, InvokeResult)
            result = msgpack.unpackb(reply.value)
            _print_result(result, arguments.dry_run, out)
            failed = failed or bool(result["error"])
    return 1 if failed else 0


def _print_result(result: dict[str, object], dry_run: bool, out: TextIO) -> None:
    loads = result["loads"]
    unit = "VMs" if result["metric"] == "vmCount" else "MiB"
    assert isinstance(loads, dict)
    print(f"{result['balancer']}: {', '.join(f'{h} {v}' for h, v in loads.items())} {unit} "
          f"(max imbalance {result['max_imbalance']})", file=out)
    unavailable = result["unavailable"]
    assert isinstance(unavailable, dict)
    for host, problem in unavailable.items():
        print(f"  {host} left out: {problem}", file=out)
    moves = result["moves"]
    assert isinstance(moves, list)
    if not moves and not result.get("left"):
        print("  balanced: nothing to move", file=out)
    done = result["done"]
    assert isinstance(done, list)
    for path, source, target, *way in moves:
        migrate = way == [MIGRATE]
        if migrate:
            verb = "would migrate" if dry_run else ("migrated" if path in done else "not migrated")
        else:
            verb = "would move" if dry_run else ("moved" if path in done else "not moved")
        how = "restarted there" if not migrate else (
            "live migration: the guest keeps running" if dry_run or path in done else "live migration")
        print(f"  {verb} {path} from {source} to {target} ({how})", file=out)
    left = result.get("left") or {}
    assert isinstance(left, dict)
    for path, why in left.items():
        print(f"  left {path} where it is: {why}", file=out)
    if result["error"]:
        print(f"  {result['error']}", file=out)
    if dry_run and moves:
        print("  dry run: nothing was moved", file=out)


@hookimpl
def sd_actors_cli_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                           client_options: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser(
        "rebalance", help="even out the hosts of an application's LoadBalancers",
        description="Ask each LoadBalancer of APP for the moves that bring its hosts within its maxImbalance, "
        "print them and carry them out one at a time (a VM migrates live where both hypervisors can, else a "
        "restartable component is restarted on its new host).",
        epilog="examples:\n  sd-actors rebalance pool --dry-run\n  sd-actors rebalance pool --host h1\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", metavar="APP", help="the application whose LoadBalancers to ask")
    parser.add_argument("--dry-run", action="store_true", help="only print the planned moves")
    client_options(parser)
    parser.set_defaults(run=run_rebalance)


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {LOAD_BALANCER_CLASS: LoadBalancer}
