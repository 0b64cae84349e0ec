"""RecordedApiServer: a FAKE Kubernetes 1.13 API server on 127.0.0.1, for testing clients at the HTTP boundary."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from . import portforward, websocket
from .api import FakeApi, Query, ResourcePath, first, pick_container
from .discovery import Discovery
from .status import UNAUTHORIZED, ApiError, Obj, bad_request, internal_error, method_not_allowed, not_found

ExecHandler = Callable[[list[str]], tuple[int, bytes, bytes]]
"""Runs a command in a container: (argv) -> (exit code, stdout, stderr)."""

DEFAULT_TOKEN = "kubefake-token"
_EXEC_PROTOCOLS = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
_STDOUT, _STDERR, _ERROR = 1, 2, 3
_FRAME_CHUNK = 16 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, as the client sent it (path percent-decoded, body parsed when JSON)."""

    method: str
    path: str
    query: Query
    body: Any
    content_type: str | None


@dataclass(frozen=True)
class ProxyRequest:
    """A request to a service, as the API server's proxy forwards it."""

    method: str
    path: str  # below .../proxy, always starting with "/"
    query: str
    headers: dict[str, str]
    body: bytes


ProxyHandler = Callable[[ProxyRequest], tuple[int, dict[str, str], bytes]]
"""Answers a proxied request: (request) -> (HTTP status, headers, body)."""

PortForwardTarget = portforward.Target
"""Where a pod's port leads: a loopback (host, port) the fake connects to, once per forwarded connection."""


class RecordedApiServer:
    """A fake API server that serves recorded Kubernetes 1.13 API objects over real HTTP on 127.0.0.1.

    The store is the cluster (``load`` recorded objects, or create them through the API); handlers the test
    registers stand in for what runs in it: ``on_exec`` for commands in containers, ``on_service_proxy`` for
    services behind the API server's proxy, ``on_port_forward`` for pods' ports, ``set_log`` for container logs.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, version: dict[str, str] | None = None,
                 discovery: Discovery | None = None) -> None:
        self.token = token
        self.discovery = discovery or Discovery()
        self.api = FakeApi(self.discovery, {**self.discovery.version, **(version or {})})
        self.requests: list[RecordedRequest] = []
        self._exec_handlers: dict[tuple[str, str, str], ExecHandler] = {}
        self._proxy_handlers: dict[tuple[str, str], ProxyHandler] = {}
        self._port_forward_targets: dict[tuple[str, str, int], PortForwardTarget] = {}
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _handler_class(self))
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> RecordedApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.005},
                                        name="kubefake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> RecordedApiServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: str | Path, context: str = "fake", token: str | None = None) -> Path:
        """A kubeconfig for this server: one cluster, one bearer-token user, one current context."""
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": self.token if token is None else token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": "default"}}],
            "current-context": context,
        }
        target = Path(path)
        target.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML: any kubeconfig loader reads it
        return target

    # -- what the test sets up ----------------------------------------------------------------------------
    def load(self, objects: list[Obj]) -> None:
        """Store recorded objects as they are (a List's items too). Their namespaces are not required."""
        self.api.load(objects)

    def on_exec(self, namespace: str, pod: str, container: str, handler: ExecHandler) -> None:
        """Answer exec in this container with ``handler``. The pod must be in the store, as on a cluster."""
        with self._lock:
            self._exec_handlers[(namespace, pod, container)] = handler

    def on_service_proxy(self, namespace: str, service_port: str, handler: ProxyHandler) -> None:
        """Answer ``services/NAME:PORT/proxy/...`` with ``handler``; ``service_port`` is "NAME:PORT" (a port
        number or name) or "NAME". The Service must be in the store; without a handler it has no endpoints."""
        with self._lock:
            self._proxy_handlers[(namespace, service_port)] = handler

    def run_pods_in(self, namespace: str) -> None:
        """Pods created in ``namespace`` from now on are stored Running and Ready, as if a kubelet had
        started them (the fake has none); elsewhere they stay Pending, as the real server stores them."""
        with self._lock:
            self.api.running_namespaces.add(namespace)

    def on_port_forward(self, namespace: str, pod: str, port: int, target: PortForwardTarget) -> None:
        """Forward connections to ``port`` of this pod to ``target``, a loopback (host, port): each forwarded
        connection is a new TCP connection to it. The pod must be in the store; an unregistered port refuses."""
        checked = portforward.require_loopback(target)
        with self._lock:
            self._port_forward_targets[(namespace, pod, int(port))] = checked

    def set_log(self, namespace: str, pod: str, container: str, text: str, previous: str | None = None) -> None:
        """A container's log, and its previous (terminated) instance's when ``previous`` is given."""
        with self._lock:
            self.api.logs.current[(namespace, pod, container)] = text
            if previous is not None:
                self.api.logs.previous[(namespace, pod, container)] = previous

    def stored(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        """An object as stored now (None when absent), for assertions that bypass the client."""
        resource = self.api.resource_for({"apiVersion": api_version, "kind": kind})
        found = self.api.store.get(resource, namespace, name)
        return self.api.present(resource, found) if found is not None else None

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    # -- used by the request handler ----------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _exec_handler(self, namespace: str, pod: str, container: str) -> ExecHandler | None:
        with self._lock:
            return self._exec_handlers.get((namespace, pod, container))

    def _port_forward_target(self, namespace: str, pod: str, port: int) -> PortForwardTarget | None:
        with self._lock:
            return self._port_forward_targets.get((namespace, pod, port))

    def _proxy_handler(self, namespace: str, keys: list[str]) -> ProxyHandler | None:
        with self._lock:
            return next((self._proxy_handlers[(namespace, k)] for k in keys
                         if (namespace, k) in self._proxy_handlers), None)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def _handler_class(server: RecordedApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_RequestHandler):
        fake = server

    return Handler


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubefake"
    fake: RecordedApiServer

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, delayed ACKs cost 40 ms a response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read server.requests instead
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    # -- plumbing -----------------------------------------------------------------------------------------
    def _serve(self) -> None:
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type")
        self.fake._record(RecordedRequest(self.command, path, query, _parsed(raw), content_type))
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self._send_json(401, UNAUTHORIZED)
            return
        try:
            self._route(path, split.query, query, raw, content_type or "")
        except ApiError as error:
            self._send_json(error.code, error.body)
        except Exception as error:  # a bug in the fake or a handler: say so as the server would
            self._send_json(500, internal_error(f"kubefake: {type(error).__name__}: {error}").body)

    def _route(self, path: str, raw_query: str, query: Query, raw: bytes, content_type: str) -> None:
        api = self.fake.api
        document = api.discovery_document(path)
        if document is not None:
            if self.command != "GET":
                raise method_not_allowed()
            self._send_json(200, document)
            return
        if path in ("/healthz", "/healthz/"):
            self._send(200, {"Content-Type": "text/plain; charset=utf-8"}, b"ok")
            return
        target = api.parse_path(path)
        if target is None:
            self._send(404, {"Content-Type": "text/plain; charset=utf-8"}, b"404 page not found\n")
            return
        verb = api.check_verb(target, self.command, query)
        if target.subresource == "exec":
            self._exec(target, query)
        elif target.subresource == "portforward":
            self._port_forward(target, query)
        elif target.subresource == "proxy" and target.resource.plural == "services":
            self._service_proxy(target, raw_query, raw)
        elif target.subresource == "log":
            if self.command != "GET":
                raise method_not_allowed()
            assert target.namespace is not None and target.name is not None
            text = api.pod_log(target.namespace, target.name, query)
            self._send(200, {"Content-Type": "text/plain"}, text.encode("utf-8"))
        else:
            with api.store.lock:  # one write at a time, as etcd's transactions would have it
                answer = self._crud(target, verb, query, raw, content_type)
            self._send_json(*answer)

    def _crud(self, target: ResourcePath, verb: str, query: Query, raw: bytes, content_type: str) -> tuple[int, Obj]:
        api, resource, namespace, name = self.fake.api, target.resource, target.namespace, target.name
        body = _parsed(raw) if verb != "patch" else None
        if target.subresource not in (None, "status"):
            raise method_not_allowed()
        if target.subresource == "status" and verb not in ("get", "put", "patch"):
            raise method_not_allowed()
        if verb == "get":
            assert name is not None
            return 200, api.get(resource, namespace, name)
        if verb == "list":
            return 200, api.list_response(resource, namespace, query)
        if verb == "create":
            if resource.namespaced and namespace is None:
                raise method_not_allowed()
            return 201, api.create(resource, namespace, body)
        assert name is not None or verb == "deletecollection"
        if verb in ("update", "put"):
            assert name is not None
            return 200, api.update(resource, namespace, name, body, target.subresource)
        if verb == "patch":
            assert name is not None
            existed = api.store.get(resource, namespace, name) is not None
            patched = api.patch(resource, namespace, name, content_type, raw, query, target.subresource)
            return (200 if existed else 201), patched
        if verb == "delete":
            assert name is not None
            return 200, api.delete(resource, namespace, name, query, body)
        if verb == "deletecollection":
            return 200, api.delete_collection(resource, namespace, query, body)
        raise method_not_allowed()

    def _send(self, code: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(code)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, code: int, body: Obj) -> None:
        self._send(code, {"Content-Type": "application/json"}, json.dumps(body).encode("utf-8"))

    # -- pods/exec over WebSocket -------------------------------------------------------------------------
    def _exec(self, target: ResourcePath, query: Query) -> None:
        assert target.namespace is not None and target.name is not None
        if self.command not in ("GET", "POST"):
            raise method_not_allowed()
        pod = self.fake.api.get_pod(target.namespace, target.name)
        container = pick_container(pod, first(query, "container") or None)
        command = query.get("command", [])
        if not command:
            raise bad_request("you must specify at least 1 command")
        wants = {stream: first(query, stream) in ("true", "1") for stream in ("stdin", "stdout", "stderr")}
        if not any(wants.values()):
            raise bad_request("you must specify at least one of stdin, stdout, stderr")
        protocol = self._upgrade(_EXEC_PROTOCOLS)
        exit_code, stdout, stderr, failure = self._run(target.namespace, target.name, container, command)
        if wants["stdout"]:
            self._send_channel(_STDOUT, stdout)
        if wants["stderr"]:
            self._send_channel(_STDERR, stderr)
        self._send_channel(_ERROR, _exec_status(exit_code, failure, protocol == _EXEC_PROTOCOLS[0]))
        self.wfile.write(websocket.close_frame())
        self._await_close()

    def _upgrade(self, supported: tuple[str, ...]) -> str:
        """Switch to WebSocket with the first offered subprotocol we support ("" when none was offered)."""
        if self.headers.get("Upgrade", "").lower() != "websocket":
            raise bad_request("Upgrade request required")  # SPDY, kubectl's transport then, is not spoken here
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        protocol = next((p for p in offered if p in supported), None)
        if offered and protocol is None:
            listed = [p for p in supported if p]
            raise bad_request(f"requested protocol(s) are not supported: {offered}; supports {listed}")
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", websocket.accept_key(self.headers.get("Sec-WebSocket-Key", "")))
        if protocol:
            self.send_header("Sec-WebSocket-Protocol", protocol)
        self.end_headers()
        self.close_connection = True
        return protocol or ""

    def _run(self, namespace: str, pod: str, container: str, command: list[str]) -> tuple[int, bytes, bytes, str]:
        handler = self.fake._exec_handler(namespace, pod, container)
        if handler is None:
            message = (f"kubefake: no exec handler registered for {namespace}/{pod}/{container} "
                       f"(command {command!r}); register one with server.on_exec(...)\n")
            return 126, b"", message.encode("utf-8"), ""
        try:
            exit_code, stdout, stderr = handler(list(command))
        except Exception as error:  # the runtime failed to run it: not an exit code
            return 0, b"", b"", f"{type(error).__name__}: {error}"
        return exit_code, stdout, stderr, ""

    def _send_channel(self, channel: int, data: bytes) -> None:
        for start in range(0, len(data), _FRAME_CHUNK):
            self.wfile.write(websocket.encode_frame(websocket.OP_BINARY,
                                                    bytes([channel]) + data[start:start + _FRAME_CHUNK]))

    def _await_close(self) -> None:
        """Read the client's frames until it answers our close (or goes), then let the connection end."""
        self.connection.settimeout(2.0)
        try:
            while (frame := websocket.read_frame(self.rfile)) is not None and frame[0] != websocket.OP_CLOSE:
                pass
        except OSError:  # a timeout included
            pass

    # -- pods/portforward over WebSocket ------------------------------------------------------------------
    def _port_forward(self, target: ResourcePath, query: Query) -> None:
        assert target.namespace is not None and target.name is not None
        if self.command not in ("GET", "POST"):
            raise method_not_allowed()
        pod = self.fake.api.get_pod(target.namespace, target.name)
        ports = portforward.parse_ports(query)
        targets = [self.fake._port_forward_target(target.namespace, target.name, port) for port in ports]
        self._upgrade(portforward.PROTOCOLS)
        pod_id = str(pod["metadata"].get("uid") or target.name)  # the kubelet names the pod sandbox here
        portforward.Session(self.connection, self.rfile, self.wfile, ports, targets, pod_id).run()

    # -- services/NAME:PORT/proxy/... ---------------------------------------------------------------------
    def _service_proxy(self, target: ResourcePath, raw_query: str, raw: bytes) -> None:
        assert target.namespace is not None and target.name is not None
        api = self.fake.api
        parts = target.name.split(":")
        name, port = (parts[1], parts[2]) if len(parts) == 3 else (parts[0], parts[1] if len(parts) == 2 else "")
        services = api.resource("", "v1", "services")
        service = api.store.get(services, target.namespace, name)
        if service is None:
            raise not_found(services, name)
        ports = service.get("spec", {}).get("ports") or []
        if port.isdigit() and not any(str(p.get("port")) == port for p in ports):
            raise ApiError(503, "ServiceUnavailable", f'no service port {port} found for service "{name}"')
        chosen = [p for p in ports if port in (str(p.get("port")), p.get("name", ""))] or (
            ports if not port and len(ports) == 1 else [])
        keys = [target.name, f"{name}:{port}"] + [f"{name}:{p.get(k)}" for p in chosen for k in ("port", "name")]
        if len(ports) == 1 and chosen:
            keys.append(name)
        handler = self.fake._proxy_handler(target.namespace, keys)
        if handler is None:
            raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        request = ProxyRequest(self.command, target.rest, raw_query,
                               {k: v for k, v in self.headers.items() if k.lower() != "authorization"}, raw)
        code, headers, body = handler(request)
        self._send(code, headers, body)


def _exec_status(exit_code: int, failure: str, v4: bool) -> bytes:
    """What the error channel carries when the command ends: a v1 Status in v4, plain text before."""
    if failure:
        status = internal_error(failure).body
    elif exit_code == 0:
        if not v4:
            return b""
        status = {"metadata": {}, "status": "Success"}
    else:
        status = {"metadata": {}, "status": "Failure",
                  "message": f"command terminated with non-zero exit code: Error executing in Docker Container: "
                             f"{exit_code}",
                  "reason": "NonZeroExitCode",
                  "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}
    if not v4:
        return str(status["message"]).encode("utf-8")
    return json.dumps(status).encode("utf-8")


def _parsed(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
