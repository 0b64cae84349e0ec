"""Loopback doors into a Kubernetes cluster: the API server's service proxy and pod port-forwards.

Both listen on 127.0.0.1 only, on ephemeral ports, and live as long as the adapter that opened them.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.stream import portforward

from .kubeapi import KubeApi

SERVICE_PROXY_PATH = re.compile(r"^/api/v1/namespaces/[a-z0-9-]+/services/[a-z0-9.:-]+/proxy(/.*)?$")
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                        "proxy-authorization", "proxy-authenticate", "host", "content-length"})


class ServiceProxy:
    """``kubectl proxy`` restricted to service proxy paths: the test process GETs plain http URLs, the
    credentials stay in this process, and no other API path is exposed on the loopback port."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="nginmesh-service-proxy", daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, namespace: str, service: str, port: int) -> str:
        return f"{self.base_url}/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self.api

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                path, _, query = self.path.partition("?")
                if not SERVICE_PROXY_PATH.match(path):
                    self.send_error(403, "only service proxy paths are forwarded")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, reply_headers, data = forward(api, self.command, path, query, headers, body)
                self.send_response(status)
                for name, value in reply_headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def forward(api: KubeApi, method: str, path: str, query: str, headers: dict[str, str],
            body: bytes | None) -> tuple[int, dict[str, str], bytes]:
    """Send one request through the API server as is; returns status, headers and body as it answered."""
    host = api.client.configuration.host
    auth = api.client.configuration.auth_settings().get("BearerToken")
    if auth and auth.get("value"):
        headers = {**headers, "Authorization": str(auth["value"])}
    url = host + path + (f"?{query}" if query else "")
    try:
        response = api.client.rest_client.pool_manager.request(
            method, url, headers=headers, body=body, preload_content=True, timeout=api.request_timeout,
            retries=False)
    except Exception as e:
        return 502, {"Content-Type": "text/plain"}, f"API server unreachable: {e.__class__.__name__}".encode()
    return response.status, dict(response.headers), bytes(response.data)


class PortForward:
    """A loopback listener whose every connection is forwarded to ``port`` of one pod."""

    def __init__(self, api: KubeApi, namespace: str, pod: str, port: int) -> None:
        # kubernetes.stream swaps the client's transport while it connects: a client of its own keeps that away
        # from the adapter's requests, and the lock keeps two connections from swapping it at once.
        self.core = k8s_client.CoreV1Api(k8s_client.ApiClient(api.client.configuration))
        self.connecting = threading.Lock()
        self.namespace, self.pod, self.port = namespace, pod, port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.closed = threading.Event()
        threading.Thread(target=self._accept, name=f"nginmesh-port-forward-{pod}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):  # close() alone leaves a blocked accept() listening (Linux)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        try:
            with self.connecting:
                forwarded = portforward(self.core.connect_get_namespaced_pod_portforward, self.pod, self.namespace,
                                        ports=str(self.port))
        except Exception:
            conn.close()
            return
        remote = forwarded.socket(self.port)
        try:
            pump(conn, remote._socket)
        finally:
            conn.close()
            forwarded.close()


def pump(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes (or fails: a reset or a closed pipe ends it too)."""
    sockets = [a, b]
    while True:
        readable, _, _ = select.select(sockets, [], [], 1.0)
        for source in readable:
            try:
                data = source.recv(65536)
                if not data:
                    return
                (b if source is a else a).sendall(data)
            except OSError:
                return
