"""Benchmark the local cluster: time to up, to the first /productpage, to down; the sidecar's added latency.

Prints one JSON object. Run as root after scripts/setup-host:

    .venv/bin/python benchmarks/local_cluster.py [--requests 200]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import requests

from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.node import local_cluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.bookinfo_instance import BookinfoInstance, wait_for_productpage
from pytest_nginmesh.mesh.injection import INJECT_ANNOTATION
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.mesh.manifests import BOOKINFO, BOOKINFO_DEPLOYMENTS, load_fixture
from pytest_nginmesh.settings import Settings


def opted_out(manifests: list[Obj]) -> list[Obj]:
    """The same Bookinfo, every Deployment annotated so the injector leaves it alone."""
    result = copy.deepcopy(manifests)
    for obj in result:
        if obj["kind"] == "Deployment":
            obj["metadata"].setdefault("annotations", {})[INJECT_ANNOTATION] = "false"
    return result


def latencies(url: str, count: int) -> dict[str, float]:
    samples = []
    with requests.Session() as session:
        for _ in range(count):
            started = time.perf_counter()
            response = session.get(url, timeout=10)
            samples.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
            "mean_ms": round(statistics.fmean(samples), 2)}


def redeploy(cluster: Cluster, manifests: list[Obj], settings: Settings) -> None:
    deployments = [o for o in manifests if o["kind"] == "Deployment"]
    cluster.delete(deployments)
    cluster.wait_pods_gone("default", settings.timeouts.pod_ready)
    cluster.apply(manifests)
    cluster.wait_pods_ready("default", settings.timeouts.pod_ready, minimum=len(BOOKINFO_DEPLOYMENTS))
    cluster.wait_converged(settings.timeouts.pod_ready)
    wait_for_productpage(BookinfoInstance.installed(cluster), settings.timeouts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--name", default="nmbench")
    args = parser.parse_args()
    settings = Settings(cluster_name=args.name, pod_cidr="10.220.0.0/16", service_cidr="10.221.0.0/16",
                        link_cidr="10.222.0.0/30")
    result: dict[str, object] = {"requests": args.requests}
    started = time.perf_counter()
    lifecycle.up(settings)
    try:
        cluster = local_cluster(settings)
        result["up_seconds"] = round(time.perf_counter() - started, 2)
        install_mesh(cluster, settings.timeouts)
        result["first_productpage_seconds"] = round(time.perf_counter() - started, 2)
        url = cluster.ingress_url() + "/productpage"
        result["with_sidecars"] = latencies(url, args.requests)
        redeploy(cluster, opted_out(load_fixture(BOOKINFO)), settings)
        result["without_sidecars"] = latencies(url, args.requests)
        with_p50 = result["with_sidecars"]["p50_ms"]  # type: ignore[index]
        without_p50 = result["without_sidecars"]["p50_ms"]  # type: ignore[index]
        result["proxy_added_p50_ms"] = round(with_p50 - without_p50, 2)
    finally:
        stopping = time.perf_counter()
        lifecycle.down(settings)
        result["down_seconds"] = round(time.perf_counter() - stopping, 2)
    result["leftovers"] = lifecycle.leftovers(settings)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
