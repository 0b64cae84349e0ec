"""The local cluster's daemon: the Kubernetes API over HTTPS, admission, controllers and the kubelet."""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from ...errors import ManifestError, NginmeshError, NotFoundError
from ...kube import CLUSTER_SCOPED_KINDS, Obj, ObjectKey, key_of
from ...validation import Invalid, object_errors, shape_problem
from .controllers import Controllers, mark_deleted
from .kubelet import Kubelet, exec_in_container
from .network import Addresses, NodeNetwork
from .paths import inside
from .plugins import AdmissionPlugin, installed_plugins
from .rest.pki import Credentials
from .rest.resources import served_resource
from .rest.server import HttpsServer, RestApi, serve
from .serviceaccounts import api_service, mount_token
from .store import Store, now
from .system import write_private
from .webhooks import MutatingWebhooks

log = logging.getLogger("nginmesh.local")

BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public")
KUBECONFIG = "kubeconfig"


class Admission:
    """What the API server checks and mutates before an object is stored."""

    def __init__(self, store: Store, ca_pem: str, plugins: list[AdmissionPlugin]) -> None:
        self.store = store
        self.ca_pem = ca_pem
        self.plugins = plugins
        self.webhooks = MutatingWebhooks(store.get, lambda: store.objects("MutatingWebhookConfiguration"),
                                         served_resource)

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
        return self.webhooks.mutate(obj, old)  # after the built-in plug-ins, as kube-apiserver orders them

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
    """Everything the daemon holds; the REST API (rest/server.py) calls into it as its Backend."""

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
        self.admission = Admission(self.store, ca_pem, installed_plugins())
        self.controllers = Controllers(self.store, self.kubelet, self.network, ca_pem,
                                       lambda pod: self.admit(pod, None))
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
        for listener in https:
            listener.shutdown()
        log.info("local cluster %s stopped", info["name"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
