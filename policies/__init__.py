"""Built-in policy plugins: Scheduler, LoadBalancer, HARestarter, VirtualCluster."""
