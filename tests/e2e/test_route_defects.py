"""Seeded route defects: a productpage sidecar that misrenders rules makes the route suite fail, naming it."""

from __future__ import annotations

import pytest
from seeding import REPO, assert_fails_with, edited_deployment, with_defect

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.settings import Settings

ROUTE_SUITE = str(REPO / "suites" / "test_routing.py")


@pytest.mark.parametrize(("defect", "failing_test", "evidence"), [
    ("skew-weights", "test_reviews_50_v1_50_v3", "skewed"),
    ("ignore-headers", "test_cookie_user_jason_goes_to_v2_and_nobody_else", "where weight is 0"),
    ("invert-precedence", "test_the_rule_with_the_higher_precedence_wins", "where weight is 0"),
    ("drop-timeout", "test_request_timeout", "a 1s timeout on a 3s request should answer 504"),
])
def test_route_suite_catches_a_misrendering_sidecar(healthy: KubernetesCluster, e2e_settings: Settings, defect: str,
                                                   failing_test: str, evidence: str) -> None:
    with edited_deployment(healthy, e2e_settings, "productpage-v1", with_defect(defect)):
        healthy.wait_pods_ready("default", e2e_settings.timeouts.pod_ready, minimum=6)
        healthy.wait_converged(e2e_settings.timeouts.convergence)
        assert_fails_with(e2e_settings, evidence, failing_test, ROUTE_SUITE, "-k", failing_test)
