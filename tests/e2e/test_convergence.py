"""Measure only after the data plane has the rule: right after apply the old routes still answer; the wait
for every proxy's acknowledgement removes that window."""

from __future__ import annotations

import requests

from pytest_nginmesh.bookinfo import reviews_sampler
from pytest_nginmesh.checks.routing import check_weights
from pytest_nginmesh.cluster.local.adapter import LocalCluster
from pytest_nginmesh.mesh.manifests import load_fixture
from pytest_nginmesh.settings import Settings

IMMEDIATE_SAMPLES = 5
TRIALS = 3


def test_measuring_right_after_apply_sees_old_routes_and_the_wait_prevents_it(local_mesh: LocalCluster,
                                                                              e2e_settings: Settings) -> None:
    rules = load_fixture("routes/route-rule-all-v1.yaml")
    timeout = e2e_settings.timeouts.convergence
    local_mesh.wait_converged(timeout)
    stale_seen = 0
    with requests.Session() as session:
        sample = reviews_sampler(session, local_mesh.ingress_url() + "/productpage")
        for _ in range(TRIALS):
            local_mesh.apply(rules)  # the bare API call: no wait
            immediate = [sample() for _ in range(IMMEDIATE_SAMPLES)]
            stale_seen += sum(1 for version in immediate if version != "v1")
            local_mesh.wait_converged(timeout)
            verdict = check_weights(sample, {"v1": 100})
            local_mesh.delete(rules)
            local_mesh.wait_converged(timeout)
            assert verdict.passed, f"after the wait: {verdict}"
            if stale_seen:
                break
    assert stale_seen, f"{TRIALS} trials of {IMMEDIATE_SAMPLES} requests right after apply all saw the new rule"
