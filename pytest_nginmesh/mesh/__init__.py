"""The mesh: what Istio and Nginmesh install on a cluster, and how they mutate workloads."""
