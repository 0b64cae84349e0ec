"""pytest plugin and conformance suite for Nginmesh, the NGINX sidecar data plane for Istio."""

__version__ = "0.1.0"
