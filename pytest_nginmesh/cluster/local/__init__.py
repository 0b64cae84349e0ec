"""The embedded local cluster: pods as network namespaces, real iptables, the host's NGINX as sidecar."""
