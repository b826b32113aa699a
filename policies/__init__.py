"""Built-in policy plugins: Scheduler, LoadBalancer, HARestarter, VirtualCluster."""

from sd_actors.policies._balancer import LoadBalancer, Move, plan_moves
from sd_actors.policies._cluster import ClusterError, VirtualCluster
from sd_actors.policies._placement import (
    BUILTIN_POLICIES,
    HostCapacity,
    HostLedger,
    Limits,
    NoHostFits,
    PlacementRequest,
    PolicyError,
    host_ledger,
    unfit_reason,
    weigh,
)
from sd_actors.policies._scheduler import Schedulee, Scheduler

__all__ = [
    "BUILTIN_POLICIES",
    "ClusterError",
    "HostCapacity",
    "HostLedger",
    "Limits",
    "LoadBalancer",
    "Move",
    "NoHostFits",
    "PlacementRequest",
    "PolicyError",
    "Schedulee",
    "Scheduler",
    "VirtualCluster",
    "host_ledger",
    "plan_moves",
    "unfit_reason",
    "weigh",
]
