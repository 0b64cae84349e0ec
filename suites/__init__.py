"""The conformance suites: ``pytest --pyargs pytest_nginmesh.suites`` (installed) or ``pytest suites`` (here)."""
