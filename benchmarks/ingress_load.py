"""Load on the ingress: C concurrent clients x N requests to /productpage; print JSON with latency
percentiles (p50/p95/p99/max) and errors.

Runs on the local cluster the PYTEST_NGINMESH_* environment names (reused if running, else started and
removed), e.g.

    PYTEST_NGINMESH_CLUSTER_NAME=faults PYTEST_NGINMESH_POD_CIDR=10.14.0.0/16 \\
    PYTEST_NGINMESH_SERVICE_CIDR=10.114.0.0/16 PYTEST_NGINMESH_LINK_CIDR=10.124.0.0/30 \\
        .venv/bin/python benchmarks/ingress_load.py [--clients 20] [--requests 100]

Each client is a thread with its own keep-alive-less connection per request (as independent users are);
the latency is what the client saw, connect included.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import threading
import time
from collections import Counter

import requests
from _cluster import mesh_cluster


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
        start.wait()
        began = time.monotonic()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
    ordered = sorted(latencies)
    print(json.dumps({
        "url_path": "/productpage", "clients": args.clients, "requests_per_client": args.requests,
        "requests": len(ordered), "errors": sum(errors.values()), "error_kinds": dict(errors),
        "seconds": round(elapsed, 2), "requests_per_second": round(len(ordered) / elapsed, 1),
        "latency_ms": {name: round(1000 * value, 1) for name, value in (
            ("p50", percentile(ordered, 0.50)), ("p95", percentile(ordered, 0.95)),
            ("p99", percentile(ordered, 0.99)), ("max", ordered[-1]), ("mean", statistics.fmean(ordered)))},
    }, indent=2))


if __name__ == "__main__":
    main()
