"""Load on the ingress: C concurrent clients x N requests to /productpage; print JSON with latency
percentiles (p50/p95/p99/max), errors, and the CPU each page costs, per part of the cluster.

Runs on the local cluster the PYTEST_NGINMESH_* environment names (reused if running, else started and
removed), e.g.

    PYTEST_NGINMESH_CLUSTER_NAME=faults PYTEST_NGINMESH_POD_CIDR=10.14.0.0/16 \\
    PYTEST_NGINMESH_SERVICE_CIDR=10.114.0.0/16 PYTEST_NGINMESH_LINK_CIDR=10.124.0.0/30 \\
        .venv/bin/python benchmarks/ingress_load.py [--clients 20] [--requests 100]

Each client is a thread with its own keep-alive-less connection per request (as independent users are);
the latency is what the client saw, connect included. The CPU per page is read from the cluster's cgroups
(each container's, the daemon's: API server, controllers, kubelet) and this process's own (the clients),
before and after the load: where a 2-core machine's time goes when the suites sample routes.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import threading
import time
from collections import Counter, defaultdict

import requests
from _cluster import mesh_cluster

from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.cluster.local.cgroup import Cgroup


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def client(url: str, count: int, start: threading.Barrier, latencies: list[float], errors: Counter[str]) -> None:
    start.wait()
    for _ in range(count):
        began = time.monotonic()
        try:
            response = requests.get(url, timeout=30, headers={"Connection": "close"})
            outcome = "" if response.status_code == 200 else f"HTTP {response.status_code}"
        except requests.RequestException as e:
            outcome = type(e).__name__
        latencies.append(time.monotonic() - began)
        if outcome:
            errors[outcome] += 1


def cpu_by_part(cluster: Cluster, name: str) -> dict[str, float]:
    """CPU seconds used so far by the cluster's daemon and by each container, as ``<app>/<container>``."""
    root = Cgroup.of_cluster(name)
    used: dict[str, float] = defaultdict(float, {"daemon": root.child("daemon").cpu_seconds()})
    for pod in cluster.list_pods():
        meta = pod["metadata"]
        app = (meta.get("labels") or {}).get("app") or meta["name"]
        pod_cgroup = root.child("pods", meta["uid"])
        if pod_cgroup.exists():
            for container in pod_cgroup.path.iterdir():
                if container.is_dir():
                    used[f"{app}/{container.name}"] += Cgroup(container).cpu_seconds()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=100, help="per client")
    args = parser.parse_args()
    with mesh_cluster() as cluster:
        url = cluster.ingress_url() + "/productpage"
        requests.get(url, timeout=30)  # warm: the first page of a fresh cluster is not what is measured
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        start = threading.Barrier(args.clients + 1)
        threads = [threading.Thread(target=client, args=(url, args.requests, start, latencies, errors))
                   for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        cpu_before, clients_before = cpu_by_part(cluster, cluster.name), time.process_time()
        start.wait()
        began = time.monotonic()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        after = cpu_by_part(cluster, cluster.name)
        cpu = {part: seconds - cpu_before.get(part, 0.0) for part, seconds in after.items()}
        cpu["clients (this process)"] = time.process_time() - clients_before
    ordered = sorted(latencies)
    per_page = {part: round(1000 * seconds / len(ordered), 3)
                for part, seconds in sorted(cpu.items(), key=lambda item: -item[1]) if seconds > 0}
    print(json.dumps({
        "url_path": "/productpage", "clients": args.clients, "requests_per_client": args.requests,
        "requests": len(ordered), "errors": sum(errors.values()), "error_kinds": dict(errors),
        "seconds": round(elapsed, 2), "requests_per_second": round(len(ordered) / elapsed, 1),
        "latency_ms": {name: round(1000 * value, 1) for name, value in (
            ("p50", percentile(ordered, 0.50)), ("p95", percentile(ordered, 0.95)),
            ("p99", percentile(ordered, 0.99)), ("max", ordered[-1]), ("mean", statistics.fmean(ordered)))},
        "cpu_ms_per_request": {"total": round(sum(per_page.values()), 3), **per_page},
    }, indent=2))


if __name__ == "__main__":
    main()
