"""The Kubernetes adapter (cluster/k8s.py) against the embedded cluster's real API server, in-process: the node
the kubelet registers, the ingress through it, kubectl-apply semantics, the dry run before a batch, objects in
the versions served, exec and log errors, events, and convergence read from the proxy status a control plane
publishes. (What only a double can show stays on tests/kubefake: see tests/unit/test_k8s_adapter.py.)"""

from __future__ import annotations

import json
import threading
import time

import pytest
from embedded_api import EmbeddedApi

from pytest_nginmesh.cluster.k8s import DEBUG_NAMESPACE, DEBUG_POD_LIFETIME, KubernetesCluster, debug_pod_name
from pytest_nginmesh.cluster.local.network import Addresses
from pytest_nginmesh.cluster.provider import preflight
from pytest_nginmesh.cluster.published_versions import (
    PROXY_STATUS_CONFIGMAP,
    PROXY_STATUS_NAMESPACE,
    PROXY_STATUS_OBSERVED,
    PROXY_STATUS_WATCHED,
)
from pytest_nginmesh.cluster.versions import INITIALIZERS_REMOVED
from pytest_nginmesh.errors import ClusterError, NotFoundError, WaitTimeout
from pytest_nginmesh.kube import Obj, ObjectKey, read_manifest_file
from pytest_nginmesh.mesh.istio_crds import istio_crds
from pytest_nginmesh.mesh.manifests import FIXTURES
from pytest_nginmesh.profiles import get_profile


def node_ip(embedded_api: EmbeddedApi) -> str:
    return Addresses(**embedded_api.server.info["addresses"]).node_ip


def test_the_kubelet_registers_its_node_as_a_kubelet_does(adapter: KubernetesCluster,
                                                          embedded_api: EmbeddedApi) -> None:
    [node] = adapter.list_objects("Node")
    name = node["metadata"]["name"]
    assert name == f"{embedded_api.server.info['name']}-node"
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": node_ip(embedded_api)},
                                           {"type": "Hostname", "address": name}]
    [ready] = node["status"]["conditions"]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "True", "KubeletReady")
    served = adapter.api.request("GET", "/version")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == served["gitVersion"]


def test_the_ingress_is_the_nodes_internal_ip_and_the_node_port(adapter: KubernetesCluster,
                                                                embedded_api: EmbeddedApi) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}},
                   {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "istio-ingress", "namespace": "istio-system"},
                    "spec": {"type": "LoadBalancer", "selector": {"istio": "ingress"},
                             "ports": [{"name": "http", "port": 80, "nodePort": 31380}]}}])
    tried: list[tuple[str, int]] = []
    adapter.is_reachable = lambda host, port: tried.append((host, port)) is None  # no traffic leaves the test
    assert adapter.ingress_url() == f"http://{node_ip(embedded_api)}:31380"
    assert tried == [(node_ip(embedded_api), 31380)]


def deployment(image: str, env: list[Obj]) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image, "env": env}]}}}}


def inject_by_hand(api: EmbeddedApi) -> None:
    """What an injector does to a stored workload: a container and an annotation nobody applied."""

    def add_sidecar(obj: Obj) -> None:
        template = obj["spec"]["template"]
        template["spec"]["containers"].append({"name": "istio-proxy", "image": "nginmesh/proxy_debug:0.2.12"})
        template["metadata"].setdefault("annotations", {})["injected-by"] = "hand"

    api.server.store.update(ObjectKey("Deployment", "default", "web"), add_sidecar)


def test_reapplying_keeps_what_others_added_and_drops_what_the_manifest_no_longer_sets(
        adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    first = deployment("nginx:1", [{"name": "A", "value": "1"}, {"name": "DEBUG", "value": "1"}])
    assert adapter.apply([first]) == [{"object": "deployment/default/web", "action": "created"}]
    inject_by_hand(embedded_api)
    second = deployment("nginx:2", [{"name": "A", "value": "2"}])
    del second["metadata"]["labels"]["tier"]
    assert adapter.apply([second]) == [{"object": "deployment/default/web", "action": "configured"}]
    live = adapter.get("Deployment", "web")
    assert live is not None
    containers = {c["name"]: c for c in live["spec"]["template"]["spec"]["containers"]}
    assert sorted(containers) == ["istio-proxy", "web"], "the injected sidecar stays, as with kubectl apply"
    assert live["spec"]["template"]["metadata"]["annotations"] == {"injected-by": "hand"}
    assert containers["web"]["image"] == "nginx:2"
    assert containers["web"]["env"] == [{"name": "A", "value": "2"}], "DEBUG was applied before and is gone now"
    assert live["metadata"]["labels"] == {"app": "web"}


def test_reapplying_a_service_keeps_its_cluster_ip_and_node_ports(adapter: KubernetesCluster,
                                                                  embedded_api: EmbeddedApi) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "front", "namespace": "default"},
               "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}
    adapter.apply([service])

    def allocate(obj: Obj) -> None:  # what the service controller does (no controller runs in-process)
        obj["spec"]["clusterIP"] = "10.2.0.10"
        obj["spec"]["ports"][0]["nodePort"] = 30080

    embedded_api.server.store.update(ObjectKey("Service", "default", "front"), allocate)
    adapter.apply([{**service, "spec": {**service["spec"], "selector": {"app": "web2"}}}])
    after = adapter.get("Service", "front")
    assert after is not None and after["spec"]["selector"] == {"app": "web2"}
    assert after["spec"]["clusterIP"] == "10.2.0.10"
    assert after["spec"]["ports"] == [{"name": "http", "port": 80, "nodePort": 30080}]


def test_a_dry_run_finds_a_refused_object_before_anything_is_made(adapter: KubernetesCluster) -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine", "namespace": "default"}}
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": "default"}}
    with pytest.raises(ClusterError, match=r"configmap/default/Bad_Name refused: .*HTTP 422, Invalid"):
        adapter.admit_all([good, bad])
    assert adapter.get("ConfigMap", "fine") is None
    adapter.admit_all([good, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "later"}},
                       {**good, "metadata": {"name": "inside", "namespace": "later"}}])
    assert adapter.list_objects("ConfigMap", "default") == [] and adapter.get("Namespace", "later", "") is None


def running_pod(api: EmbeddedApi, name: str, proxy_ready: bool = True) -> None:
    store = api.server.store
    store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "a"}, {"name": "istio-proxy", "image": "p"}]}})
    statuses = [{"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}},
                {"name": "istio-proxy", "ready": proxy_ready, "restartCount": 0, "state": {"running": {}}}]
    store.update(ObjectKey("Pod", "default", name), lambda p: p.__setitem__(
        "status", {"phase": "Running", "containerStatuses": statuses}))


def publish(adapter: KubernetesCluster, data: dict[str, object], annotations: dict[str, str] | None = None) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": PROXY_STATUS_CONFIGMAP, "namespace": PROXY_STATUS_NAMESPACE,
                                 "annotations": annotations or {}},
                    "data": {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}}])


def test_the_wait_holds_until_the_control_plane_has_seen_this_clients_own_writes(
        adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    # However late the control plane is (a loaded machine), a write of this adapter to a collection it watches
    # is waited for by resourceVersion, a deletion included; a write elsewhere never holds the wait.
    adapter.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROXY_STATUS_NAMESPACE}}])
    converged = {"mesh-version": "v1"}

    def seen(version: int) -> dict[str, str]:
        return {PROXY_STATUS_OBSERVED: str(version), PROXY_STATUS_WATCHED: "/api/v1/services,/api/v1/endpoints"}

    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"ports": [{"port": 9080}]}}
    adapter.apply([service])
    written = int(adapter.get("Service", "reviews")["metadata"]["resourceVersion"])  # type: ignore[index]
    publish(adapter, converged, seen(written - 1))
    with pytest.raises(WaitTimeout, match=f"not yet the write at {written}"):
        adapter.wait_converged(0.5)
    publish(adapter, converged, seen(written))
    adapter.wait_converged(1.0)
    adapter.delete([service])
    with pytest.raises(WaitTimeout, match="not yet the write at"):
        adapter.wait_converged(0.5)  # the deletion came later than the write the control plane has seen
    publish(adapter, converged, seen(written + 100))
    adapter.wait_converged(1.0)
    adapter.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "elsewhere"}, "data": {}}])
    adapter.wait_converged(1.0)


def test_the_wait_holds_until_the_control_plane_has_seen_what_others_wrote_before_it(
        adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    # A controller's write just before the wait (Endpoints once a pod is ready) is read from the collection itself.
    adapter.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROXY_STATUS_NAMESPACE}}])
    watched = {PROXY_STATUS_WATCHED: "/api/v1/services,/api/v1/endpoints"}
    publish(adapter, {"mesh-version": "v1"}, {PROXY_STATUS_OBSERVED: "1", **watched})
    embedded_api.server.store.put({"apiVersion": "v1", "kind": "Endpoints",
                                   "metadata": {"name": "reviews", "namespace": "default"}, "subsets": []})
    written = int(adapter.get("Endpoints", "reviews")["metadata"]["resourceVersion"])  # type: ignore[index]
    with pytest.raises(WaitTimeout, match=f"not yet the write at {written}"):
        adapter.wait_converged(0.5)
    publish(adapter, {"mesh-version": "v1"}, {PROXY_STATUS_OBSERVED: str(written), **watched})
    adapter.wait_converged(1.0)


def test_convergence_is_read_from_the_published_proxy_status(adapter: KubernetesCluster,
                                                            embedded_api: EmbeddedApi) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PROXY_STATUS_NAMESPACE}}])
    running_pod(embedded_api, "a")
    running_pod(embedded_api, "b")
    publish(adapter, {"mesh-version": "v2", "default.a": {"version": "v2"}, "default.b": {"version": "v1"}})
    with pytest.raises(WaitTimeout, match="istio-proxy of b at v1"):
        adapter.wait_converged(0.3)
    publish(adapter, {"mesh-version": "v2", "default.a": {"version": "v2"}, "default.b": {"version": "v2"}})
    adapter.wait_converged(1.0)  # no refresh period waited out: the digest method would need over 6 s
    publish(adapter, {"mesh-version": "v3", "default.a": {"version": "v3"},
                      "default.b": {"version": "v2", "rejectedVersion": "v3", "rejection": "nginx -t failed"}})
    with pytest.raises(ClusterError, match="proxy default/b rejected mesh config v3: nginx -t failed"):
        adapter.wait_converged(1.0)


def test_get_finds_kinds_in_the_api_version_the_server_serves(adapter: KubernetesCluster) -> None:
    adapter.apply([deployment("nginx:1", [])])
    found = adapter.get("Deployment", "web")
    assert found is not None and found["apiVersion"] == "apps/v1"
    assert adapter.get("Pod", "nope") is None
    with pytest.raises(NotFoundError, match=r"the API server serves no RouteRule in config.istio.io/v1alpha2"):
        adapter.list_objects("RouteRule")


def test_route_rules_apply_reapply_and_delete_once_pilots_crds_exist(adapter: KubernetesCluster) -> None:
    rules = read_manifest_file(str(FIXTURES / "routes/route-rule-all-v1.yaml"))
    adapter.apply(istio_crds())  # as Pilot registers them at start
    assert {r["action"] for r in adapter.apply(rules)} == {"created"}
    assert adapter.get("RouteRule", "reviews-default") is not None
    assert {r["action"] for r in adapter.apply(rules)} == {"configured"}
    assert {r["action"] for r in adapter.delete(rules)} == {"deleted"}
    assert {r["action"] for r in adapter.delete(rules)} == {"not found"}


def test_exec_in_a_missing_pod_or_container(adapter: KubernetesCluster) -> None:
    with pytest.raises(NotFoundError, match='pod "gone" not found in namespace "default"'):
        adapter.exec("default", "gone", ["true"], container="app")
    running_pod_of(adapter)
    with pytest.raises(ClusterError, match="exec in default/a refused: container nope is not valid for pod a"):
        adapter.exec("default", "a", ["true"], container="nope")


def running_pod_of(adapter: KubernetesCluster) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "default"},
                    "spec": {"containers": [{"name": "app", "image": "a"}, {"name": "istio-proxy", "image": "p"}]}}])


def test_logs_current_and_previous_default_to_the_first_container(adapter: KubernetesCluster,
                                                                   embedded_api: EmbeddedApi) -> None:
    running_pod_of(adapter)
    logs = embedded_api.server.kubelet.pods_dir / "default_a"
    logs.mkdir(parents=True)
    (logs / "istio-proxy.log").write_text("GET /reviews/0 200\n")
    (logs / "app.log").write_text("started\n")
    assert adapter.logs("default", "a", "istio-proxy") == "GET /reviews/0 200\n"
    assert adapter.logs("default", "a") == "started\n", "as exec does, the first container when none is named"
    with pytest.raises(NotFoundError, match="no previous log for container istio-proxy of pod a"):
        adapter.logs("default", "a", "istio-proxy", previous=True)
    (logs / "istio-proxy.previous.log").write_text("crashed\n")
    assert adapter.logs("default", "a", "istio-proxy", previous=True) == "crashed\n"


def test_events_come_oldest_first(adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    running_pod_of(adapter)
    pod = embedded_api.server.store.get(ObjectKey("Pod", "default", "a"))
    assert pod is not None
    embedded_api.server.store.record_event(pod, "Scheduled", "assigned")
    embedded_api.server.store.record_event(pod, "Started", "started")
    reasons = [e["reason"] for e in adapter.events("default")]
    assert reasons == ["Scheduled", "Started"]


def test_service_urls_are_cluster_addresses_where_the_provider_routes_services(
        adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "front", "namespace": "default"},
                    "spec": {"ports": [{"port": 80}]}}])
    embedded_api.server.store.update(ObjectKey("Service", "default", "front"),
                                     lambda s: s["spec"].__setitem__("clusterIP", "10.2.0.10"))
    assert adapter.service_url("default", "front", 80).startswith("http://127.0.0.1:"), "a service proxy door"
    adapter.services_routed = True
    assert adapter.service_url("default", "front", 80) == "http://10.2.0.10:80"


def test_the_ingress_prefers_a_load_balancer_address_that_answers(adapter: KubernetesCluster,
                                                                  embedded_api: EmbeddedApi) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}},
                   {"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "istio-ingress", "namespace": "istio-system"},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "nodePort": 31380}]}}])
    embedded_api.server.store.update(ObjectKey("Service", "istio-system", "istio-ingress"), lambda s: s.__setitem__(
        "status", {"loadBalancer": {"ingress": [{"ip": "10.9.9.9"}]}}))
    tried: list[tuple[str, int]] = []
    adapter.is_reachable = lambda host, port: tried.append((host, port)) is None and host == "10.9.9.9"
    assert adapter.ingress_url() == "http://10.9.9.9:80"
    assert tried == [("10.9.9.9", 80)]


@pytest.mark.parametrize("profile", ["local", "nginmesh-0.2.12"])
def test_preflight_judges_the_injection_api_by_what_is_served_not_by_the_version(adapter: KubernetesCluster,
                                                                                 profile: str) -> None:
    # The embedded API reports a current Kubernetes and still serves InitializerConfigurations, which a real
    # 1.14+ server never does: the served API decides.
    facts = preflight(adapter.api, get_profile(profile))
    assert facts.version.minor >= INITIALIZERS_REMOVED.minor


def test_a_failed_helper_pod_is_replaced_only_once_it_is_gone(adapter: KubernetesCluster,
                                                               embedded_api: EmbeddedApi) -> None:
    # An earlier run's iptables helper, Failed and without the adapter's labels; a kubelet (played here by a
    # thread) takes a while to remove it once deleted. The new helper must be a new pod, not a patch of the old.
    store = embedded_api.server.store
    node = f"{embedded_api.server.info['name']}-node"
    name = debug_pod_name(node)
    adapter.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEBUG_NAMESPACE}}])
    store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": DEBUG_NAMESPACE},
               "spec": {"nodeName": node, "containers": [{"name": "debug", "image": "nginmesh/proxy_init:0.2.12"}]}})
    old_uid = store.get(ObjectKey("Pod", DEBUG_NAMESPACE, name))["metadata"]["uid"]  # type: ignore[index]
    store.update(ObjectKey("Pod", DEBUG_NAMESPACE, name), lambda p: p.__setitem__("status", {"phase": "Failed"}))
    stop = threading.Event()

    def kubelet() -> None:
        while not stop.wait(0.05):
            pod = store.get(ObjectKey("Pod", DEBUG_NAMESPACE, name))
            if pod is None:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                time.sleep(0.5)  # stopping its containers
                store.delete(ObjectKey("Pod", DEBUG_NAMESPACE, name))
            elif pod["metadata"]["uid"] != old_uid and not pod.get("status", {}).get("containerStatuses"):
                store.update(ObjectKey("Pod", DEBUG_NAMESPACE, name), lambda p: p.__setitem__("status", {
                    "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "debug", "ready": True, "restartCount": 0,
                                           "state": {"running": {}}}]}))

    thread = threading.Thread(target=kubelet, daemon=True)
    thread.start()
    try:
        assert adapter._debug_pod(node) == name
    finally:
        stop.set()
        thread.join(5)
    replaced = store.get(ObjectKey("Pod", DEBUG_NAMESPACE, name))
    assert replaced is not None and replaced["metadata"]["uid"] != old_uid
    assert replaced["spec"]["containers"][0]["command"] == ["sleep", str(DEBUG_POD_LIFETIME)]
