"""The Kubernetes adapter (cluster/k8s.py) against the embedded cluster's real API server, in-process: the node
the kubelet registers, the ingress through it, kubectl-apply semantics, the dry run before a batch, and
convergence read from the proxy status a control plane publishes."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from embedded_api import EmbeddedApi

from pytest_nginmesh.cluster.k8s import PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE, KubernetesCluster
from pytest_nginmesh.cluster.kubeapi import KubeApi, choose_kubeconfig
from pytest_nginmesh.cluster.local.network import Addresses
from pytest_nginmesh.errors import ClusterError, WaitTimeout
from pytest_nginmesh.kube import Obj, ObjectKey
from pytest_nginmesh.settings import Timeouts


@pytest.fixture
def adapter(embedded_api: EmbeddedApi) -> Iterator[KubernetesCluster]:
    api = KubeApi(choose_kubeconfig(embedded_api.kubeconfig, None), 10.0)
    cluster = KubernetesCluster(api, "unit", Timeouts(pod_ready=5, api_request=5), "nginmesh/proxy_init:0.2.12")
    yield cluster
    cluster.close()


def node_ip(embedded_api: EmbeddedApi) -> str:
    return Addresses(**embedded_api.server.info["addresses"]).node_ip


def test_the_kubelet_registers_its_node_as_a_kubelet_does(adapter: KubernetesCluster,
                                                          embedded_api: EmbeddedApi) -> None:
    [node] = adapter.list_objects("Node")
    name = node["metadata"]["name"]
    assert name == "unit-node" and node["metadata"]["labels"]["kubernetes.io/hostname"] == name
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


def publish(adapter: KubernetesCluster, data: dict[str, object]) -> None:
    adapter.apply([{"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": PROXY_STATUS_CONFIGMAP, "namespace": PROXY_STATUS_NAMESPACE},
                    "data": {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}}])


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
