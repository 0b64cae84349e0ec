"""Measure only after the data plane has the rule: right after apply the old routes still answer; the wait
for every proxy's acknowledgement removes that window. The same holds on each release's twin
(tests/e2e/test_twins.py), whose agents poll Pilot only every 5 s."""

from __future__ import annotations

import json

import requests

from pytest_nginmesh.bookinfo import reviews_sampler
from pytest_nginmesh.checks.routing import check_weights
from pytest_nginmesh.cluster.base import wait_for
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local.catalogue import is_proxy
from pytest_nginmesh.cluster.published_versions import MESH_VERSION_KEY, PROXY_STATUS_CONFIGMAP, PROXY_STATUS_OBSERVED
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.manifests import load_fixture
from pytest_nginmesh.settings import Settings

IMMEDIATE_SAMPLES = 5
TRIALS = 3


def assert_the_wait_closes_the_stale_window(cluster: KubernetesCluster, timeout: float) -> None:
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


def test_measuring_right_after_apply_sees_old_routes_and_the_wait_prevents_it(local_mesh: KubernetesCluster,
                                                                              e2e_settings: Settings) -> None:
    assert_the_wait_closes_the_stale_window(local_mesh, e2e_settings.timeouts.convergence)


def test_pilot_publishes_every_live_proxy_at_the_new_version_in_its_config_map(local_mesh: KubernetesCluster,
                                                                              e2e_settings: Settings) -> None:
    """After a RouteRule apply, the ConfigMap nginmesh-proxy-status, once its observed resourceVersion covers the
    rule, names a new mesh version and shows every running proxy at it: what any API client can wait on."""
    rules = load_fixture("routes/route-rule-all-v1.yaml")
    local_mesh.wait_converged(e2e_settings.timeouts.convergence)
    before = status_config_map(local_mesh)["data"][MESH_VERSION_KEY]
    local_mesh.apply(rules)
    try:
        written = max(int(local_mesh.get(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace", "default"))
                          ["metadata"]["resourceVersion"]) for r in rules)
        proxies = {f"{p['metadata']['namespace']}.{p['metadata']['name']}" for p in local_mesh.list_pods()
                   if any(is_proxy(c) for c in p["spec"]["containers"]) and p["status"].get("phase") == "Running"}
        assert proxies

        def published() -> tuple[dict[str, str] | None, str]:
            configmap = status_config_map(local_mesh)
            observed = int(configmap["metadata"]["annotations"][PROXY_STATUS_OBSERVED])
            data = configmap["data"]
            target = data[MESH_VERSION_KEY]
            behind = sorted(p for p in proxies if json.loads(data.get(p, "{}")).get("version") != target)
            if observed < written or behind:
                return None, f"observed {observed} (the rules: {written}), mesh-version {target}; behind: {behind}"
            return data, ""

        data = wait_for("the ConfigMap to show every proxy at the new version", published,
                        e2e_settings.timeouts.convergence, interval=0.02)
        assert data[MESH_VERSION_KEY] != before
        assert all("rejectedVersion" not in json.loads(data[p]) for p in proxies)
    finally:
        local_mesh.delete(rules)
        local_mesh.wait_converged(e2e_settings.timeouts.convergence)


def status_config_map(cluster: KubernetesCluster) -> Obj:
    configmap = cluster.get("ConfigMap", PROXY_STATUS_CONFIGMAP, "istio-system")
    assert configmap is not None, "Pilot has not published nginmesh-proxy-status"
    return configmap
