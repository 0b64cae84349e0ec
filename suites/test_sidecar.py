"""Sidecar presence: every workload pod carries a conformant sidecar; control-plane and opted-out pods none."""

from __future__ import annotations

import pytest

from pytest_nginmesh.checks.findings import explain
from pytest_nginmesh.checks.sidecar import SidecarExpectations, check_pod
from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.mesh.bookinfo_instance import BookinfoInstance
from pytest_nginmesh.mesh.injection import INJECT_ANNOTATION, PROXY_CONTAINER
from pytest_nginmesh.mesh.manifests import BOOKINFO_DEPLOYMENTS, CONTROL_PLANE_NAMESPACE
from pytest_nginmesh.settings import Settings


@pytest.mark.conformance(name="sidecar-every-deployment-has-a-pod", features=["sidecar-injection"])
def test_every_bookinfo_deployment_has_a_pod(mesh_cluster: Cluster, bookinfo: BookinfoInstance) -> None:
    pods = mesh_cluster.list_pods(bookinfo.namespace)
    running = {f"{p['metadata']['labels'].get('app')}-{p['metadata']['labels'].get('version')}" for p in pods}
    assert set(BOOKINFO_DEPLOYMENTS) <= running


@pytest.mark.conformance(name="sidecar-conformant-in-every-workload-pod", features=["sidecar-injection"])
def test_every_workload_pod_carries_a_conformant_sidecar(mesh_cluster: Cluster, bookinfo: BookinfoInstance,
                                                         sidecar_expectations: SidecarExpectations) -> None:
    pods = mesh_cluster.list_pods(bookinfo.namespace)
    findings = [finding for pod in pods for finding in check_pod(pod, sidecar_expectations)]
    assert not findings, explain(findings)


@pytest.mark.conformance(name="sidecar-none-in-control-plane", features=["sidecar-injection"])
def test_control_plane_pods_carry_no_sidecar(mesh_cluster: Cluster) -> None:
    pods = mesh_cluster.list_pods(CONTROL_PLANE_NAMESPACE)
    assert pods, f"no pods in {CONTROL_PLANE_NAMESPACE}: is the control plane installed?"
    injected = [p["metadata"]["name"] for p in pods
                if any(c["name"] == PROXY_CONTAINER for c in p["spec"]["containers"])]
    assert not injected, f"control-plane pods with a sidecar: {injected}"


@pytest.mark.conformance(name="sidecar-none-when-opted-out", features=["sidecar-injection"])
def test_opted_out_deployment_gets_no_sidecar(mesh_cluster: Cluster, isolated_namespace: str,
                                              nginmesh_settings: Settings,
                                              sidecar_expectations: SidecarExpectations) -> None:
    mesh_cluster.apply([{
        "apiVersion": "extensions/v1beta1",
        "kind": "Deployment",
        "metadata": {"name": "ratings-opted-out", "namespace": isolated_namespace,
                     "annotations": {INJECT_ANNOTATION: "false"}},
        "spec": {"replicas": 1, "template": {
            "metadata": {"labels": {"app": "ratings", "version": "v1"},
                         "annotations": {INJECT_ANNOTATION: "false"}},
            "spec": {"containers": [{"name": "ratings", "image": "istio/examples-bookinfo-ratings-v1:0.2.3",
                                     "ports": [{"containerPort": 9080}]}]}}},
    }])
    pods = mesh_cluster.wait_pods_ready(isolated_namespace, nginmesh_settings.timeouts.pod_ready)
    assert [c["name"] for c in pods[0]["spec"]["containers"]] == ["ratings"]
    assert not pods[0]["spec"].get("initContainers")
    assert check_pod(pods[0], sidecar_expectations) == []
