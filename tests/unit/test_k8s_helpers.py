"""Pure parts of the Kubernetes adapter and installer: PUT bodies, ports, hopeless pods, labels, image overrides."""

from __future__ import annotations

import pytest

from pytest_nginmesh.cluster.base import hopeless_reason
from pytest_nginmesh.cluster.k8s import load_balancer_addresses, replacement, serves_traffic, target_port
from pytest_nginmesh.cluster.kubeapi import status_error
from pytest_nginmesh.errors import ClusterError, NotFoundError
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.release_install import INSTALLATION_LABEL, labelled, override_images, workload_count
from pytest_nginmesh.profiles import get_profile


def service(ports: list[Obj], **spec: object) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-ingress", "namespace": "istio-system"},
            "spec": {"ports": ports, **spec}}


def test_replacing_a_service_keeps_what_the_server_assigned() -> None:
    current = service([{"port": 80, "nodePort": 32765}, {"port": 443, "nodePort": 31969}], clusterIP="10.111.158.10")
    current["metadata"]["resourceVersion"] = "42"
    body = replacement(service([{"port": 80}, {"port": 443, "nodePort": 30443}], type="LoadBalancer"), current)
    assert body["metadata"]["resourceVersion"] == "42"
    assert body["spec"]["clusterIP"] == "10.111.158.10"
    assert body["spec"]["ports"] == [{"port": 80, "nodePort": 32765}, {"port": 443, "nodePort": 30443}]


def test_replacing_other_kinds_only_adds_the_resource_version() -> None:
    desired = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
               "metadata": {"name": "r", "namespace": "default"}, "spec": {"precedence": 1}}
    current = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7", "uid": "u"},
               "spec": {"precedence": 2}}
    assert replacement(desired, current) == {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7"}}


def pod_with(container_status: Obj) -> Obj:
    return {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": "c", **container_status}]}}


@pytest.mark.parametrize(("status", "hopeless"), [
    ({"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}, True),
    ({"state": {"waiting": {"reason": "InvalidImageName"}}}, True),
    ({"state": {"waiting": {"reason": "ErrImagePull"}}}, False),
    ({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 1}, False),
    ({"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "restartCount": 3}, True),
    ({"state": {"waiting": {"reason": "ContainerCreating"}}}, False),
    ({"state": {"running": {}}}, False),
])
def test_hopeless_pods_are_told_from_slow_ones(status: Obj, hopeless: bool) -> None:
    reason = hopeless_reason(pod_with(status))
    assert (reason is not None) is hopeless
    if reason:
        assert "container c of pod p is in" in reason


def test_named_target_ports_are_resolved_in_the_pod() -> None:
    pod = {"metadata": {"name": "ingress"}, "spec": {"containers": [
        {"name": "proxy", "ports": [{"name": "http", "containerPort": 8080}]}]}}
    assert target_port({"port": 80, "targetPort": "http"}, pod) == 8080
    assert target_port({"port": 80, "targetPort": 9090}, pod) == 9090
    assert target_port({"port": 80}, pod) == 80
    with pytest.raises(ClusterError, match="no container port named 'https'"):
        target_port({"port": 443, "targetPort": "https"}, pod)


def test_load_balancer_addresses_pending_ip_or_hostname() -> None:
    assert load_balancer_addresses(service([])) == []
    lb = service([])
    lb["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example"}]}}
    assert load_balancer_addresses(lb) == ["203.0.113.7", "lb.example"]


def test_only_running_pods_with_a_ready_proxy_must_converge() -> None:
    def pod(phase: str, ready: bool, deleting: bool = False) -> Obj:
        meta: Obj = {"name": "p", "namespace": "default"}
        if deleting:
            meta["deletionTimestamp"] = "2026-11-25T00:00:00Z"
        return {"metadata": meta, "status": {"phase": phase, "containerStatuses": [
            {"name": "istio-proxy", "ready": ready}, {"name": "app", "ready": True}]}}

    assert serves_traffic(pod("Running", True))
    assert not serves_traffic(pod("Running", False))
    assert not serves_traffic(pod("Pending", True))
    assert not serves_traffic(pod("Running", True, deleting=True))


def test_api_status_becomes_an_error_with_its_message() -> None:
    error = status_error(404, '{"kind":"Status","message":"pods \\"x\\" not found","reason":"NotFound"}', "GET /p")
    assert isinstance(error, NotFoundError)
    assert str(error) == 'GET /p: pods "x" not found (HTTP 404, NotFound)'
    assert error.status["reason"] == "NotFound"
    plain = status_error(502, "Bad Gateway\n", "GET /q")
    assert type(plain) is ClusterError and str(plain) == "GET /q: Bad Gateway (HTTP 502)"


def test_installed_objects_carry_the_run_label() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}},
                  "spec": {"template": {"metadata": {"labels": {"app": "d"}}}}}
    [stamped] = labelled([deployment], "r1")
    assert stamped["metadata"]["labels"] == {"app": "d", "app.kubernetes.io/managed-by": "pytest-nginmesh",
                                             INSTALLATION_LABEL: "r1"}
    assert deployment["metadata"]["labels"] == {"app": "d"}, "the input is not modified"


def test_image_overrides_rewrite_the_injector_config_only() -> None:
    profile = get_profile("nginmesh-0.2.12")
    config = {"kind": "ConfigMap", "metadata": {"name": "istio-inject"},
              "data": {"config": f"params:\n  initImage: {profile.init_image}\n  proxyImage: {profile.proxy_image}\n"}}
    other = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {"image": profile.proxy_image}}
    new_config, new_other = override_images([config, other], profile, "registry.test/proxy:rc1", None)
    assert new_config["data"]["config"] == (f"params:\n  initImage: {profile.init_image}\n"
                                            "  proxyImage: registry.test/proxy:rc1\n")
    assert new_other is other
    assert override_images([config], profile, None, None) == [config]


def test_workloads_are_counted_per_namespace() -> None:
    objects = [{"kind": "Deployment", "metadata": {"name": "a", "namespace": "istio-system"}},
               {"kind": "Deployment", "metadata": {"name": "b"}},
               {"kind": "Service", "metadata": {"name": "c", "namespace": "istio-system"}},
               {"kind": "DaemonSet", "metadata": {"name": "d", "namespace": "istio-system"}}]
    assert workload_count(objects, "istio-system") == 2
    assert workload_count(objects, "default") == 1
