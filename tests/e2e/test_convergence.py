"""Measure only after the data plane has the rule: right after apply the old routes still answer; the wait
for every proxy's acknowledgement removes that window. The same holds on each release's twin
(tests/e2e/test_twins.py), whose agents poll Pilot only every 5 s."""

from __future__ import annotations

import requests

from pytest_nginmesh.bookinfo import reviews_sampler
from pytest_nginmesh.checks.routing import check_weights
from pytest_nginmesh.cluster.local.adapter import LocalCluster
from pytest_nginmesh.mesh.manifests import load_fixture
from pytest_nginmesh.settings import Settings

IMMEDIATE_SAMPLES = 5
TRIALS = 3


def assert_the_wait_closes_the_stale_window(cluster: LocalCluster, timeout: float) -> None:
    """Requests right after an apply see the old routes; after the wait, only the new ones."""
    rules = load_fixture("routes/route-rule-all-v1.yaml")
    cluster.wait_converged(timeout)
    stale_seen = 0
    with requests.Session() as session:
        sample = reviews_sampler(session, cluster.ingress_url() + "/productpage")
        for _ in range(TRIALS):
            cluster.apply(rules)  # the bare API call: no wait
            immediate = [sample() for _ in range(IMMEDIATE_SAMPLES)]
            stale_seen += sum(1 for version in immediate if version != "v1")
            cluster.wait_converged(timeout)
            verdict = check_weights(sample, {"v1": 100})
            cluster.delete(rules)
            cluster.wait_converged(timeout)
            assert verdict.passed, f"after the wait: {verdict}"
            if stale_seen:
                break
    assert stale_seen, f"{TRIALS} trials of {IMMEDIATE_SAMPLES} requests right after apply all saw the new rule"


def test_measuring_right_after_apply_sees_old_routes_and_the_wait_prevents_it(local_mesh: LocalCluster,
                                                                              e2e_settings: Settings) -> None:
    assert_the_wait_closes_the_stale_window(local_mesh, e2e_settings.timeouts.convergence)
