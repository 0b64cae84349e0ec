"""PATCH semantics: RFC 7386 merge, RFC 6902 JSON patch, strategic merge with Kubernetes' own merge keys."""

from __future__ import annotations

import json

import pytest

from pytest_nginmesh.cluster.local.rest.openapi import schema_for_kind
from pytest_nginmesh.cluster.local.rest.patch import json_patch, merge_patch, strategic_merge
from pytest_nginmesh.cluster.local.rest.status import ApiError

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "reviews", "labels": {"app": "reviews"}},
    "spec": {"template": {"spec": {
        "containers": [{"name": "reviews", "image": "r:1", "env": [{"name": "A", "value": "1"}]},
                       {"name": "istio-proxy", "image": "p:1", "args": ["proxy", "sidecar"]}],
        "volumes": [{"name": "certs", "secret": {"secretName": "istio"}}]}}},
}


def test_merge_patch_merges_maps_replaces_lists_and_deletes_nulls() -> None:
    patched = merge_patch(DEPLOYMENT, {"metadata": {"labels": {"app": None, "v": "2"}},
                                       "spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}})
    assert patched["metadata"]["labels"] == {"v": "2"}
    assert patched["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]


def test_strategic_merge_merges_containers_and_env_by_name() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "reviews", "image": "r:2", "env": [{"name": "B", "value": "2"}]}]}}}}
    patched = strategic_merge(DEPLOYMENT, patch, schema_for_kind("Deployment"))
    containers = {c["name"]: c for c in patched["spec"]["template"]["spec"]["containers"]}
    assert containers["reviews"]["image"] == "r:2"
    assert [e["name"] for e in containers["reviews"]["env"]] == ["A", "B"]
    assert containers["istio-proxy"]["args"] == ["proxy", "sidecar"], "args are replaced, not merged, when absent"


def test_strategic_merge_directives() -> None:
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "istio-proxy"}, {"name": "reviews"}],
        "containers": [{"name": "reviews", "$patch": "delete"}, {"name": "istio-proxy", "image": "p:2"}]}}}}
    patched = strategic_merge(DEPLOYMENT, patch, schema_for_kind("Deployment"))
    assert [(c["name"], c["image"]) for c in patched["spec"]["template"]["spec"]["containers"]] == [
        ("istio-proxy", "p:2")]


def test_json_patch_applies_in_order_and_fails_whole() -> None:
    ops = [{"op": "add", "path": "/metadata/labels/version", "value": "v1"},
           {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "r:3"},
           {"op": "test", "path": "/metadata/name", "value": "reviews"}]
    patched = json_patch(DEPLOYMENT, ops)
    assert patched["metadata"]["labels"]["version"] == "v1"
    assert patched["spec"]["template"]["spec"]["containers"][0]["image"] == "r:3"
    with pytest.raises(ApiError):
        json_patch(DEPLOYMENT, [*ops, {"op": "test", "path": "/metadata/name", "value": "other"}])
    assert json.dumps(DEPLOYMENT).count("r:3") == 0
