"""Seeded defects: break the running local cluster, see the sidecar and iptables suites fail with the right
finding, repair it, see them pass again."""

from __future__ import annotations

from seeding import (
    PREROUTING_RULE,
    UID_BYPASS_RULE,
    assert_fails_with,
    assert_passes,
    edited_deployment,
    nat,
)

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.settings import Settings


def test_prerouting_capture_removed_in_one_pod(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    app = "ratings"
    nat(healthy, app, "-D", *PREROUTING_RULE)
    try:
        assert_fails_with(e2e_settings, "[iptables.inbound-not-captured]", "test_capture_rules_of_every_injected_pod")
    finally:
        nat(healthy, app, "-I", PREROUTING_RULE[0], "1", *PREROUTING_RULE[1:])
    assert_passes(e2e_settings)


def test_uid_bypass_removed(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    nat(healthy, "details", "-D", *UID_BYPASS_RULE)
    try:
        assert_fails_with(e2e_settings, "[iptables.proxy-traffic-captured]", "test_capture_rules_of_every_injected_pod")
    finally:
        nat(healthy, "details", "-I", UID_BYPASS_RULE[0], "2", *UID_BYPASS_RULE[1:])
    assert_passes(e2e_settings)


def test_capture_redirected_to_a_wrong_port(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    rule = ["-p", "tcp", "-m", "comment", "--comment", "istio/redirect-to-envoy-port", "-j", "REDIRECT",
            "--to-ports"]
    nat(healthy, "ratings", "-R", "ISTIO_REDIRECT", "1", *rule, "15002")
    try:
        assert_fails_with(e2e_settings, "[iptables.inbound-wrong-port]", "test_capture_rules_of_every_injected_pod")
    finally:
        nat(healthy, "ratings", "-R", "ISTIO_REDIRECT", "1", *rule, "15001")
    assert_passes(e2e_settings)


def test_proxy_running_as_root(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    def as_root(proxy: Obj) -> None:
        proxy["securityContext"].pop("runAsUser")

    with edited_deployment(healthy, e2e_settings, "details-v1", as_root):
        # As root, the agent's own calls to Pilot are captured too: the proxy never gets its config.
        assert_fails_with(e2e_settings, "[sidecar.proxy-uid]", "test_every_workload_pod_carries_a_conformant_sidecar")
    assert_passes(e2e_settings)


def test_pod_without_sidecar(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    rogue = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rogue", "namespace": "default",
                                                             "labels": {"app": "rogue", "version": "v1"}},
             "spec": {"containers": [{"name": "details", "image": "istio/examples-bookinfo-details-v1:0.2.3",
                                      "ports": [{"containerPort": 9080}]}]}}
    healthy.apply([rogue])
    try:
        healthy.wait_pods_ready("default", e2e_settings.timeouts.pod_ready, {"app": "rogue"})
        assert_fails_with(e2e_settings, "[sidecar.proxy-missing]",
                          "test_every_workload_pod_carries_a_conformant_sidecar")
    finally:
        healthy.delete([rogue])
        healthy.wait_pods_gone("default", e2e_settings.timeouts.pod_ready, {"app": "rogue"})
    assert_passes(e2e_settings)


def test_proxy_not_ready(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    def unreachable_pilot(proxy: Obj) -> None:
        args = proxy["args"]
        args[args.index("--discoveryAddress") + 1] = "istio-pilot.istio-system:1"

    with edited_deployment(healthy, e2e_settings, "ratings-v1", unreachable_pilot):
        assert_fails_with(e2e_settings, "[sidecar.proxy-not-ready]",
                          "test_every_workload_pod_carries_a_conformant_sidecar")
    assert_passes(e2e_settings)
