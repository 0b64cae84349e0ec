"""Pure parts of the Kubernetes adapter and installer: apply patches, published convergence, ports, hopeless
pods, labels, image overrides."""

from __future__ import annotations

import pytest

from pytest_nginmesh.cluster.base import hopeless_reason
from pytest_nginmesh.cluster.k8s import (
    ANNOTATIONS_LIMIT,
    LAST_APPLIED,
    last_applied,
    load_balancer_addresses,
    serves_traffic,
    target_port,
    three_way_patch,
    with_last_applied,
)
from pytest_nginmesh.cluster.kubeapi import status_error
from pytest_nginmesh.cluster.published_versions import published_convergence
from pytest_nginmesh.errors import ClusterError, NotFoundError
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.release_install import INSTALLATION_LABEL, labelled, override_images, workload_count
from pytest_nginmesh.profiles import get_profile


def service(ports: list[Obj], **spec: object) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-ingress", "namespace": "istio-system"},
            "spec": {"ports": ports, **spec}}


def test_the_apply_patch_sets_the_manifest_and_deletes_only_what_was_applied_before() -> None:
    last = {"metadata": {"labels": {"app": "web", "tier": "front"}},
            "spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1", "env": [{"name": "A", "value": "1"}, {"name": "DEBUG"}]},
                {"name": "logger", "image": "busybox"}]}}}}
    desired = {"metadata": {"labels": {"app": "web"}},
               "spec": {"template": {"spec": {"containers": [
                   {"name": "web", "image": "nginx:2", "env": [{"name": "A", "value": "2"}]}]}}}}
    assert three_way_patch(last, desired, strategic=True) == {
        "metadata": {"labels": {"app": "web", "tier": None}},
        "spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:2",
             "env": [{"name": "A", "value": "2"}, {"name": "DEBUG", "$patch": "delete"}]},
            {"name": "logger", "$patch": "delete"}]}}}}


def test_a_merge_patch_replaces_lists_and_nothing_applied_before_means_nothing_deleted() -> None:
    desired = {"spec": {"route": [{"labels": {"version": "v1"}}]}}
    assert three_way_patch({"spec": {"route": [{"labels": {"version": "v2"}}], "precedence": 2}}, desired,
                           strategic=False) == {"spec": {"route": [{"labels": {"version": "v1"}}], "precedence": None}}
    assert three_way_patch({}, desired, strategic=True) == desired


def test_the_manifest_applied_is_recorded_as_kubectl_records_it() -> None:
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}}
    recorded = with_last_applied(manifest)
    assert last_applied(recorded) == manifest
    assert with_last_applied(recorded) == recorded, "the record does not record itself"
    assert last_applied({"metadata": {"annotations": {LAST_APPLIED: "{not json"}}}) == {}


def test_a_manifest_too_big_to_record_is_applied_unrecorded() -> None:
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "annotations": {LAST_APPLIED: "old"}},
           "data": {"a": "x" * (ANNOTATIONS_LIMIT - 100)}}
    assert with_last_applied(big) == {**big, "metadata": {"name": "c"}}, "no record, and no stale one either"


def proxy_pod(name: str, phase: str = "Running", ready: bool = True) -> Obj:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
            "status": {"phase": phase, "containerStatuses": [{"name": "app", "ready": True},
                                                             {"name": "istio-proxy", "ready": ready}]}}


def test_published_convergence_needs_every_ready_proxy_at_the_mesh_version() -> None:
    published = {"mesh-version": "v2", "default.a": '{"version": "v2"}', "default.b": '{"version": "v1"}'}
    assert published_convergence(published, [proxy_pod("a")]) == ("v2", "")
    assert published_convergence(published, [proxy_pod("a"), proxy_pod("b")]) == (
        None, "mesh version v2; istio-proxy of b at v1")
    assert published_convergence(published, [proxy_pod("a"), proxy_pod("c")]) == (
        None, "mesh version v2; istio-proxy of c at nothing")
    assert published_convergence(published, [proxy_pod("a", ready=False)]) == (
        None, "mesh version v2; istio-proxy of a not ready"), "a proxy that is not ready holds convergence back"
    assert published_convergence(published, [proxy_pod("b", phase="Pending")]) == ("v2", "")
    no_sidecar = {"metadata": {"name": "x", "namespace": "default"}, "spec": {"containers": [{"name": "app"}]},
                  "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": True}]}}
    assert published_convergence(published, [no_sidecar]) == ("v2", "")
    assert published_convergence({}, [])[0] is None
    ingress = {"metadata": {"name": "istio-ingress-1", "namespace": "istio-system"},
               "spec": {"containers": [{"name": "istio-ingress", "args": ["proxy", "ingress", "-v", "2"]}]},
               "status": {"phase": "Running", "containerStatuses": [{"name": "istio-ingress", "ready": True}]}}
    assert published_convergence(published, [ingress]) == (
        None, "mesh version v2; istio-ingress of istio-ingress-1 at nothing"), "the ingress is a proxy too"


def test_a_rejection_of_the_current_version_fails_at_once_an_older_one_does_not() -> None:
    rejected = '{"version": "v1", "rejectedVersion": "v2", "rejection": "nginx: [emerg] bad"}'
    with pytest.raises(ClusterError, match=r"proxy default/a rejected mesh config v2: nginx: \[emerg\] bad"):
        published_convergence({"mesh-version": "v2", "default.a": rejected}, [proxy_pod("a")])
    assert published_convergence({"mesh-version": "v3", "default.a": rejected.replace('"v1"', '"v3"')},
                                 [proxy_pod("a")]) == ("v3", "")


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


def test_a_pod_that_ended_is_hopeless_and_says_how_its_containers_exited() -> None:
    failed = pod_with({"state": {"terminated": {"exitCode": 127, "reason": "Error"}}})
    failed["status"]["phase"] = "Failed"
    assert hopeless_reason(failed) == "pod p has Failed: c exited 127 (Error)"
    message = "Pod was active on the node longer than the specified deadline"
    deadline = {"metadata": {"name": "p"}, "status": {"phase": "Failed", "message": message}}
    assert hopeless_reason(deadline) == f"pod p has Failed: {message}"


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
