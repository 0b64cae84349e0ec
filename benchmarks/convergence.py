"""Benchmark convergence through the Kubernetes adapter on the embedded cluster: the time from `up` to the first
200 of /productpage, and the time from a RouteRule apply until ``wait_converged`` returns (target p50 <= 0.5 s).

Everything goes through the adapter every cluster uses (KubernetesCluster on the kubeconfig the cluster hands
out); ``method`` says how it judged convergence: ``published`` (the control plane's proxy status ConfigMap) or
``config-digest`` (the fallback for control planes that publish nothing). Prints one JSON object. Run as root:

    .venv/bin/python benchmarks/convergence.py [--applies 40] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import requests

from pytest_nginmesh.bookinfo import reviews_version
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.node import local_cluster
from pytest_nginmesh.cluster.published_versions import PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.settings import Settings, settings_from_env

# Its own name and ranges (those of route_suite_stability.py, which never runs beside it), unless the
# PYTEST_NGINMESH_* environment names others.
SETTINGS = Settings(cluster_name="nmbenchconv", pod_cidr="10.226.0.0/16", service_cidr="10.227.0.0/16",
                    link_cidr="10.228.0.0/30").with_overrides(settings_from_env())
VERSIONS = ("v1", "v2", "v3")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_s": round(statistics.median(ordered), 3),
            "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
            "max_s": round(ordered[-1], 3), "n": len(ordered)}


def reviews_rule(version: str) -> Obj:
    return {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
            "metadata": {"name": "bench-reviews", "namespace": "default"},
            "spec": {"destination": {"name": "reviews"}, "precedence": 5,
                     "route": [{"labels": {"version": version}}]}}


def convergence_after_applies(cluster: KubernetesCluster, count: int, timeout: float) -> dict[str, object]:
    """Each apply moves all reviews traffic to the next version; after each wait, /productpage shows it."""
    samples: list[float] = []
    url = cluster.ingress_url() + "/productpage"
    wrong = 0
    try:
        for i in range(count):
            version = VERSIONS[i % len(VERSIONS)]
            started = time.perf_counter()
            cluster.apply([reviews_rule(version)])
            cluster.wait_converged(timeout)
            samples.append(time.perf_counter() - started)
            wrong += reviews_version(requests.get(url, timeout=10).text) != version
    finally:
        cluster.delete([reviews_rule("v1")])
        cluster.wait_converged(timeout)
    return {**percentiles(samples), "stale_answers_after_wait": wrong}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--applies", type=int, default=40)
    parser.add_argument("--reuse", action="store_true", help="measure a running cluster of the benchmark's name")
    args = parser.parse_args()
    result: dict[str, object] = {}
    started = time.perf_counter()
    created = lifecycle.up(SETTINGS) if not args.reuse else False
    cluster = local_cluster(SETTINGS)
    try:
        if created:
            install_mesh(cluster, SETTINGS.timeouts)
            result["up_to_first_productpage_s"] = round(time.perf_counter() - started, 2)
        published = cluster.get("ConfigMap", PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE) is not None
        result["method"] = "published" if published else "config-digest"
        result["routerule_apply_to_converged"] = convergence_after_applies(cluster, args.applies,
                                                                          SETTINGS.timeouts.convergence)
    finally:
        cluster.close()
        if created:
            lifecycle.down(SETTINGS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
