"""Benchmark convergence after a RouteRule apply: the time until the ConfigMap nginmesh-proxy-status shows every
running proxy at the new mesh version (what any Kubernetes API client can wait on), and until
``Cluster.wait_converged`` returns.

Prints one JSON object. Run as root after scripts/setup-host, with the PYTEST_NGINMESH_* environment naming the
cluster (started with the mesh when it is not running, and then torn down):

    .venv/bin/python benchmarks/convergence.py [--trials 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from _cluster import mesh_cluster

from pytest_nginmesh.cluster.local.adapter import LocalCluster
from pytest_nginmesh.cluster.local.catalogue import is_proxy
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.manifests import CONTROL_PLANE_NAMESPACE, load_fixture
from pytest_nginmesh.mesh.proxy_status import MESH_VERSION_KEY, OBSERVED_ANNOTATION, PROXY_STATUS_CONFIG_MAP

RULES = "routes/route-rule-all-v1.yaml"
TIMEOUT = 30.0


def running_proxies(cluster: LocalCluster) -> set[str]:
    return {f"{p['metadata']['namespace']}.{p['metadata']['name']}" for p in cluster.list_pods()
            if any(is_proxy(c) for c in p["spec"]["containers"]) and (p.get("status") or {}).get("phase") == "Running"}


def published_after(cluster: LocalCluster, written: int, proxies: set[str], started: float) -> float:
    """Seconds from ``started`` until the ConfigMap covers resourceVersion ``written`` with every proxy at its
    mesh-version."""
    while time.perf_counter() - started < TIMEOUT:
        configmap = cluster.get("ConfigMap", PROXY_STATUS_CONFIG_MAP, CONTROL_PLANE_NAMESPACE) or {}
        observed = int(((configmap.get("metadata") or {}).get("annotations") or {}).get(OBSERVED_ANNOTATION, 0))
        data = configmap.get("data") or {}
        target = data.get(MESH_VERSION_KEY)
        if observed >= written and all(json.loads(data.get(p, "{}")).get("version") == target for p in proxies):
            return time.perf_counter() - started
        time.sleep(0.005)
    raise TimeoutError(f"the ConfigMap did not show every proxy at the new version within {TIMEOUT:g}s")


def highest_version(cluster: LocalCluster, objects: list[Obj]) -> int:
    """The resourceVersion the write of ``objects`` reached."""
    stored = [cluster.get(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace", "default")) for o in objects]
    return max(int(o["metadata"]["resourceVersion"]) for o in stored if o is not None)


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_s": round(statistics.median(ordered), 4),
            "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
            "max_s": round(ordered[-1], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    rules = load_fixture(RULES)
    configmap_times: list[float] = []
    wait_times: list[float] = []
    with mesh_cluster() as cluster:
        cluster.wait_converged(TIMEOUT)
        proxies = running_proxies(cluster)
        for _ in range(args.trials):
            started = time.perf_counter()
            cluster.apply(rules)
            configmap_times.append(published_after(cluster, highest_version(cluster, rules), proxies, started))
            cluster.delete(rules)
            cluster.wait_converged(TIMEOUT)
            started = time.perf_counter()
            cluster.apply(rules)
            cluster.wait_converged(TIMEOUT)
            wait_times.append(time.perf_counter() - started)
            cluster.delete(rules)
            cluster.wait_converged(TIMEOUT)
    print(json.dumps({"trials": args.trials, "proxies": len(proxies),
                      "apply_to_configmap_converged": summary(configmap_times),
                      "apply_to_wait_converged": summary(wait_times)}, indent=2))


if __name__ == "__main__":
    main()
