"""Traffic capture: the rules in every injected pod send its traffic through the proxy, and live requests show it."""

from __future__ import annotations

import pytest

from pytest_nginmesh.checks.findings import explain
from pytest_nginmesh.checks.iptables import CaptureExpectations, check_rules
from pytest_nginmesh.checks.sidecar import SidecarExpectations
from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.bookinfo_instance import BookinfoInstance
from pytest_nginmesh.mesh.injection import INIT_CONTAINER, PROXY_CONTAINER
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.traffic import (
    marker_absent,
    new_marker,
    request_with_curl,
    request_with_python,
    wait_for_marker,
)

DETAILS_URL = "http://details:9080/details/0"


def injected_pods(cluster: Cluster, namespace: str) -> list[Obj]:
    return [p for p in cluster.list_pods(namespace)
            if any(c["name"] == PROXY_CONTAINER for c in p["spec"]["containers"])]


def include_ranges(pod: Obj) -> tuple[str, ...]:
    """The -i ranges the mesh gave this pod's istio-init, if any."""
    init: Obj = next((c for c in pod["spec"].get("initContainers") or [] if c["name"] == INIT_CONTAINER), {})
    args = [str(a) for a in init.get("args") or []]
    if "-i" in args and args.index("-i") + 1 < len(args):
        return tuple(r for r in args[args.index("-i") + 1].split(",") if r)
    return ()


def pod_name(cluster: Cluster, namespace: str, app: str) -> str:
    for pod in injected_pods(cluster, namespace):
        if pod["metadata"]["labels"].get("app") == app:
            return str(pod["metadata"]["name"])
    pytest.fail(f"no injected {app} pod in namespace {namespace}")


@pytest.mark.conformance(name="capture-rules-in-every-injected-pod", features=["traffic-capture"])
def test_capture_rules_of_every_injected_pod(mesh_cluster: Cluster, bookinfo: BookinfoInstance,
                                             sidecar_expectations: SidecarExpectations) -> None:
    namespace = bookinfo.namespace
    pods = injected_pods(mesh_cluster, namespace)
    assert pods, "no injected pods to check"
    findings = []
    for pod in pods:
        name = pod["metadata"]["name"]
        dump = mesh_cluster.pod_iptables(namespace, name)
        expect = CaptureExpectations(sidecar_expectations.proxy_port, sidecar_expectations.proxy_uid,
                                     include_ranges(pod), pod["status"]["podIP"])
        findings += check_rules(dump, expect, subject=f"pod {namespace}/{name}")[0]
    assert not findings, explain(findings)


def sent_from_productpage(cluster: Cluster, namespace: str) -> str:
    """A marked GET to details from the productpage app container (through its sidecar); returns the marker."""
    marker = new_marker()
    status = request_with_python(cluster, namespace, pod_name(cluster, namespace, "productpage"), "productpage",
                                 DETAILS_URL, marker)
    assert status == 200
    return marker


@pytest.mark.conformance(name="capture-outbound-through-senders-sidecar", features=["traffic-capture"])
def test_outbound_request_is_seen_by_the_senders_sidecar(mesh_cluster: Cluster, bookinfo: BookinfoInstance,
                                                          nginmesh_settings: Settings) -> None:
    namespace = bookinfo.namespace
    marker = sent_from_productpage(mesh_cluster, namespace)
    wait_for_marker(mesh_cluster, namespace, pod_name(mesh_cluster, namespace, "productpage"), PROXY_CONTAINER,
                    marker, nginmesh_settings.timeouts.http_request)


@pytest.mark.conformance(name="capture-inbound-through-receivers-sidecar", features=["traffic-capture"])
def test_inbound_request_reaches_the_app_through_the_receivers_sidecar(mesh_cluster: Cluster,
                                                                        bookinfo: BookinfoInstance,
                                                                        nginmesh_settings: Settings) -> None:
    namespace = bookinfo.namespace
    marker = sent_from_productpage(mesh_cluster, namespace)
    wait_for_marker(mesh_cluster, namespace, pod_name(mesh_cluster, namespace, "details"), PROXY_CONTAINER, marker,
                    nginmesh_settings.timeouts.http_request)


@pytest.mark.conformance(name="capture-proxy-own-traffic-not-redirected", features=["traffic-capture"])
def test_the_proxys_own_traffic_is_not_redirected(mesh_cluster: Cluster, bookinfo: BookinfoInstance,
                                                  nginmesh_settings: Settings) -> None:
    namespace = bookinfo.namespace
    sender, receiver = pod_name(mesh_cluster, namespace, "productpage"), pod_name(mesh_cluster, namespace, "details")
    marker = new_marker()
    status = request_with_curl(mesh_cluster, namespace, sender, PROXY_CONTAINER, DETAILS_URL, marker)
    assert status == 200
    wait_for_marker(mesh_cluster, namespace, receiver, PROXY_CONTAINER, marker, nginmesh_settings.timeouts.http_request)
    assert marker_absent(mesh_cluster, namespace, sender, PROXY_CONTAINER, marker), (
        "the proxy's own request went through its own sidecar: the uid bypass is missing")
