"""Benchmark the embedded cluster's Kubernetes API as the official client sees it.

Starts a local cluster with the mesh (or uses a running one with --reuse), then measures through the
kubeconfig `nginmesh local kubeconfig` prints: list pods, get one pod, an exec round trip, the latency of a
watch event after a write, and the daemon's RSS. Prints one JSON object. Run as root:

    .venv/bin/python benchmarks/kubernetes_api.py [--requests 200] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.stream import stream

from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.apiserver import KUBECONFIG
from pytest_nginmesh.cluster.local.node import local_cluster
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.settings import Settings

SETTINGS = Settings(cluster_name="nmbenchapi", pod_cidr="10.224.0.0/16", service_cidr="10.225.0.0/16",
                    link_cidr="10.223.0.0/30")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
            "n": len(ordered)}


def timed(action: Callable[[], object], count: int) -> dict[str, float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


def watch_latency(core: client.CoreV1Api, count: int) -> dict[str, float]:
    """Time from a ConfigMap write returning to its MODIFIED event reaching a watcher."""
    core.create_namespaced_config_map("default", {"metadata": {"name": "bench-watch"}, "data": {"n": "0"}})
    written: dict[str, float] = {}
    samples: list[float] = []
    done = threading.Event()

    def observe() -> None:
        for event in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                          field_selector="metadata.name=bench-watch", timeout_seconds=120):
            value = (event["object"].data or {}).get("n")
            if event["type"] == "MODIFIED" and value in written:
                samples.append(time.perf_counter() - written.pop(value))
                if len(samples) == count:
                    done.set()
                    return

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    time.sleep(0.5)
    for i in range(1, count + 1):
        written[str(i)] = time.perf_counter()
        core.patch_namespaced_config_map("bench-watch", "default", {"data": {"n": str(i)}})
        time.sleep(0.02)
    done.wait(60)
    core.delete_namespaced_config_map("bench-watch", "default")
    return percentiles(samples)


def daemon_rss_mib(settings: Settings) -> float:
    pid = lifecycle.daemon_pid(settings)
    status = Path(f"/proc/{pid}/status").read_text() if pid else ""
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return round(kib / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--reuse", action="store_true", help="measure a running cluster of the benchmark's name")
    args = parser.parse_args()
    started = lifecycle.up(SETTINGS) if not args.reuse else False
    try:
        if started:
            install_mesh(local_cluster(SETTINGS), SETTINGS.timeouts)
        api_client = config.new_client_from_config(str(SETTINGS.state_dir / KUBECONFIG))
        core = client.CoreV1Api(api_client)
        pod = core.list_namespaced_pod("default", label_selector="app=details").items[0].metadata.name
        result = {
            "list_pods": timed(lambda: core.list_pod_for_all_namespaces(), args.requests),
            "get_pod": timed(lambda: core.read_namespaced_pod(pod, "default"), args.requests),
            "exec_round_trip": timed(lambda: stream(core.connect_get_namespaced_pod_exec, pod, "default",
                                                    container="details", command=["true"], stderr=True,
                                                    stdin=False, stdout=True, tty=False),
                                     max(10, args.requests // 10)),
            "watch_event_latency": watch_latency(core, max(20, args.requests // 5)),
            "pods": len(core.list_pod_for_all_namespaces().items),
            "daemon_rss_mib": daemon_rss_mib(SETTINGS),
        }
    finally:
        if started:
            lifecycle.down(SETTINGS)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
