"""Built-in policy plugins: Scheduler, LoadBalancer, HARestarter, VirtualCluster."""

from sd_actors.policies._balancer import LoadBalancer, Move, plan_moves
from sd_actors.policies._cluster import ClusterError, VirtualCluster
from sd_actors.policies._high_availability import HA_GENERATION, HIGH_AVAILABILITY_KEY, HighAvailability
from sd_actors.policies._lease import LeaseTerms, lease_expiry
from sd_actors.policies._ledger import ClaimOutcome, RestartLedger, claim_majority
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
from sd_actors.policies._restarter import HARestarter, HARestarterStatistics
from sd_actors.policies._scheduler import Schedulee, Scheduler

__all__ = [
    "BUILTIN_POLICIES",
    "HA_GENERATION",
    "HIGH_AVAILABILITY_KEY",
    "ClaimOutcome",
    "ClusterError",
    "HARestarter",
    "HARestarterStatistics",
    "HighAvailability",
    "HostCapacity",
    "HostLedger",
    "LeaseTerms",
    "Limits",
    "LoadBalancer",
    "Move",
    "NoHostFits",
    "PlacementRequest",
    "PolicyError",
    "RestartLedger",
    "Schedulee",
    "Scheduler",
    "VirtualCluster",
    "claim_majority",
    "host_ledger",
    "lease_expiry",
    "plan_moves",
    "unfit_reason",
    "weigh",
]
