"""The mesh's admission plug-ins (pytest_nginmesh.mesh.admission), loaded by the daemon from the entry-point group
``pytest_nginmesh.admission`` (pytest_nginmesh.cluster.local.plugins): the cluster layer itself knows no RouteRule
and no sidecar."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nginmesh.cluster.local.apiserver import Admission, ApiServer
from pytest_nginmesh.cluster.local.plugins import installed_plugins
from pytest_nginmesh.errors import ManifestError
from pytest_nginmesh.kube import Obj, ObjectKey
from pytest_nginmesh.mesh.injection import PROXY_CONTAINER, STATUS_ANNOTATION, InjectConfig, MeshConfig, inject
from pytest_nginmesh.mesh.manifests import CONTROL_PLANE, load_fixture

BAD_RULE = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"destination": {"name": "reviews"},
                     "route": [{"labels": {"version": "v1"}, "weight": 60},
                               {"labels": {"version": "v2"}, "weight": 60}]}}


@pytest.fixture
def api(tmp_path: Path) -> ApiServer:
    info = {"name": "nmunit", "grace": 1.0,
            "addresses": {"pod_cidr": "10.99.0.0/16", "service_cidr": "10.98.0.0/16", "link_cidr": "10.97.0.0/30"}}
    return ApiServer(tmp_path, info)


def deployment() -> Obj:
    labels = {"app": "ratings"}
    return {"apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "metadata": {"name": "ratings", "namespace": "default"},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": labels},
                                                 "spec": {"containers": [{"name": "ratings", "image": "x"}]}}}}


def test_the_installed_package_registers_the_mesh_plugins() -> None:
    assert [p.name for p in installed_plugins()] == ["RouteRuleValidation", "SidecarKept"]


def test_a_rule_pilot_would_refuse_is_refused_by_the_plugin_not_by_the_cluster(api: ApiServer) -> None:
    with pytest.raises(ManifestError, match="weight"):
        api.apply([BAD_RULE])
    assert api.store.objects("RouteRule") == []
    bare = Admission(api.store, "", plugins=[])  # the cluster layer alone: a RouteRule is just an object
    bare.validate([BAD_RULE])


def test_replacing_an_injected_workload_keeps_its_sidecar(api: ApiServer) -> None:
    api.apply([o for o in load_fixture(CONTROL_PLANE) if o["kind"] in ("Namespace", "ConfigMap")])
    config = InjectConfig.from_configmap(api.store.get(ObjectKey("ConfigMap", "istio-system", "istio-inject")))
    injected = inject(deployment(), config, MeshConfig.from_configmap(None))
    api.store.put(injected)
    api.apply([deployment()])  # the manifest as the user has it: no sidecar
    stored = api.store.get(ObjectKey("Deployment", "default", "ratings"))
    assert stored is not None
    template = stored["spec"]["template"]
    assert STATUS_ANNOTATION in template["metadata"]["annotations"]
    assert [c["name"] for c in template["spec"]["containers"]] == ["ratings", PROXY_CONTAINER]


def test_a_workload_that_was_never_injected_is_replaced_as_given(api: ApiServer) -> None:
    api.apply([o for o in load_fixture(CONTROL_PLANE) if o["kind"] in ("Namespace", "ConfigMap")])
    api.store.put(deployment())
    api.apply([deployment()])
    stored = api.store.get(ObjectKey("Deployment", "default", "ratings"))
    assert stored is not None and [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]] == ["ratings"]
