"""Seeded metrics defects: a sidecar that stops reporting, one that reports a wrong destination_version,
and a mixer that is down each make the metrics suite fail, naming what is missing."""

from __future__ import annotations

import copy

import pytest
from seeding import REPO, assert_fails_with, edited_deployment, with_defect

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.mesh.manifests import CONTROL_PLANE, load_fixture
from pytest_nginmesh.settings import Settings

METRICS_SUITE = str(REPO / "suites" / "test_metrics.py")
COUNTED = "test_requests_are_counted_once_with_exact_labels"


@pytest.mark.parametrize(("defect", "evidence"), [
    ("no-reports", "grew by 0, not 20"),
    ("wrong-version", "v1-wrong"),
])
def test_metrics_suite_catches_a_misreporting_sidecar(healthy: KubernetesCluster, e2e_settings: Settings, defect: str,
                                                     evidence: str) -> None:
    with edited_deployment(healthy, e2e_settings, "productpage-v1", with_defect(defect)):
        healthy.wait_pods_ready("default", e2e_settings.timeouts.pod_ready, minimum=6)
        healthy.wait_converged(e2e_settings.timeouts.convergence)
        assert_fails_with(e2e_settings, evidence, COUNTED, METRICS_SUITE, "-k", COUNTED,
                          "--nginmesh-timeout", "convergence=5")


def test_metrics_suite_catches_a_mixer_that_is_down(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    mixer = next(o for o in load_fixture(CONTROL_PLANE)
                 if o["kind"] == "Deployment" and o["metadata"]["name"] == "istio-mixer")
    stopped = copy.deepcopy(mixer)
    stopped["spec"]["replicas"] = 0
    healthy.apply([stopped])
    try:
        healthy.wait_pods_gone("istio-system", e2e_settings.timeouts.pod_ready, {"istio": "mixer"})
        assert_fails_with(e2e_settings, "is the mixer up?", COUNTED, METRICS_SUITE, "-k", COUNTED)
    finally:
        healthy.apply([mixer])
        healthy.wait_pods_ready("istio-system", e2e_settings.timeouts.pod_ready, {"istio": "mixer"})
