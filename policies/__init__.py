"""Built-in policy plugins: Scheduler, LoadBalancer, HARestarter, VirtualCluster."""

from sd_actors.policies._cluster import ClusterError, VirtualCluster

__all__ = ["ClusterError", "VirtualCluster"]
