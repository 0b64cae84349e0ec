"""The local cluster's daemon: an API server on a unix socket, admission, controllers and the kubelet."""

from __future__ import annotations

import argparse
import contextlib
import copy
import ipaddress
import json
import logging
import signal
import socketserver
import sys
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from ...errors import ClusterError, ForbiddenError, ManifestError, NginmeshError, NotFoundError
from ...kube import CLUSTER_SCOPED_KINDS, Obj, ObjectKey, key_of
from ...settings import Timeouts
from ...validation import MAX_NESTING_DEPTH, Invalid, object_errors, shape_problem
from .api import send_json
from .controllers import Controllers, mark_deleted
from .kubelet import Kubelet, exec_in_container
from .network import Addresses, NodeNetwork
from .paths import inside
from .plugins import AdmissionPlugin, installed_plugins
from .rest.pki import Credentials
from .rest.server import HttpsServer, RestApi, serve
from .serviceaccounts import api_service, mount_token
from .store import Store, now
from .system import write_private

log = logging.getLogger("nginmesh.local")

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public")
KUBECONFIG = "kubeconfig"
# The ConfigMap Pilot publishes the proxy status in (its contract, README "Convergence"), and the kinds Pilot
# watches: read here only for the local adapter's convergence wait, until it uses the Kubernetes adapter.
PROXY_STATUS = ObjectKey("ConfigMap", "istio-system", "nginmesh-proxy-status")
OBSERVED = "nginmesh.io/observed-resource-version"
PILOT_WATCHES = frozenset({"Service", "Endpoints", "Pod", "RouteRule", "Ingress"})
# kube-apiserver's default limit of a request body (MaxRequestBodyBytes, 3 MiB, in kubernetes/kubernetes
# staging/src/k8s.io/apiserver/pkg/server/config.go); the rest of a bigger body is read and dropped, up to
# MAX_DISCARDED_BODY_BYTES, so that the client still reads the 413 instead of a broken pipe.
MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024
MAX_DISCARDED_BODY_BYTES = 64 * 1024 * 1024


class RequestTooLarge(NginmeshError):
    """A request body over MAX_REQUEST_BODY_BYTES: answered 413 before it is parsed."""


class Admission:
    """What the API server checks and mutates before an object is stored."""

    def __init__(self, store: Store, ca_pem: str, plugins: list[AdmissionPlugin]) -> None:
        self.store = store
        self.ca_pem = ca_pem
        self.plugins = plugins

    def validate(self, objects: list[Obj]) -> None:
        """Refuse the whole request, naming every invalid object, unless each passes Kubernetes' validation of its
        names, keys and sizes (pytest_nginmesh.validation), its namespace exists and the plug-ins accept it."""
        for obj in objects:
            problem = shape_problem(obj)
            if problem:  # objects reach here from the REST API's own decoders too
                raise ManifestError(f"the object {problem}: fix the manifest")
        refused = [(obj, errors) for obj in objects if (errors := object_errors(obj, CLUSTER_SCOPED_KINDS))]
        if refused:
            raise Invalid(refused)
        namespaces = {o["metadata"]["name"] for o in self.store.objects("Namespace")}
        namespaces |= {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
        for obj in objects:
            key = key_of(obj)
            if key.namespace and key.namespace not in namespaces:
                raise ManifestError(f'{key}: namespace "{key.namespace}" not found; create it first')
            for plugin in self.plugins:
                plugin.validate(obj)

    def mutate(self, obj: Obj, old: Obj | None) -> Obj:
        obj = copy.deepcopy(obj)
        initializers = obj.get("metadata", {}).get("initializers")
        if initializers is not None and not initializers.get("pending") and not initializers.get("result"):
            del obj["metadata"]["initializers"]  # the last initializer is done: the object is initialized
        if old is None:
            covering = self._initializers_for(obj["kind"])
            if covering:
                obj["metadata"]["initializers"] = {"pending": [{"name": n} for n in covering]}
        for plugin in self.plugins:
            obj = plugin.mutate(obj, old, self.store.get)
        if obj["kind"] == "Service" and old is not None:
            self._keep_allocations(obj, old)
        if obj["kind"] == "Pod" and old is None:
            obj = mount_token(obj, self.store, self.ca_pem)
        return obj

    def _initializers_for(self, kind: str) -> list[str]:
        names = []
        plural = kind.lower() + "s"
        for config in self.store.objects("InitializerConfiguration"):
            for initializer in config.get("initializers") or []:
                for rule in initializer.get("rules") or []:
                    if plural in (rule.get("resources") or []) or "*" in (rule.get("resources") or []):
                        names.append(initializer["name"])
        return names

    @staticmethod
    def _keep_allocations(obj: Obj, old: Obj) -> None:
        spec, old_spec = obj.setdefault("spec", {}), old.get("spec", {})
        spec.setdefault("clusterIP", old_spec.get("clusterIP"))
        old_ports = {(p.get("name"), p.get("port")): p for p in old_spec.get("ports") or []}
        for port in spec.get("ports") or []:
            previous = old_ports.get((port.get("name"), port.get("port")))
            if previous and "nodePort" in previous:
                port.setdefault("nodePort", previous["nodePort"])


class ApiServer:
    """Everything the daemon holds; the HTTP handler calls into it."""

    def __init__(self, state_dir: Path, info: Obj) -> None:
        self.state_dir = state_dir
        self.info = info
        self.store = Store(state_dir / "objects.json")
        addresses = Addresses(**info["addresses"])
        self.credentials = Credentials(state_dir / "pki")
        if not self.credentials.server_cert.exists():
            self.credentials.create(info["name"], ["127.0.0.1", addresses.host_ip, api_service_ip(addresses)])
        ca_pem = self.credentials.ca_cert.read_text()
        self.network = NodeNetwork(info["name"], addresses, info["grace"])
        self.kubelet = Kubelet(info["name"], self.store, self.network, state_dir, info["grace"])
        self.controllers = Controllers(self.store, self.kubelet, self.network, ca_pem)
        self.admission = Admission(self.store, ca_pem, installed_plugins())
        self.stopping = threading.Event()
        self._apply_lock = threading.Lock()
        for name in BUILTIN_NAMESPACES:
            self.store.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                            "status": {"phase": "Active"}})

    # -- API verbs ----------------------------------------------------------------------------------
    def apply(self, objects: list[Obj]) -> list[Obj]:
        with self._apply_lock:
            self.admission.validate(objects)
            prepared = [self.admission.mutate(o, self.store.get(key_of(o))) for o in objects]
            results = []
            for obj in prepared:
                stored, action = self.store.put(obj)
                results.append({"object": str(key_of(stored)), "action": action})
            return results

    def delete(self, objects: list[Obj]) -> list[Obj]:
        results = []
        with self._apply_lock:
            for obj in objects:
                key = key_of(obj)
                results.append({"object": str(key), "action": "deleted" if self._delete(key) else "not found"})
        return results

    def admit(self, obj: Obj, old: Obj | None) -> Obj:
        """Validate and mutate one object about to be stored (the REST API's admission chain)."""
        self.admission.validate([obj])
        return self.admission.mutate(obj, old)

    def remove(self, key: ObjectKey) -> Obj | None:
        """Delete one object; a pod stays, marked, until the kubelet has stopped it."""
        return self._delete(key)

    def exec_argv(self, namespace: str, pod: str, container: str | None, command: list[str]
                  ) -> tuple[list[str], dict[str, str]]:
        """The host argv and environment that run ``command`` in a container, as its runtime's exec does."""
        obj = self.store.get(ObjectKey("Pod", namespace, pod))
        if obj is None:
            raise NotFoundError(f'pods "{pod}" not found')
        return exec_in_container(self.info["name"], obj, self._container(obj, container), command)

    def log_file(self, namespace: str, pod: str, container: str | None, previous: bool) -> Path:
        obj = self.store.get(ObjectKey("Pod", namespace, pod))
        if obj is None:
            raise NotFoundError(f'pods "{pod}" not found')
        spec = self._container(obj, container)
        directory = inside(self.kubelet.pods_dir, f"{namespace}_{pod}")
        return inside(directory, f"{spec['name']}{'.previous' if previous else ''}.log")

    @staticmethod
    def _container(pod: Obj, name: str | None) -> Obj:
        containers = (pod.get("spec") or {}).get("containers") or []
        if name is None:
            return dict(containers[0])
        for candidate in containers + ((pod.get("spec") or {}).get("initContainers") or []):
            if candidate.get("name") == name:
                return dict(candidate)
        raise NotFoundError(f"container {name} is not valid for pod {pod['metadata']['name']}")

    def _delete(self, key: ObjectKey) -> Obj | None:
        """The object as its deletion left it (marked, for a pod; else at its deletion's resourceVersion)."""
        existing = self.store.get(key)
        if existing is None:
            return None
        if key.kind == "Pod":
            mark_deleted(self.store, key)
            return self.store.get(key) or existing
        if key.kind == "Namespace":
            with self.store.changed:  # no controller fills the namespace again while it goes
                for obj in self.store.objects(namespace=key.name):
                    self._delete(key_of(obj))
                return self.store.delete(key)
        if key.kind == "Service":
            self.controllers.release(existing)
            self.store.delete(ObjectKey("Endpoints", key.namespace, key.name))
        return self.store.delete(key)

    # -- until the suites and the CLI use the Kubernetes adapter: the proxy status Pilot publishes, in the shape the
    # local adapter reads. Pilot owns it; the daemon only reads the ConfigMap like any API client.
    def mesh_version(self) -> Obj:
        """The mesh version Pilot serves, once Pilot has seen every change of what it watches so far (the
        ConfigMap's observed resourceVersion); until then a version no proxy has, so a convergence wait right
        after a write waits for Pilot instead of trusting the version from before the write."""
        configmap = self.store.get(PROXY_STATUS) or {}
        observed = str(((configmap.get("metadata") or {}).get("annotations") or {}).get(OBSERVED, ""))
        if not observed.isdigit() or int(observed) < self.store.last_revision_of(PILOT_WATCHES):
            return {"version": "(pilot has not seen the latest change yet)"}
        return {"version": (configmap.get("data") or {}).get("mesh-version", "")}

    def proxy_status(self) -> list[Obj]:
        """The version each live proxy acked, as Pilot published it."""
        data = (self.store.get(PROXY_STATUS) or {}).get("data") or {}
        acks = []
        for key, value in sorted(data.items()):
            if key == "mesh-version":
                continue
            namespace, _, pod = key.partition(".")
            acks.append({"namespace": namespace, "pod": pod, **json.loads(value)})
        return acks

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        saved = -1
        while not self.stopping.is_set():
            with self.store.changed:
                revision = self.store.revision
                if revision == saved:
                    self.store.changed.wait(1.0)
            try:
                self.controllers.reconcile()
            except NginmeshError:
                log.exception("reconcile failed")
            if self.store.revision != saved:
                saved = self.store.revision
                self.store.save()

    def shutdown(self) -> None:
        self.stopping.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self.kubelet.shutdown()


def api_service_ip(addresses: Addresses) -> str:
    """The ``kubernetes`` Service's ClusterIP: the service range's first address, which kube-apiserver reserves
    for it and puts in its serving certificate (pkg/master/services.go, ServiceIPRange)."""
    return str(next(ipaddress.IPv4Network(addresses.service_cidr).hosts()))


class Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = Timeouts().api_request  # a client that stops sending mid-request frees its thread

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)

    def _reply(self, status: int, body: object) -> None:
        send_json(self, status, body)

    def _forbidden(self, message: str) -> None:
        self._reply(403, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                          "reason": "Forbidden", "code": 403})

    def _body(self) -> Any:
        """The JSON body: at most MAX_REQUEST_BODY_BYTES, nesting at most MAX_NESTING_DEPTH levels."""
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError(f"Content-Length {length} is negative")
        if length > MAX_REQUEST_BODY_BYTES:
            self._discard(length)
            raise RequestTooLarge(f"Request entity too large: limit is {MAX_REQUEST_BODY_BYTES} bytes, this body has "
                                  f"{length}; send fewer or smaller objects at a time")
        try:
            data = self.rfile.read(length)
        except TimeoutError as e:
            raise ValueError(f"the body did not arrive within {self.timeout:g}s") from e
        try:
            body = json.loads(data or b"null")
        except RecursionError:  # deeper than the JSON decoder goes: far deeper than any object
            problem: str | None = f"nests deeper than {MAX_NESTING_DEPTH} levels; no Kubernetes object does"
        else:
            problem = shape_problem(body)
        if problem:
            raise ManifestError(f"the request body {problem}: fix the manifest")
        return body

    def _discard(self, length: int) -> None:
        remaining = min(length, MAX_DISCARDED_BODY_BYTES)
        with contextlib.suppress(TimeoutError):  # a client that stops sending gets its 413 all the same
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1024 * 1024))
                if not chunk:
                    return
                remaining -= len(chunk)

    def _objects(self) -> list[Obj]:
        payload = self._body()
        objects = payload.get("objects") if isinstance(payload, dict) else None
        if not isinstance(objects, list):
            raise ValueError('the body must be {"objects": [...]}')
        return objects

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        api = self.server.api
        try:
            match method, url.path:
                case "GET", "/healthz":
                    body: object = {"status": "ok", "cluster": api.info["name"]}
                case "GET", "/api/objects":
                    body = api.store.objects(query.get("kind"), query.get("namespace"))
                case "GET", "/api/object":
                    key = ObjectKey(query["kind"], "" if query["kind"] in CLUSTER_SCOPED_KINDS
                                    else query.get("namespace", "default"), query["name"])
                    body = api.store.get(key)
                    if body is None:
                        return self._reply(404, {"message": f"{key} not found", "reason": "NotFound"})
                case "GET", "/api/events":
                    body = api.store.events(query.get("namespace"))
                case "GET", "/api/mesh":
                    body = api.mesh_version()
                case "GET", "/api/proxy-status":
                    body = api.proxy_status()
                case "POST", "/api/apply":
                    body = api.apply(self._objects())
                case "POST", "/api/delete":
                    body = api.delete(self._objects())
                case _:
                    return self._reply(404, {"message": f"no such API path {method} {url.path}"})
        except RequestTooLarge as e:
            return self._reply(413, {"message": str(e), "reason": "RequestEntityTooLarge"})
        except ManifestError as e:
            return self._reply(422, {"message": str(e), "reason": "Invalid"})
        except ForbiddenError as e:
            return self._forbidden(str(e))
        except ClusterError as e:
            return self._reply(409, {"message": str(e), "reason": "Conflict"})
        except (KeyError, TypeError, ValueError) as e:
            return self._reply(400, {"message": f"bad request: {e!r}", "reason": "BadRequest"})
        self._reply(200, body)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, path: Path, api: ApiServer) -> None:
        self.api = api
        self.path = path
        super().__init__(str(path), Handler)

    def server_bind(self) -> None:
        super().server_bind()
        self.path.chmod(0o600)  # root's only: pods reach the cluster through the Kubernetes API


def serve_kubernetes_api(api: ApiServer, state_dir: Path, info: Obj) -> list[HttpsServer]:
    """The Kubernetes REST API over HTTPS on loopback and the node-link address, and its kubeconfig."""
    addresses = Addresses(**info["addresses"])
    credentials = api.credentials
    rest = RestApi(api, credentials, api.stopping)

    def start(target: Callable[[], None]) -> None:
        threading.Thread(target=target, name="kubernetes-api", daemon=True).start()

    allowed = (ipaddress.IPv4Network(addresses.pod_cidr), ipaddress.IPv4Network(addresses.link_cidr))
    listeners = serve(rest, credentials, ["127.0.0.1", addresses.host_ip], 0, start, allowed)
    port = listeners[0].server_address[1]
    write_private(state_dir / KUBECONFIG, credentials.kubeconfig(info["name"], f"https://127.0.0.1:{port}").encode())
    api.apply(api_service(api_service_ip(addresses), addresses.host_ip, port))  # pods reach it at kubernetes.default
    log.info("Kubernetes API at https://127.0.0.1:%d and https://%s:%d", port, addresses.host_ip, port)
    return listeners


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The local cluster's daemon (started by 'nginmesh local up').")
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    info = json.loads((args.state_dir / "cluster.json").read_text())
    api = ApiServer(args.state_dir, info)
    https = serve_kubernetes_api(api, args.state_dir, info)
    socket_path = args.state_dir / "api.sock"
    socket_path.unlink(missing_ok=True)
    server = _Server(socket_path, api)
    threading.Thread(target=server.serve_forever, name="api", daemon=True).start()

    def stop(signum: int, frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        api.stopping.set()
        with api.store.changed:
            api.store.changed.notify_all()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("local cluster %s up at %s", info["name"], now())
    try:
        api.run()
    finally:
        api.shutdown()
        server.shutdown()
        for listener in https:
            listener.shutdown()
        socket_path.unlink(missing_ok=True)
        log.info("local cluster %s stopped", info["name"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
