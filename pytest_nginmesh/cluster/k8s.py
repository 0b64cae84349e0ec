"""The Kubernetes adapter of the cluster port: any API server reachable through a kubeconfig.

kind, kubeadm and existing clusters differ only in how the kubeconfig comes to be (see the providers);
this adapter is the same for all of them.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.stream import stream

from ..errors import ClusterError, NotFoundError
from ..injection_policy import PROXY_CONTAINER
from ..kube import Obj, key_of
from ..profiles import AGENT_REFRESH_PERIOD
from ..settings import Timeouts
from .base import Cluster, ExecResult, pod_is_ready, wait_for
from .convert import SUCCESSORS, served_version_of
from .kubeapi import KubeApi, Resource, as_obj
from .published_versions import (
    PROXY_STATUS_CONFIGMAP,
    PROXY_STATUS_NAMESPACE,
    PROXY_STATUS_POLL_INTERVAL,
    published_convergence,
    unseen_writes,
    watched_collections,
)
from .tunnels import PortForward, ServiceProxy

# The apiVersions a kind is looked up in by ``get``, newest first; the first one the server serves wins.
KIND_API_VERSIONS: dict[str, tuple[str, ...]] = {
    "Pod": ("v1",), "Service": ("v1",), "Endpoints": ("v1",), "ConfigMap": ("v1",), "Namespace": ("v1",),
    "Secret": ("v1",), "Node": ("v1",), "Event": ("v1",), "ServiceAccount": ("v1",),
    "Deployment": ("apps/v1", "apps/v1beta2", "extensions/v1beta1"),
    "Ingress": ("networking.k8s.io/v1", "extensions/v1beta1"),
    "RouteRule": ("config.istio.io/v1alpha2",),
    "DestinationPolicy": ("config.istio.io/v1alpha2",),
    "InitializerConfiguration": ("admissionregistration.k8s.io/v1alpha1",),
    "MutatingWebhookConfiguration": ("admissionregistration.k8s.io/v1", "admissionregistration.k8s.io/v1beta1"),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1", "apiextensions.k8s.io/v1beta1"),
}
MANAGED_BY = {"app.kubernetes.io/managed-by": "pytest-nginmesh"}
# What `kubectl apply` records of the manifest it applied, to tell later which fields it stopped setting
# (kubernetes/kubectl pkg/cmd/apply, corev1.LastAppliedConfigAnnotation).
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# An object's annotations hold at most 256 KiB (kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/api/
# validation/objectmeta.go, TotalAnnotationSizeLimitB): a manifest too big to record is applied unrecorded.
ANNOTATIONS_LIMIT = 256 * 1024
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"
# The lists of a pod template whose elements a strategic merge matches by name (x-kubernetes-patch-merge-key
# "name" of PodSpec.containers, .initContainers, .volumes and Container.env in kubernetes/kubernetes
# api/openapi-spec/swagger.json); an element the last manifest had and this one lacks is deleted by name.
NAME_KEYED_LISTS = frozenset({"containers", "initContainers", "volumes", "env"})
# API groups served by kube-apiserver itself: only their types take a strategic merge patch; custom resources
# (RouteRules) take a JSON merge patch (kubernetes/kubernetes apiextensions-apiserver: strategic merge patch is
# "not supported" for custom resources, 415).
BUILTIN_GROUPS = frozenset({"", "apps", "extensions", "batch", "policy", "autoscaling"})
# Helper pods that read pods' iptables live here, one per node, and die on their own after an hour.
DEBUG_NAMESPACE = "pytest-nginmesh"
DEBUG_POD_LIFETIME = 3600
# Finds a process of the container by its ID in /proc/*/cgroup (docker and containerd both put it there)
# and dumps the rules of that process's network namespace.
IPTABLES_OF_CONTAINER = """
for d in /proc/[0-9]*; do
  if grep -qs "$1" "$d/cgroup"; then exec nsenter -t "${d#/proc/}" -n iptables-save; fi
done
echo "no process of container $1 on this node" >&2
exit 3
"""
# What the agent writes for NGINX (--configPath /etc/istio/proxy) and NGINX's own files.
PROXY_CONFIG_DIGEST = ("sh", "-c", "cat /etc/istio/proxy/*.conf /etc/istio/proxy/conf.d/*.conf "
                       "/etc/nginx/nginx.conf /etc/nginx/conf.d/*.conf 2>/dev/null | cksum")
# Nginmesh proxies publish no config version, so convergence is judged by the configs themselves: unchanged
# on every proxy for longer than one full refresh period of the agents (each has polled Pilot at least once
# since the change; profiles.AGENT_REFRESH_PERIOD), plus this margin for rendering and reloading NGINX and
# for reading the configs.
CONVERGENCE_MARGIN = 1.0
CONVERGENCE_POLL_INTERVAL = 1.0
INGRESS_NAMESPACE, INGRESS_SERVICE, INGRESS_PORT = "istio-system", "istio-ingress", 80
PROBE_TIMEOUT = 2.0
# websocket-client waits 3 s for the server's close frame by default; an exec we gave up on must not.
WEBSOCKET_CLOSE_TIMEOUT = 0.5

# A node capability some providers offer: a pod's iptables-save, read on its node without a helper pod.
NodeIptables = Callable[[Obj], str]


class KubernetesCluster(Cluster):
    """A cluster behind a Kubernetes API server."""

    def __init__(self, api: KubeApi, name: str, timeouts: Timeouts, debug_image: str,
                 probe: Callable[[str, int], bool] | None = None,
                 refresh_period: float = AGENT_REFRESH_PERIOD, node_iptables: NodeIptables | None = None,
                 services_routed: bool = False) -> None:
        self.api = api
        self.node_iptables = node_iptables
        self.services_routed = services_routed
        self.refresh_period = refresh_period
        self.is_reachable = probe or reachable
        self.name = name
        self.timeouts = timeouts
        self.debug_image = debug_image
        self.core = k8s_client.CoreV1Api(api.client)
        self._service_proxy: ServiceProxy | None = None
        self._port_forward: PortForward | None = None
        self._ingress_url: str | None = None
        self._debug_pods: dict[str, str] = {}
        # Collection path -> the highest resourceVersion this adapter's writes there left (PROXY_STATUS_OBSERVED).
        self._written: dict[str, int] = {}
        # kubernetes.stream swaps the ApiClient's request method while it opens a WebSocket: one at a time.
        self._exec_setup = threading.Lock()
        self._created_debug_namespace = False

    # -- objects ------------------------------------------------------------------------------------
    def list_pods(self, namespace: str | None = None) -> list[Obj]:
        return self.list_objects("Pod", namespace)

    def list_objects(self, kind: str, namespace: str | None = None, selector: str | None = None) -> list[Obj]:
        resource = self._resource_of_kind(kind)
        listing = self.api.request("GET", resource.path(namespace),
                                   query={"labelSelector": selector} if selector else None)
        return [{"apiVersion": resource.api_version, "kind": kind, **item} for item in listing.get("items") or []]

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        resource = self._resource_of_kind(kind)
        try:
            obj = as_obj(self.api.request("GET", resource.path(namespace, name)))
        except NotFoundError:
            return None
        return {"apiVersion": resource.api_version, "kind": kind, **obj}

    def live(self, obj: Obj) -> Obj | None:
        """The cluster's current copy of ``obj`` (looked up by its own apiVersion), or None."""
        resource = self._resource_for(self._served(obj))
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        try:
            return as_obj(self.api.request("GET", resource.path(namespace, obj["metadata"]["name"])))
        except NotFoundError:
            return None

    def _resource_of_kind(self, kind: str) -> Resource:
        for api_version in KIND_API_VERSIONS.get(kind, ()):
            if self.api.serves(api_version, kind):
                return self.api.resource(api_version, kind)
        raise NotFoundError(f"the API server serves no {kind} in {', '.join(KIND_API_VERSIONS.get(kind, ('?',)))}")

    def apply(self, objects: list[Obj]) -> list[Obj]:
        """Create each object, or patch it as ``kubectl apply`` does: what the last applied manifest set and this
        one does not is removed, and what the server or an injector added (a clusterIP, a sidecar) stays."""
        results = []
        for original in objects:
            obj = with_last_applied(self._served(original))
            resource = self._resource_for(obj)
            namespace = (obj.get("metadata") or {}).get("namespace") or "default"
            name = obj["metadata"]["name"]
            try:
                self._wrote(resource, self.api.request("POST", resource.path(namespace), body=obj))
                action = "created"
            except ClusterError as e:
                if e.status.get("reason") != "AlreadyExists":
                    raise ClusterError(f"{key_of(obj)} refused: {e}", e.status) from None
                current = as_obj(self.api.request("GET", resource.path(namespace, name)))
                strategic = is_builtin_group(obj["apiVersion"])
                patch = three_way_patch(last_applied(current), obj, strategic)
                try:
                    self._wrote(resource, self.api.request(
                        "PATCH", resource.path(namespace, name), body=patch,
                        content_type=STRATEGIC_MERGE_PATCH if strategic else MERGE_PATCH))
                except ClusterError as e:
                    raise ClusterError(f"{key_of(obj)} refused: {e}", e.status) from None
                action = "configured"
            if obj["kind"] == "CustomResourceDefinition":
                self.api.forget_resources()
            results.append({"object": str(key_of(obj)), "action": action})
        return results

    def admit_all(self, objects: list[Obj]) -> None:
        """Refuse (ClusterError) before anything is made when the server would refuse one of the objects not
        stored yet: a server-side dry run of each (Kubernetes 1.13 and later serve ``dryRun``). Objects whose
        namespace or resource the same objects create are left to the apply itself."""
        namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
        for original in objects:
            obj = with_last_applied(self._served(original))
            namespace = (obj.get("metadata") or {}).get("namespace") or "default"
            if not self.api.serves(obj["apiVersion"], obj["kind"]):
                continue
            resource = self.api.resource(obj["apiVersion"], obj["kind"])
            if resource.namespaced and namespace in namespaces and self.get("Namespace", namespace, "") is None:
                continue
            try:
                self.api.request("POST", resource.path(namespace), body=obj, query={"dryRun": "All"})
            except ClusterError as e:
                if e.status.get("reason") != "AlreadyExists":
                    raise ClusterError(f"{key_of(obj)} refused: {e}", e.status) from None

    def _served(self, obj: Obj) -> Obj:
        """``obj`` in an API version this server serves (old manifests on new servers)."""
        return served_version_of(obj, self.api.serves) if obj["kind"] in SUCCESSORS else obj

    def _wrote(self, resource: Resource, answer: object) -> None:
        """Remember the resourceVersion a write left (a deletion's, for a DELETE), per collection."""
        version = str(((answer if isinstance(answer, dict) else {}).get("metadata") or {}).get("resourceVersion", ""))
        if version.isdigit():
            path = resource.path()
            self._written[path] = max(self._written.get(path, 0), int(version))

    def _resource_for(self, obj: Obj) -> Resource:
        """The resource serving ``obj``; right after its CRD was created, wait (bounded) until it is served."""

        def probe() -> tuple[Resource | None, str]:
            try:
                return self.api.resource(obj["apiVersion"], obj["kind"]), ""
            except ClusterError as e:
                self.api.forget_resources()
                return None, str(e)

        return wait_for(f"the API server to serve {obj['kind']} ({obj['apiVersion']})", probe,
                        self.timeouts.api_request, interval=0.5)

    def delete(self, objects: list[Obj]) -> list[Obj]:
        results = []
        for obj in objects:
            resource = self._resource_for(self._served(obj))
            namespace = (obj.get("metadata") or {}).get("namespace") or "default"
            try:
                self._wrote(resource, self.api.request("DELETE", resource.path(namespace, obj["metadata"]["name"]),
                                                       query={"propagationPolicy": "Background"}))
                action = "deleted"
            except NotFoundError:
                action = "not found"
            results.append({"object": str(key_of(obj)), "action": action})
        return results

    # -- containers ---------------------------------------------------------------------------------
    def exec(self, namespace: str, pod: str, command: Sequence[str], container: str | None = None,
             timeout: float | None = None) -> ExecResult:
        limit = timeout or self.timeouts.exec
        container = container or self._first_container(namespace, pod)
        try:
            with self._exec_setup:
                response = stream(self.core.connect_get_namespaced_pod_exec, pod, namespace, command=list(command),
                                  container=container, stderr=True, stdin=False, stdout=True, tty=False,
                                  _preload_content=False, _request_timeout=self.api.timeout)
        except k8s_client.ApiException as e:
            raise exec_error(e, namespace, pod) from None
        stdout, stderr = [], []
        deadline = time.monotonic() + limit
        try:
            while response.is_open():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClusterError(f"{' '.join(command)} in {namespace}/{pod} did not finish within {limit:g}s")
                response.update(timeout=min(1.0, remaining))
                stdout.append(response.read_channel(1))
                stderr.append(response.read_channel(2))
            stdout.append(response.read_channel(1))
            stderr.append(response.read_channel(2))
            code = response.returncode
        finally:
            response.close(timeout=WEBSOCKET_CLOSE_TIMEOUT)
        return ExecResult(tuple(command), int(code or 0), "".join(stdout), "".join(stderr))

    def _first_container(self, namespace: str, pod: str) -> str:
        found = self.get("Pod", pod, namespace)
        if found is None:
            raise NotFoundError(f'pod "{pod}" not found in namespace "{namespace}"')
        return str(found["spec"]["containers"][0]["name"])

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        container = container or self._first_container(namespace, pod)
        query = {"container": container}
        if previous:
            query["previous"] = "true"
        try:
            return str(self.api.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query=query,
                                        raw=True))
        except ClusterError as e:
            if previous and "not found" in str(e):
                raise NotFoundError(f"no previous log for container {container} of pod {pod}") from None
            raise

    def events(self, namespace: str | None = None) -> list[Obj]:
        return sorted(self.list_objects("Event", namespace), key=event_time)

    # -- traffic ------------------------------------------------------------------------------------
    def service_url(self, namespace: str, service: str, port: int) -> str:
        """The service's cluster address where the provider routes the service range to this host
        (``services_routed``, a node capability), else a loopback door into the API server's service proxy."""
        svc = self.service_with_port(namespace, service, port)
        cluster_ip = (svc.get("spec") or {}).get("clusterIP")
        if self.services_routed and cluster_ip and cluster_ip != "None":
            return f"http://{cluster_ip}:{port}"
        if self._service_proxy is None:
            self._service_proxy = ServiceProxy(self.api)
        return self._service_proxy.url(namespace, service, port)

    def ingress_url(self) -> str:
        """The LoadBalancer address; while that is pending, a node's InternalIP and the NodePort; when
        neither answers from here, a port-forward to an ingress pod. Chosen once per adapter."""
        if self._ingress_url is None:
            self._ingress_url = self._choose_ingress_url()
        return self._ingress_url

    def _choose_ingress_url(self) -> str:
        svc = self.get("Service", INGRESS_SERVICE, INGRESS_NAMESPACE)
        if svc is None:
            raise NotFoundError(f"service {INGRESS_SERVICE} not found in {INGRESS_NAMESPACE}: is the mesh installed?")
        port = next((p for p in svc["spec"].get("ports") or [] if p.get("port") == INGRESS_PORT), None)
        if port is None:
            raise ClusterError(f"service {INGRESS_SERVICE} has no port {INGRESS_PORT}")
        candidates = [(address, INGRESS_PORT) for address in load_balancer_addresses(svc)]
        if port.get("nodePort"):
            candidates += [(address, int(port["nodePort"])) for address in self._node_addresses()]
        for host, number in candidates:
            if self.is_reachable(host, number):
                return f"http://{host}:{number}"
        pod = self._ready_pod(INGRESS_NAMESPACE, svc["spec"].get("selector") or {})
        self._port_forward = PortForward(self.api, INGRESS_NAMESPACE, pod["metadata"]["name"],
                                         target_port(port, pod))
        return self._port_forward.url

    def _node_addresses(self) -> list[str]:
        return [a["address"] for node in self.list_objects("Node")
                for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == "InternalIP"]

    def _ready_pod(self, namespace: str, selector: dict[str, str]) -> Obj:
        pods = [p for p in self.pods(namespace, selector) if pod_is_ready(p)]
        if not pods:
            raise ClusterError(f"no ready pod behind {selector} in {namespace} to forward a port to")
        return pods[0]

    # -- data plane ---------------------------------------------------------------------------------
    def wait_converged(self, timeout: float) -> None:
        """Through the config versions the proxies publish (PROXY_STATUS_CONFIGMAP) where the control plane
        publishes them, once it has seen every change made before this call to the collections it watches (this
        adapter's writes, and what the collections show of others'); elsewhere (real Nginmesh) by the
        configurations themselves staying the same."""
        began = time.monotonic()
        status = self._proxy_status()
        if status is not None:
            changes = self._changes_so_far(status)
            self._wait_published(max(0.0, timeout - (time.monotonic() - began)), changes)
        else:
            self._wait_stable_configs(timeout)

    def _proxy_status(self) -> Obj | None:
        return self.get("ConfigMap", PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE)

    def _changes_so_far(self, proxy_status: Obj) -> dict[str, int]:
        """The latest resourceVersion of each watched collection: this adapter's writes (deletions included) and
        the objects the collection holds now, whoever wrote them."""
        latest = dict(self._written)
        for path in watched_collections(proxy_status):
            items = self.api.request("GET", path).get("items") or []
            versions = [int(v) for v in (str((i.get("metadata") or {}).get("resourceVersion", "")) for i in items)
                        if v.isdigit()]
            latest[path] = max([latest.get(path, 0), *versions])
        return latest

    def _wait_published(self, timeout: float, changes: dict[str, int]) -> None:
        def probe() -> tuple[str | None, str]:
            configmap = self._proxy_status()
            if configmap is None:
                return None, f"configmap {PROXY_STATUS_NAMESPACE}/{PROXY_STATUS_CONFIGMAP} is gone"
            unseen = unseen_writes(configmap, changes)
            if unseen:
                return None, unseen
            return published_convergence(dict(configmap.get("data") or {}), self.list_pods())

        wait_for("every proxy to apply the current mesh config", probe, timeout, interval=PROXY_STATUS_POLL_INTERVAL)

    def _wait_stable_configs(self, timeout: float) -> None:
        """Until every ready proxy's NGINX configuration has stayed the same for longer than the agents' refresh
        period (plus a margin) since this call: then every agent has polled Pilot after the change and runs it.
        The span is counted from the end of the poll that first saw a configuration to the start of the
        latest one, so every proxy was read twice that far apart."""
        needed = self.refresh_period + CONVERGENCE_MARGIN
        seen: list[tuple[tuple[str, str], ...]] = []
        stable_since = [0.0]

        def probe() -> tuple[bool | None, str]:
            started = time.monotonic()
            configs = tuple(sorted((p["metadata"]["namespace"] + "/" + p["metadata"]["name"], self._config_digest(p))
                                   for p in self.list_pods() if serves_traffic(p)))
            if not seen or configs != seen[0]:
                seen[:] = [configs]
                stable_since[0] = time.monotonic()
                return None, f"the configuration of {len(configs)} proxies changed"
            steady = started - stable_since[0]
            if steady > needed:
                return True, ""
            return None, f"{len(configs)} proxies unchanged for {steady:.1f}s of the {needed:g}s needed"

        wait_for("every proxy's configuration to stop changing", probe, timeout, interval=CONVERGENCE_POLL_INTERVAL)

    def _config_digest(self, pod: Obj) -> str:
        try:
            result = self.exec(pod["metadata"]["namespace"], pod["metadata"]["name"], PROXY_CONFIG_DIGEST,
                               container=PROXY_CONTAINER)
        except ClusterError as e:
            return f"unreadable: {e}"
        return result.stdout.strip()

    def pod_iptables(self, namespace: str, pod: str) -> str:
        """Dumped from a privileged helper pod on the pod's node (hostPID, nsenter into the pod's network
        namespace): the proxy's own container runs as uid 1337 without the capability iptables needs."""
        target = self.get("Pod", pod, namespace)
        if target is None:
            raise NotFoundError(f'pod "{pod}" not found in namespace "{namespace}"')
        if self.node_iptables is not None:
            return self.node_iptables(target)
        container_id = next((s["containerID"].split("://", 1)[-1]
                             for s in (target.get("status") or {}).get("containerStatuses") or []
                             if s.get("containerID") and "running" in (s.get("state") or {})), None)
        if container_id is None:
            raise ClusterError(f"pod {namespace}/{pod} has no running container to find its network namespace by")
        helper = self._debug_pod(str(target["spec"]["nodeName"]))
        result = self.exec(DEBUG_NAMESPACE, helper, ["sh", "-c", IPTABLES_OF_CONTAINER, "sh", container_id])
        return result.check().stdout

    def _debug_pod(self, node: str) -> str:
        if node in self._debug_pods:
            return self._debug_pods[node]
        if self.get("Namespace", DEBUG_NAMESPACE, "") is None:
            self.apply([{"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": DEBUG_NAMESPACE, "labels": dict(MANAGED_BY)}}])
            self._created_debug_namespace = True
        name = debug_pod_name(node)
        earlier = self.get("Pod", name, DEBUG_NAMESPACE)
        if earlier is not None and (earlier.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
            # An earlier run's helper that reached its activeDeadlineSeconds (or failed): a new one replaces it.
            self.delete([earlier])
            wait_for(f"pod {DEBUG_NAMESPACE}/{name} to be deleted", lambda: (
                (True, "") if self.get("Pod", name, DEBUG_NAMESPACE) is None else (None, "still there")),
                self.timeouts.pod_ready)
        self.apply([debug_pod(name, node, self.debug_image)])
        self.wait_pods_ready(DEBUG_NAMESPACE, self.timeouts.pod_ready, {"nginmesh.test/debug-node": name})
        self._debug_pods[node] = name
        return name

    def close(self) -> None:
        for tunnel in (self._service_proxy, self._port_forward):
            if tunnel is not None:
                tunnel.close()
        self._service_proxy = self._port_forward = None
        if self._debug_pods:
            self.delete([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": DEBUG_NAMESPACE}}
                         for name in self._debug_pods.values()])
            self._debug_pods.clear()
        if self._created_debug_namespace:
            self.delete([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEBUG_NAMESPACE}}])
            self._created_debug_namespace = False


def with_last_applied(obj: Obj) -> Obj:
    """``obj`` annotated with itself, as ``kubectl apply`` records what it applied; unrecorded when the record
    would not fit in the annotations (a later apply then removes nothing it set)."""
    meta = obj.get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    manifest = {**obj, "metadata": {**meta, "annotations": annotations} if annotations else
                {k: v for k, v in meta.items() if k != "annotations"}}
    recorded = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    size = len(LAST_APPLIED) + len(recorded) + sum(len(k) + len(str(v)) for k, v in annotations.items())
    if size > ANNOTATIONS_LIMIT:
        return manifest
    return {**obj, "metadata": {**meta, "annotations": {**annotations, LAST_APPLIED: recorded}}}


def last_applied(current: Obj) -> Obj:
    """The manifest last applied to ``current`` (empty when none was recorded, or it is unreadable)."""
    text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    try:
        recorded = json.loads(text) if text else {}
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def three_way_patch(last: Obj, desired: Obj, strategic: bool) -> Obj:
    """``kubectl apply``'s patch: the desired manifest, plus a deletion (null; a ``$patch: delete`` element in a
    list keyed by name) of everything the last applied manifest set and this one does not. Fields nobody
    applied (a clusterIP, an injected sidecar container) are not in the patch and stay as they are."""
    patch: Obj = {}
    for key, value in desired.items():
        before = last.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            patch[key] = three_way_patch(before, value, strategic)
        elif strategic and key in NAME_KEYED_LISTS and isinstance(value, list) and isinstance(before, list):
            patch[key] = named_list_patch(before, value)
        else:
            patch[key] = value
    for key in last:
        if key not in desired:
            patch[key] = None
    return patch


def named_list_patch(before: list[Any], desired: list[Any]) -> list[Any]:
    previous = {item.get("name"): item for item in before if isinstance(item, dict)}
    items = [three_way_patch(previous.get(item.get("name")) or {}, item, True) if isinstance(item, dict) else item
             for item in desired]
    wanted = {item.get("name") for item in desired if isinstance(item, dict)}
    return items + [{"name": name, "$patch": "delete"} for name in previous if name not in wanted]


def is_builtin_group(api_version: str) -> bool:
    group = api_version.rpartition("/")[0]
    return group in BUILTIN_GROUPS or group.endswith(".k8s.io")


def debug_pod_name(node: str) -> str:
    return "netdebug-" + hashlib.sha256(node.encode()).hexdigest()[:10]


def debug_pod(name: str, node: str, image: str) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": DEBUG_NAMESPACE,
                     "labels": {**MANAGED_BY, "nginmesh.test/debug-node": name},
                     "annotations": {"sidecar.istio.io/inject": "false"}},
        "spec": {"nodeName": node, "hostPID": True, "hostNetwork": True, "restartPolicy": "Never",
                 "activeDeadlineSeconds": DEBUG_POD_LIFETIME, "terminationGracePeriodSeconds": 0,
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "debug", "image": image, "command": ["sleep", str(DEBUG_POD_LIFETIME)],
                                 "securityContext": {"privileged": True}}]},
    }


def exec_error(error: k8s_client.ApiException, namespace: str, pod: str) -> ClusterError:
    """A refused exec as one line: the server's Status message when the handshake carried one."""
    text = str(error.body or error.reason or error).strip()
    status_start = text.rfind('{"kind": "Status"')
    try:
        message = str(json.loads(text[status_start:])["message"]) if status_start >= 0 else ""
    except (ValueError, KeyError, TypeError):
        message = ""
    lines = text.splitlines()
    message = message or (lines[-1] if lines else "no detail")
    if (error.status == 404 or "404" in str(error.reason)) and "container" not in message:
        return NotFoundError(f'pod "{pod}" not found in namespace "{namespace}" ({message})')
    return ClusterError(f"exec in {namespace}/{pod} refused: {message}")


def serves_traffic(pod: Obj) -> bool:
    """A running pod whose proxy is ready: the ones whose configuration the mesh must converge."""
    if (pod.get("status") or {}).get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
        return False
    return any(s.get("name") == PROXY_CONTAINER and s.get("ready")
               for s in (pod.get("status") or {}).get("containerStatuses") or [])


def event_time(event: Obj) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
               or event["metadata"].get("creationTimestamp") or "")


def load_balancer_addresses(service: Obj) -> list[str]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i.get("ip") or i.get("hostname")) for i in ingress if i.get("ip") or i.get("hostname")]


def target_port(port: Obj, pod: Obj) -> int:
    """The container port a service port leads to in ``pod`` (named target ports resolved)."""
    target = str(port.get("targetPort", port["port"]))
    if target.isdigit():
        return int(target)
    for container in pod["spec"]["containers"]:
        for candidate in container.get("ports") or []:
            if candidate.get("name") == target:
                return int(candidate["containerPort"])
    raise ClusterError(f"pod {pod['metadata']['name']} has no container port named {target!r}")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            return True
    except OSError:
        return False
