"""Benchmark the bounds on bad input: how fast, and in how much memory, manifests and request bodies that would
blow up are refused — by the parser (in-process), by ``nginmesh local apply`` (a child process: seconds and
peak RSS) and by the embedded cluster's Kubernetes API (the daemon's ApiServer and REST layer over HTTPS on loopback,
in a child process on a temporary state directory: seconds to the 413/400/422 and its peak RSS before and after).
Needs no root.

Prints one JSON object:

    .venv/bin/python benchmarks/bad_input.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pytest_nginmesh.cluster.local.rest.pki import Credentials
from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.kube import parse_manifests

MIB = 1024 * 1024
ALIAS_BOMB = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [" + ",".join(["lol"] * 9) + "]\n"
              + "".join(f"  {level}: &{level} [{','.join(['*' + below] * 9)}]\n"
                        for below, level in zip("abcdefgh", "bcdefghi", strict=True)))
INPUTS = {
    "alias_bomb": ALIAS_BOMB,
    "json_100000_deep": "[" * 100_000 + "]" * 100_000,
    "yaml_2000_deep": "".join(" " * i + "a:\n" for i in range(2000)),
    "configmap_50_mib": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: huge}\ndata:\n  a: " + "x" * (50 * MIB),
}
# The API server in a child process, started by a small interpreter: its peak RSS is its own.
SERVER = """
import sys, threading
from pathlib import Path
from pytest_nginmesh.cluster.local.apiserver import ApiServer
from pytest_nginmesh.cluster.local.rest.server import RestApi, serve
state = Path(sys.argv[1])
info = {"name": "nmbench", "grace": 1.0,
        "addresses": {"pod_cidr": "10.99.0.0/16", "service_cidr": "10.98.0.0/16", "link_cidr": "10.97.0.0/30"}}
api = ApiServer(state, info)
stopping = threading.Event()
start = lambda target: threading.Thread(target=target, daemon=True).start()
(listener,) = serve(RestApi(api, api.credentials, stopping), api.credentials, ["127.0.0.1"], 0, start)
print("ready", listener.server_address[1], flush=True)
stopping.wait()
"""
MEASURED = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def median_seconds(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.monotonic()
        action()
        times.append(time.monotonic() - started)
    return round(statistics.median(times), 4)


def refused(text: str) -> str:
    try:
        parse_manifests(text, "input")
    except ManifestError as e:
        return str(e)
    raise AssertionError("not refused")


def parser(rounds: int) -> dict[str, object]:
    return {name: {"seconds": median_seconds(lambda text=text: refused(text), rounds), "error": refused(text)[:100]}
            for name, text in INPUTS.items()}


def cli(directory: Path) -> dict[str, object]:
    results: dict[str, object] = {}
    for name, text in INPUTS.items():
        path = directory / f"{name}.yaml"
        path.write_text(text)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "pytest_nginmesh.cli", "local",
                               "apply", "-f", str(path)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTEST_NGINMESH_CLUSTER_NAME": "nmbench"})
        results[name] = {"seconds": round(time.monotonic() - started, 3), "exit": done.returncode,
                         "stderr_lines": len(done.stderr.splitlines()), "peak_rss_kib": int(done.stdout.split()[-1])}
    return results


def post(port: int, credentials: Credentials, path: str, body: bytes) -> int:
    context = ssl.create_default_context(cafile=str(credentials.ca_cert))
    connection = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=120),
                                     server_hostname="127.0.0.1")
    try:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {credentials.token()}\r\n"
                           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        response = http.client.HTTPResponse(connection)  # type: ignore[arg-type]
        response.begin()
        response.read()
        return response.status
    finally:
        connection.close()


def peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def api_server(directory: Path) -> dict[str, object]:
    config_maps, pods = "/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/pods"
    bodies = {
        "configmap_50_mib": (config_maps, json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": "huge"}, "data": {"a": "x" * (50 * MIB)}})),
        "json_100000_deep": (config_maps, "[" * 100_000 + "]" * 100_000),
        "configmap_500_deep": (config_maps, '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deep"}, '
                               '"data": ' + "[" * 500 + "]" * 500 + "}"),
        "pod_named_traversal": (pods, json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "../../x"},
                                                  "spec": {"containers": []}})),
    }
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(directory)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready, port = server.stdout.readline().split()
        assert ready == "ready"
        credentials = Credentials(directory / "pki")
        results: dict[str, object] = {"peak_rss_kib_at_start": peak_rss_kib(server.pid)}
        for name, (path, body) in bodies.items():
            data = body.encode()
            started = time.monotonic()
            status = post(int(port), credentials, path, data)
            results[name] = {"status": status, "seconds": round(time.monotonic() - started, 3),
                             "peak_rss_kib_after": peak_rss_kib(server.pid)}
        return results
    finally:
        server.terminate()
        server.wait(10)


def main() -> int:
    parser_ = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser_.add_argument("--rounds", type=int, default=5, help="Rounds per in-process measurement (median).")
    args = parser_.parse_args()
    with tempfile.TemporaryDirectory(prefix="nmbench") as temporary:
        directory = Path(temporary)
        report = {"parser": parser(args.rounds), "cli_apply": cli(directory), "api_server": api_server(directory)}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
