"""The official Python client (``kubernetes``) against the embedded API, in-process, through the kubeconfig the
cluster writes: create, read, list, patch, watch and delete, custom objects (RouteRules once their CRDs exist),
and the Status a refused request carries. (Exec and logs on live pods: tests/e2e/test_kubernetes_api.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from embedded_api import EmbeddedApi
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.mesh.istio_crds import istio_crds


@pytest.fixture
def api_client(embedded_api: EmbeddedApi) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(str(embedded_api.kubeconfig))
    yield api_client
    api_client.close()


def test_core_objects_round_trip(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="settings", labels={"app": "a"}),
                              data={"mode": "one"})
    created = core.create_namespaced_config_map("default", body)
    assert created.metadata.uid and created.metadata.resource_version
    assert core.read_namespaced_config_map("settings", "default").data == {"mode": "one"}
    patched = core.patch_namespaced_config_map("settings", "default", {"data": {"mode": "two"}})
    assert patched.data == {"mode": "two"}
    assert int(patched.metadata.resource_version) > int(created.metadata.resource_version)
    listed = core.list_namespaced_config_map("default", label_selector="app=a")
    assert [c.metadata.name for c in listed.items] == ["settings"]
    events = watch.Watch().stream(core.list_namespaced_config_map, "default", label_selector="app=a",
                                  resource_version=listed.metadata.resource_version, timeout_seconds=2)
    core.delete_namespaced_config_map("settings", "default")
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("DELETED", "settings")]
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("settings", "default")
    assert gone.value.status == 404
    assert json.loads(gone.value.body)["message"] == 'configmaps "settings" not found'


def test_a_stale_resource_version_is_a_409_conflict(api_client: client.ApiClient) -> None:
    core = client.CoreV1Api(api_client)
    first = core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    core.patch_namespaced_config_map("c", "default", {"data": {"k": "v"}})
    first.data = {"k": "stale"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("c", "default", first)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"


def test_custom_objects_once_their_crds_exist(api_client: client.ApiClient, adapter: KubernetesCluster) -> None:
    adapter.apply(istio_crds())  # as Pilot registers them at start
    custom = client.CustomObjectsApi(api_client)
    rule = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
            "metadata": {"name": "reviews-default"},
            "spec": {"destination": {"name": "reviews"}, "precedence": 1, "route": [{"labels": {"version": "v1"}}]}}
    custom.create_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules", rule)
    listed = custom.list_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules")
    assert [r["metadata"]["name"] for r in listed["items"]] == ["reviews-default"]
    patched = custom.patch_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules",
                                                    "reviews-default", {"spec": {"precedence": 2}})
    assert patched["spec"]["precedence"] == 2 and patched["spec"]["route"] == rule["spec"]["route"]
    custom.delete_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules", "reviews-default")
    assert custom.list_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules")["items"] == []
