"""Benchmark the Kubernetes adapter's bounds: seconds until a clear error from an API server that hangs
(accepts connections, never answers; over TLS and plain HTTP) or refuses them, and the adapter's request
costs against the FAKE API server of tests/kubefake (a loopback server: these are client-side costs).

Prints one JSON object:

    .venv/bin/python benchmarks/kubernetes_adapter.py [--rounds 50]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from kubefake import RecordedApiServer, bookinfo_objects

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.kubeapi import KubeApi, choose_kubeconfig
from pytest_nginmesh.cluster.provider import preflight
from pytest_nginmesh.errors import NginmeshError
from pytest_nginmesh.profiles import get_profile
from pytest_nginmesh.settings import Timeouts

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: bench, context: {{cluster: c, user: u}}}}]
current-context: bench
"""


def seconds_to_error(server: str, directory: Path) -> dict[str, object]:
    path = directory / "kubeconfig"
    path.write_text(KUBECONFIG.format(server=server))
    started = time.monotonic()
    try:
        preflight(KubeApi(choose_kubeconfig(path, None), Timeouts().api_request), get_profile("nginmesh-0.2.12"))
    except NginmeshError as e:
        return {"seconds": round(time.monotonic() - started, 3), "error": str(e)}
    return {"seconds": round(time.monotonic() - started, 3), "error": None}


def unreachable(directory: Path) -> dict[str, object]:
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        port = silent.getsockname()[1]
        hung_tls = seconds_to_error(f"https://127.0.0.1:{port}", directory)
        hung_http = seconds_to_error(f"http://127.0.0.1:{port}", directory)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        closed = probe.getsockname()[1]
    return {"hung_https": hung_tls, "hung_http": hung_http,
            "refused": seconds_to_error(f"https://127.0.0.1:{closed}", directory)}


def milliseconds(action: object, rounds: int) -> dict[str, float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 2), "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 2)}


def adapter_costs(directory: Path, rounds: int) -> dict[str, object]:
    with RecordedApiServer() as server:
        server.load(bookinfo_objects())
        pod = "reviews-v3-5fff595d9b-zsb2q"
        server.on_exec("default", pod, "reviews", lambda argv: (0, b"ok\n", b""))
        api = KubeApi(choose_kubeconfig(server.write_kubeconfig(directory / "fake"), None), 10.0)
        cluster = KubernetesCluster(api, "bench", Timeouts(), "debug:image", probe=lambda host, port: False)
        try:
            return {"list_pods": milliseconds(lambda: cluster.list_pods("default"), rounds),
                    "get": milliseconds(lambda: cluster.get("Deployment", "reviews-v3"), rounds),
                    "exec": milliseconds(lambda: cluster.exec("default", pod, ["true"], container="reviews"), rounds)}
        finally:
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        print(json.dumps({"time_to_error": unreachable(directory),
                          "fake_api_server": adapter_costs(directory, args.rounds)}, indent=2))


if __name__ == "__main__":
    main()
