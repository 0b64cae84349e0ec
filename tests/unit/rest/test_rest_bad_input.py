"""Bad request bodies at the embedded Kubernetes API's door (rest/server.py's HTTPS handler): bounded in size and
in time, each refused with the Status kube-apiserver answers, in one line, with nothing stored. How fast is
measured by benchmarks/bad_input.py, not here."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from typing import Any

import pytest
from embedded_api import EmbeddedApi, start_container, stop_container
from helpers import raw_post

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local.rest import server
from pytest_nginmesh.errors import ClusterError
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.workloads._kubeclient import KubeClient

MIB = 1024 * 1024
CONFIG_MAPS = "/api/v1/namespaces/default/configmaps"


def config_map(name: str, data: object) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


def connect(api: EmbeddedApi, timeout: float = 30) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(api.credentials.ca_cert))
    address = api.url.removeprefix("https://").rsplit(":", 1)
    return context.wrap_socket(socket.create_connection((address[0], int(address[1])), timeout=timeout),
                               server_hostname=address[0])


def post(api: EmbeddedApi, body: bytes, length: int | str | None = None, path: str = CONFIG_MAPS
         ) -> tuple[int, Any]:
    """A raw POST: the body exactly as given, Content-Length as given (its real length by default)."""
    return raw_post(connect(api), path, api.token(), body, length)


def stored(api: EmbeddedApi) -> list[str]:
    return sorted(o["metadata"]["name"] for o in api.server.store.objects("ConfigMap"))


def assert_one_line_status(answer: Any, code: int, reason: str) -> None:
    assert answer["kind"] == "Status" and (answer["code"], answer["reason"]) == (code, reason), answer
    assert len(answer["message"].splitlines()) == 1


def test_an_invalid_name_is_a_422_with_the_kubernetes_message(embedded_api: EmbeddedApi) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "../x"},
           "spec": {"containers": [{"name": "app", "image": "nginx"}]}}
    status, answer = post(embedded_api, json.dumps(pod).encode(), path="/api/v1/namespaces/default/pods")
    assert status == 422
    assert_one_line_status(answer, 422, "Invalid")
    assert answer["message"].startswith('Pod "../x" is invalid: metadata.name: Invalid value: "../x": a lowercase RFC')
    assert embedded_api.server.store.objects("Pod") == []


def test_a_50_mib_config_map_is_413_and_never_reaches_the_store(embedded_api: EmbeddedApi) -> None:
    status, answer = post(embedded_api, json.dumps(config_map("huge", {"blob": "x" * (50 * MIB)})).encode())
    assert status == 413
    assert_one_line_status(answer, 413, "RequestEntityTooLarge")
    assert answer["message"] == f"Request entity too large: limit is {server.MAX_BODY}"
    assert stored(embedded_api) == []


def test_the_adapter_reads_the_413_as_a_cluster_error(adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    with pytest.raises(ClusterError, match="Request entity too large: limit is 3145728"):
        adapter.apply([config_map("huge", {"blob": "x" * (4 * MIB)})])
    assert stored(embedded_api) == []


def test_a_body_just_under_the_limit_is_read(embedded_api: EmbeddedApi) -> None:
    status, _ = post(embedded_api, json.dumps(config_map("near", {"blob": "x" * (MIB - 100)})).encode())
    assert status == 201 and stored(embedded_api) == ["near"]


DEEP_CONFIG_MAP = json.dumps(config_map("deep", {})).replace('"data": {}', '"data": ' + "[" * 200 + "]" * 200)


@pytest.mark.parametrize(("body", "code", "reason", "fragment"), [
    ("[" * 100_000 + "]" * 100_000, 400, "BadRequest", "error decoding request body"),
    ("[" * 101 + "]" * 101, 400, "BadRequest", "the body of the request must be a JSON object"),
    (DEEP_CONFIG_MAP, 422, "Invalid", "nests deeper than 100 levels; no Kubernetes object does"),
], ids=["100000-deep", "101-deep", "deep-object"])
def test_deep_nesting_is_one_line_and_stores_nothing(embedded_api: EmbeddedApi, body: str, code: int, reason: str,
                                                     fragment: str) -> None:
    status, answer = post(embedded_api, body.encode())
    assert status == code
    assert_one_line_status(answer, code, reason)
    assert fragment in answer["message"]
    assert stored(embedded_api) == []


@pytest.mark.parametrize(("body", "length", "fragment"), [
    (b"not json", None, "error decoding request body"),
    (b"{}", -5, "invalid Content-Length '-5': it is negative"),
    (b"{}", "2x", "invalid Content-Length '2x'"),
])
def test_malformed_requests_are_400(embedded_api: EmbeddedApi, body: bytes, length: int | str | None,
                                    fragment: str) -> None:
    status, answer = post(embedded_api, body, length=length)
    assert status == 400
    assert_one_line_status(answer, 400, "BadRequest")
    assert fragment in answer["message"]


def test_an_oversize_body_that_stops_arriving_still_gets_its_413(embedded_api: EmbeddedApi,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    status, answer = post(embedded_api, b"x" * 1000, length=50 * MIB)
    assert status == 413 and answer["reason"] == "RequestEntityTooLarge"


def test_a_body_that_never_arrives_is_a_504_and_frees_the_handler(embedded_api: EmbeddedApi,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    started = time.monotonic()
    status, answer = post(embedded_api, b'{"kind": ', length=100)
    assert status == 504
    assert_one_line_status(answer, 504, "Timeout")
    assert answer["message"].startswith("Timeout: request did not complete within requested timeout")
    assert time.monotonic() - started < 5
    assert stored(embedded_api) == []


def test_a_client_that_never_says_hello_holds_nobody_else_up(embedded_api: EmbeddedApi,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The TLS handshake happens in the connection's own thread, bounded, not in the one that accepts."""
    monkeypatch.setattr(server._Handler, "timeout", 0.5)
    address = embedded_api.url.removeprefix("https://").rsplit(":", 1)
    silent = socket.create_connection((address[0], int(address[1])), timeout=10)
    try:
        time.sleep(0.2)  # accepted, waiting for a ClientHello that never comes
        status, _ = post(embedded_api, json.dumps(config_map("after", {"a": "b"})).encode())
        assert status == 201
        assert silent.recv(1) == b"", "the silent client's connection is closed once its handshake times out"
    finally:
        silent.close()


def test_clients_outlive_the_close_of_their_idle_connection(adapter: KubernetesCluster, embedded_api: EmbeddedApi,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A kept-alive connection idle for READ_TIMEOUT is closed; the official client and Pilot's open a new one."""
    monkeypatch.setattr(server._Handler, "timeout", 0.3)
    host, port = embedded_api.url.removeprefix("https://").rsplit(":", 1)
    pilots = KubeClient(host, int(port), embedded_api.token(), embedded_api.credentials.ca_cert)
    for _ in range(2):
        assert adapter.get("Namespace", "default", "") is not None
        assert pilots.request("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
        time.sleep(0.6)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
@pytest.mark.skipif(os.geteuid() != 0, reason="a container needs a network namespace and a cgroup: needs root")
def test_an_exec_session_may_idle_longer_than_a_request_may(embedded_api: EmbeddedApi,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Once upgraded to a WebSocket, the connection is the exec's: its stdin may stay quiet past READ_TIMEOUT."""
    monkeypatch.setattr(server._Handler, "timeout", 0.3)
    process, cgroup = start_container(embedded_api, "quiet", [{"name": "app", "image": "a"}])
    try:
        kubectl = subprocess.Popen(["kubectl", f"--kubeconfig={embedded_api.kubeconfig}", "exec", "-i", "quiet", "--",
                                    "cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        out, _ = kubectl.communicate("after a quiet second\n", timeout=30)
        assert (kubectl.returncode, out) == (0, "after a quiet second\n")
    finally:
        stop_container(embedded_api, "quiet", process, cgroup)
