"""The embedded cluster's Kubernetes REST API."""
