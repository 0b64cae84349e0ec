"""Pod port-forwards (``tunnels.PortForward`` and the ingress fallback of the Kubernetes adapter) against the FAKE
API server (tests/kubefake), whose pods' ports lead to real HTTP servers on 127.0.0.1. Nothing here connects to
anything but loopback: the recorded nodes' addresses are only ever handed to a probe that answers False."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket as ws_client
from kubefake import DEFAULT_TOKEN, RecordedApiServer, bookinfo_objects
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.kubeapi import KubeApi, choose_kubeconfig
from pytest_nginmesh.cluster.tunnels import PortForward
from pytest_nginmesh.settings import Timeouts

NAMESPACE = "istio-system"
PAGE = b"<html><head><title>Simple Bookstore App</title></head><body>productpage</body></html>"
TIMEOUT = 3.0  # every request of these tests: a hang fails the test instead of stalling it


class PageServer:
    """The pod's side: a stdlib HTTP server on 127.0.0.1 answering the product page."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.barrier: threading.Barrier | None = None  # set to make requests wait for each other
        page_server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                page_server.paths.append(self.path)
                if page_server.barrier is not None:
                    page_server.barrier.wait()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", int(self.httpd.server_address[1])

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def page() -> Iterator[PageServer]:
    page_server = PageServer()
    yield page_server
    page_server.close()


@pytest.fixture
def api(server: RecordedApiServer, tmp_path: Path) -> KubeApi:
    return KubeApi(choose_kubeconfig(server.write_kubeconfig(tmp_path / "kubeconfig"), None), 10.0)


@pytest.fixture
def ingress_pod(server: RecordedApiServer) -> str:
    pods = [o for o in bookinfo_objects() if o.get("kind") == "Pod" and o["metadata"]["namespace"] == NAMESPACE
            and (o["metadata"].get("labels") or {}).get("istio") == "ingress"]
    assert len(pods) == 1
    return str(pods[0]["metadata"]["name"])


@pytest.fixture
def forward(api: KubeApi) -> Iterator[list[PortForward]]:
    """PortForwards the test opens, closed at teardown."""
    opened: list[PortForward] = []
    yield opened
    for tunnel in opened:
        tunnel.close()


def open_forward(opened: list[PortForward], api: KubeApi, pod: str, port: int) -> PortForward:
    tunnel = PortForward(api, NAMESPACE, pod, port)
    opened.append(tunnel)
    return tunnel


def portforward_path(pod: str) -> str:
    return f"/api/v1/namespaces/{NAMESPACE}/pods/{pod}/portforward"


# -- tunnels.PortForward ------------------------------------------------------------------------------------
def test_requests_through_a_port_forward_reach_the_pods_port(server: RecordedApiServer, api: KubeApi,
                                                            page: PageServer, ingress_pod: str,
                                                            forward: list[PortForward]) -> None:
    server.on_port_forward(NAMESPACE, ingress_pod, 80, page.address)
    tunnel = open_forward(forward, api, ingress_pod, 80)
    assert tunnel.url.startswith("http://127.0.0.1:")
    for _ in range(2):
        response = requests.get(tunnel.url + "/productpage", timeout=TIMEOUT)
        assert response.status_code == 200 and response.content == PAGE
    assert page.paths == ["/productpage", "/productpage"]
    calls = server.requests_to(portforward_path(ingress_pod))
    assert len(calls) == 2, "one port-forward per accepted connection"
    assert all(c.method == "GET" and c.query["ports"] == ["80"] for c in calls)


def test_concurrent_requests_each_get_their_own_forward(server: RecordedApiServer, api: KubeApi, page: PageServer,
                                                        ingress_pod: str, forward: list[PortForward]) -> None:
    server.on_port_forward(NAMESPACE, ingress_pod, 80, page.address)
    page.barrier = threading.Barrier(2, timeout=TIMEOUT)  # neither answers until both requests are in the pod
    tunnel = open_forward(forward, api, ingress_pod, 80)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: requests.get(tunnel.url + "/productpage", timeout=TIMEOUT), range(2)))
    assert [(a.status_code, a.content) for a in answers] == [(200, PAGE), (200, PAGE)]
    assert len(server.requests_to(portforward_path(ingress_pod))) == 2


def test_an_unregistered_port_closes_the_connection_instead_of_hanging(api: KubeApi, ingress_pod: str,
                                                                       forward: list[PortForward]) -> None:
    tunnel = open_forward(forward, api, ingress_pod, 8080)
    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        requests.get(tunnel.url + "/productpage", timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT, "closed by the error, not by the client's timeout"


def test_a_missing_pod_closes_the_connection(server: RecordedApiServer, api: KubeApi,
                                             forward: list[PortForward]) -> None:
    tunnel = open_forward(forward, api, "istio-ingress-gone", 80)
    with pytest.raises(requests.ConnectionError):
        requests.get(tunnel.url + "/", timeout=TIMEOUT)
    assert len(server.requests_to(portforward_path("istio-ingress-gone"))) == 1


def test_close_stops_the_listener(server: RecordedApiServer, api: KubeApi, page: PageServer, ingress_pod: str,
                                  forward: list[PortForward]) -> None:
    server.on_port_forward(NAMESPACE, ingress_pod, 80, page.address)
    tunnel = open_forward(forward, api, ingress_pod, 80)
    assert requests.get(tunnel.url + "/", timeout=TIMEOUT).status_code == 200
    port = int(tunnel.url.rsplit(":", 1)[1])
    tunnel.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
    assert len(server.requests_to(portforward_path(ingress_pod))) == 1, "nothing accepted after close"


# -- KubernetesCluster.ingress_url --------------------------------------------------------------------------
def test_ingress_falls_back_to_a_port_forward_to_the_ready_ingress_pod(server: RecordedApiServer, api: KubeApi,
                                                                       page: PageServer, ingress_pod: str) -> None:
    ready = server.stored("v1", "Pod", ingress_pod, NAMESPACE)
    assert ready is not None
    unready = copy.deepcopy(ready)  # sorts first: picking it would forward to a port nobody registered
    unready["metadata"].update(name="istio-ingress-6krxnbt9rw-aaaaa", uid="0" * 8)
    for condition in unready["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition["status"] = "False"
    for status in unready["status"]["containerStatuses"]:
        status["ready"] = False
    server.load([unready])
    server.on_port_forward(NAMESPACE, ingress_pod, 80, page.address)
    probes: list[tuple[str, int]] = []

    def unreachable(host: str, port: int) -> bool:  # stands for TCP reachability: nothing leaves loopback
        probes.append((host, port))
        return False

    cluster = KubernetesCluster(api, "fake", Timeouts(), "debug:image", probe=unreachable)
    try:
        url = cluster.ingress_url()
        assert url.startswith("http://127.0.0.1:")
        assert probes == [("10.12.5.15", 32765), ("10.12.5.31", 32765)], "LoadBalancer pending: node ports tried"
        response = requests.get(url + "/productpage", timeout=TIMEOUT)
        assert response.status_code == 200 and b"productpage" in response.content
        assert cluster.ingress_url() == url and len(probes) == 2, "chosen once"
        assert len(server.requests_to(portforward_path(ingress_pod))) == 1
        assert server.requests_to(portforward_path("istio-ingress-6krxnbt9rw-aaaaa")) == []
    finally:
        cluster.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=TIMEOUT).close()


# -- the fake's port-forward protocol, as the official client speaks it -------------------------------------
def test_fake_announces_ports_little_endian_on_both_channels(server: RecordedApiServer, ingress_pod: str) -> None:
    url = server.url.replace("http://", "ws://") + portforward_path(ingress_pod) + "?ports=80,258"
    conn = ws_client.create_connection(url, timeout=TIMEOUT, header=[f"Authorization: Bearer {DEFAULT_TOKEN}"],
                                       subprotocols=["v5.channel.k8s.io", "v4.channel.k8s.io"])
    try:
        assert conn.getsubprotocol() == "v4.channel.k8s.io"
        frames = [conn.recv_data(control_frame=True) for _ in range(6)]
    finally:
        conn.close()
    data = [bytes(payload) for _, payload in frames]
    assert data[:4] == [b"\x00\x50\x00", b"\x01\x50\x00", b"\x02\x02\x01", b"\x03\x02\x01"]
    assert data[4][:1] == b"\x01" and b"error forwarding port 80 to pod" in data[4], "nothing registered for 80"
    assert data[5][:1] == b"\x03" and b"Connection refused" in data[5]


def test_fake_forwards_registered_ports_and_reports_refused_ones(server: RecordedApiServer, api: KubeApi,
                                                                 page: PageServer, ingress_pod: str) -> None:
    server.on_port_forward(NAMESPACE, ingress_pod, 80, page.address)
    core = k8s_client.CoreV1Api(api.client)
    forwarded = portforward(core.connect_get_namespaced_pod_portforward, ingress_pod, NAMESPACE, ports="80,81")
    try:
        pod_port = forwarded.socket(80)
        pod_port.settimeout(TIMEOUT)
        pod_port.sendall(b"GET /productpage HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := pod_port.recv(65536):
            reply += chunk
        assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(PAGE)
        refused = forwarded.socket(81)
        refused.settimeout(TIMEOUT)
        assert refused.recv(1) == b""
        assert forwarded.error(80) is None
        assert forwarded.error(81).startswith("error forwarding port 81 to pod ")
        assert "connection refused" in forwarded.error(81).lower()
    finally:
        forwarded.close()


def test_fake_refuses_missing_pods_and_non_loopback_targets(server: RecordedApiServer, api: KubeApi,
                                                            ingress_pod: str) -> None:
    core = k8s_client.CoreV1Api(api.client)
    with pytest.raises(ApiException, match="404"):
        portforward(core.connect_get_namespaced_pod_portforward, "nope", NAMESPACE, ports="80")
    with pytest.raises(ValueError, match="loopback"):
        server.on_port_forward(NAMESPACE, ingress_pod, 80, ("10.12.5.15", 80))
    answer = requests.get(server.url + portforward_path(ingress_pod), timeout=TIMEOUT,
                          headers={"Authorization": f"Bearer {server.token}"})
    assert answer.status_code == 400 and "ports" in answer.json()["message"]
