"""A small client of the Kubernetes API for the local programs, set up as an in-cluster client is: the pod's
service-account token and CA at /var/run/secrets/kubernetes.io/serviceaccount, the API at
KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, else at ``kubernetes.default.svc:443`` (client-go's
rest.InClusterConfig reads the same files and variables)."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import ClusterError, NotFoundError
from ..kube import Obj

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
DEFAULT_HOST, DEFAULT_PORT = "kubernetes.default.svc", 443


class ConflictError(ClusterError):
    """409: the object changed since it was read (or already exists)."""


class KubeClient:
    """JSON requests over one kept-alive HTTPS connection (a lock serialises them), and watches on their own."""

    def __init__(self, host: str, port: int, token: str, ca_file: Path, timeout: float = 10.0) -> None:
        self.host, self.port, self.token, self.timeout = host, port, token, timeout
        self.context = ssl.create_default_context(cafile=str(ca_file))
        self._connection: http.client.HTTPSConnection | None = None
        self._lock = threading.Lock()

    @classmethod
    def in_cluster(cls, timeout: float = 10.0, directory: Path = SERVICE_ACCOUNT_DIR) -> KubeClient:
        try:
            token = (directory / "token").read_text().strip()
        except OSError as e:
            raise ClusterError(f"no service-account token at {directory} ({e.strerror}): the pod needs its "
                               "account's token mounted (automountServiceAccountToken)") from e
        host = os.environ.get("KUBERNETES_SERVICE_HOST", DEFAULT_HOST)
        port = int(os.environ.get("KUBERNETES_SERVICE_PORT", DEFAULT_PORT))
        return cls(host, port, token, directory / "ca.crt", timeout)

    def _connect(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)

    def _headers(self, body: bytes | None, content_type: str) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        return headers

    def request(self, method: str, path: str, body: object = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> Any:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        payload = None if body is None else json.dumps(body).encode()
        with self._lock:
            for attempt in range(2):  # a kept-alive connection the server closed meanwhile is opened again once
                connection = self._connection or self._connect(self.timeout)
                try:
                    connection.request(method, path, body=payload, headers=self._headers(payload, content_type))
                    response = connection.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as e:
                    connection.close()
                    self._connection = None
                    if attempt == 1:
                        raise ClusterError(f"the Kubernetes API at {self.host}:{self.port} does not answer: {e}") from e
                    continue
                self._connection = connection
                break
        return _decoded(response.status, data, f"{method} {path}")

    def watch(self, path: str, resource_version: str, timeout_seconds: int,
              query: dict[str, str] | None = None) -> Iterator[tuple[str, Obj]]:
        """(type, object) of each watch event after ``resource_version`` until the server ends the watch."""
        arguments = urllib.parse.urlencode({**(query or {}), "watch": "1", "resourceVersion": resource_version,
                                            "timeoutSeconds": str(timeout_seconds)})
        connection = self._connect(timeout_seconds + self.timeout)
        try:
            connection.request("GET", f"{path}?{arguments}", headers=self._headers(None, ""))
            response = connection.getresponse()
            if response.status != 200:
                _decoded(response.status, response.read(), f"watch {path}")
            for line in response:
                if line.strip():
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise ClusterError(f"watch {path}: {event['object'].get('message')}", event["object"])
                    yield str(event["type"]), event["object"]
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise ClusterError(f"watch {path} broke: {e}") from e
        finally:
            connection.close()


def _decoded(code: int, data: bytes, what: str) -> Any:
    try:
        body = json.loads(data or b"null")
    except ValueError:
        body = {"message": data.decode(errors="replace")[:200]}
    if code < 400:
        return body
    message = body.get("message", f"HTTP {code}") if isinstance(body, dict) else f"HTTP {code}"
    status = body if isinstance(body, dict) else {}
    if code == 404:
        raise NotFoundError(f"{what}: {message}", status)
    if code == 409:
        raise ConflictError(f"{what}: {message}", status)
    raise ClusterError(f"{what}: {message}", status)
