"""kill -9 of a sidecar's NGINX master, N times: how long until the pod is ready and serving again, whether
any worker of the killed master still holds the proxy port 15001, and how many requests failed meanwhile.
Prints JSON.

Runs on the local cluster the PYTEST_NGINMESH_* environment names (reused if running, else started and
removed), e.g.

    PYTEST_NGINMESH_CLUSTER_NAME=faults PYTEST_NGINMESH_POD_CIDR=10.14.0.0/16 \\
    PYTEST_NGINMESH_SERVICE_CIDR=10.114.0.0/16 PYTEST_NGINMESH_LINK_CIDR=10.124.0.0/30 \\
        .venv/bin/python benchmarks/fault_healing.py [--trials 5] [--app productpage]

A client calls /productpage through the ingress every 50 ms during each trial. A trial that has not
healed after --give-up seconds is recorded as such and its pod replaced, so the next trial starts healthy.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import requests
from _cluster import mesh_cluster

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from proxies import Proxy, find_proxy, kill_master, orphans

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.errors import NginmeshError
from pytest_nginmesh.mesh.injection import PROXY_CONTAINER

PAUSE = 0.05


class Client(threading.Thread):
    """Calls a URL until stopped; keeps each request's start time and whether it got a 200."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.results: list[tuple[float, bool]] = []

    def run(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                ok = requests.get(self.url, timeout=10, headers={"Connection": "close"}).status_code == 200
            except requests.RequestException:
                ok = False
            self.results.append((began, ok))
            time.sleep(PAUSE)


def the_pod(cluster: KubernetesCluster, app: str) -> str:
    pods = [p for p in cluster.pods("default", {"app": app}) if not p["metadata"].get("deletionTimestamp")]
    return str(pods[0]["metadata"]["name"])


def proxy_ready(cluster: KubernetesCluster, pod: str) -> bool:
    statuses = ((cluster.get("Pod", pod, "default") or {}).get("status") or {}).get("containerStatuses") or []
    return any(s["name"] == PROXY_CONTAINER and s.get("ready") for s in statuses)


def serving(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def trial(cluster: KubernetesCluster, app: str, url: str, give_up: float) -> dict[str, object]:
    cluster.wait_pods_ready("default", 120, {"app": app})
    cluster.wait_converged(120)
    pod = the_pod(cluster, app)
    deadline = time.monotonic() + 30
    proxy: Proxy | None = None
    while proxy is None and time.monotonic() < deadline:
        proxy = find_proxy(cluster.name, "default", pod)
        time.sleep(0.1)
    if proxy is None:
        raise SystemExit(f"no running proxy found in pod {pod}")
    client = Client(url)
    client.start()
    time.sleep(1)  # some requests before the fault
    killed = kill_master(proxy)
    seen_not_ready: float | None = None
    healed: float | None = None
    current: Proxy | None = None
    while time.monotonic() - killed < give_up:
        if seen_not_ready is None and not proxy_ready(cluster, pod):
            seen_not_ready = time.monotonic() - killed
        current = find_proxy(cluster.name, "default", pod)
        if (current is not None and current.agent != proxy.agent and proxy_ready(cluster, pod)
                and not orphans(current.netns, current) and serving(url)):
            healed = time.monotonic() - killed
            break
        time.sleep(0.05)
    left = orphans(proxy.netns, current)
    time.sleep(1)  # some requests after healing
    client.stopping.set()
    client.join(15)
    window_end = killed + (healed if healed is not None else give_up)
    during = [ok for began, ok in client.results if killed <= began <= window_end]
    result: dict[str, object] = {
        "pod": pod, "healed": healed is not None,
        "seconds_to_ready_and_serving": None if healed is None else round(healed, 2),
        "seconds_until_seen_not_ready": None if seen_not_ready is None else round(seen_not_ready, 2),
        "orphans_holding_15001": left,
        "requests_during_window": len(during), "failed_during_window": during.count(False),
        "failed_outside_window": sum(1 for began, ok in client.results if not ok and not killed <= began <= window_end),
    }
    if healed is None:
        cluster.delete([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "default"}}])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--app", default="productpage", help="the Bookinfo app whose sidecar is killed")
    parser.add_argument("--give-up", type=float, default=60.0, help="seconds after which a trial counts as unhealed")
    args = parser.parse_args()
    trials = []
    with mesh_cluster() as cluster:
        url = cluster.ingress_url() + "/productpage"
        for index in range(args.trials):
            try:
                trials.append({"trial": index + 1, **trial(cluster, args.app, url, args.give_up)})
            except NginmeshError as e:
                trials.append({"trial": index + 1, "error": str(e)})
            print(json.dumps(trials[-1]), file=sys.stderr, flush=True)
    times = [t["seconds_to_ready_and_serving"] for t in trials if isinstance(t.get("seconds_to_ready_and_serving"),
                                                                             float)]
    print(json.dumps({
        "app": args.app, "trials": len(trials), "healed": len(times),
        "max_seconds_to_heal": max(times) if times else None,
        "mean_seconds_to_heal": round(sum(times) / len(times), 2) if times else None,
        "trials_with_orphans": sum(1 for t in trials if t.get("orphans_holding_15001")),
        "failed_requests_during_windows": sum(int(str(t.get("failed_during_window", 0))) for t in trials),
        "details": trials,
    }, indent=2))


if __name__ == "__main__":
    main()
