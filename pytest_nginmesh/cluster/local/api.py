"""A small JSON client for the local cluster's API server, which listens on a unix socket."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from ...errors import ClusterError, NotFoundError


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        # A unix socket with a timeout connects without blocking: when the server's backlog is full the
        # kernel answers EAGAIN at once instead of waiting, so a full backlog is waited out here, bounded.
        deadline = time.monotonic() + (self.timeout or 10.0)
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._path)
            except BlockingIOError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
                continue
            self.sock = sock
            return


class ApiClient:
    """Speaks to ``api.sock``; errors come back as ClusterError with the server's Status."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def request(self, method: str, path: str, body: object = None, **query: str | None) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
        except (OSError, http.client.HTTPException, json.JSONDecodeError) as e:
            raise ClusterError(
                f"the local cluster's API server at {self.socket_path} does not answer ({e}); "
                "is the cluster up? (nginmesh local status)"
            ) from e
        finally:
            connection.close()
        if response.status == 404:
            raise NotFoundError(data.get("message", "not found"), data)
        if response.status >= 400:
            raise ClusterError(data.get("message", f"HTTP {response.status}"), data)
        return data

    def get(self, path: str, **query: str | None) -> Any:
        return self.request("GET", path, **query)

    def post(self, path: str, body: object) -> Any:
        return self.request("POST", path, body)


def send_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    """Answer a request of the local API (or of Pilot, which serves the same JSON)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
