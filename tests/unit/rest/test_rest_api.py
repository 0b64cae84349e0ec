"""The embedded Kubernetes REST API in-process: discovery, CRUD, conflicts, selectors, Table, watch, Status."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from embedded_api import EmbeddedApi

from pytest_nginmesh.cluster.local.rest import protobuf
from pytest_nginmesh.cluster.local.rest.server import Request, Response, proxied_service

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def call(api: EmbeddedApi, method: str, path: str, body: Any = None, *, token: str | None = None,
         content_type: str = "application/json", accept: str = "application/json", **query: str) -> Response:
    headers = {"authorization": f"Bearer {api.token() if token is None else token}", "content-type": content_type,
               "accept": accept}
    data = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return api.rest.handle(Request(method, path, dict(query), headers, data))


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
            "data": {"key": name}}


def test_discovery_names_the_groups_and_versions_the_mesh_uses(embedded_api: EmbeddedApi) -> None:
    listing = call(embedded_api, "GET", "/apis").body
    groups = {g["name"]: [v["version"] for v in g["versions"]] for g in listing["groups"]}
    assert groups["apps"][0] == "v1" and {"v1beta1", "v1beta2"} <= set(groups["apps"])
    assert "v1beta1" in groups["extensions"]
    assert "v1alpha1" in groups["admissionregistration.k8s.io"]
    core = call(embedded_api, "GET", "/api/v1").body
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["namespaced"] and pods["shortNames"] == ["po"] and "watch" in pods["verbs"]
    assert {"pods/log", "pods/exec", "pods/status"} <= {r["name"] for r in core["resources"]}
    assert call(embedded_api, "GET", "/version", token="").body["major"] == "1"


def test_custom_resources_are_served_once_their_crd_is_stored(embedded_api: EmbeddedApi) -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "routerules.config.istio.io"},
           "spec": {"group": "config.istio.io", "version": "v1alpha2", "scope": "Namespaced",
                    "names": {"kind": "RouteRule", "plural": "routerules", "singular": "routerule"}}}
    assert call(embedded_api, "GET", "/apis/config.istio.io/v1alpha2").code == 404
    assert call(embedded_api, "POST", "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions", crd).code == 201
    listing = call(embedded_api, "GET", "/apis/config.istio.io/v1alpha2").body
    assert [r["name"] for r in listing["resources"]] == ["routerules"]


def test_create_get_update_delete_with_the_messages_kube_apiserver_gives(embedded_api: EmbeddedApi) -> None:
    created = call(embedded_api, "POST", CONFIGMAPS, configmap("one"))
    assert created.code == 201 and created.body["metadata"]["uid"]
    again = call(embedded_api, "POST", CONFIGMAPS, configmap("one"))
    assert (again.code, again.body["reason"], again.body["message"]) == (
        409, "AlreadyExists", 'configmaps "one" already exists')
    stale = {**created.body, "data": {"key": "two"}}
    assert call(embedded_api, "PUT", f"{CONFIGMAPS}/one", stale).code == 200
    conflict = call(embedded_api, "PUT", f"{CONFIGMAPS}/one", stale)
    assert (conflict.code, conflict.body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in conflict.body["message"]
    assert call(embedded_api, "DELETE", f"{CONFIGMAPS}/one").code == 200
    missing = call(embedded_api, "GET", f"{CONFIGMAPS}/one")
    assert (missing.code, missing.body["message"]) == (404, 'configmaps "one" not found')


@pytest.mark.parametrize(("path", "body", "code", "reason", "message"), [
    ("/api/v1/namespaces/nowhere/configmaps", configmap("x"), 404, "NotFound", 'namespaces "nowhere" not found'),
    (CONFIGMAPS, b"{not json", 400, "BadRequest", "error decoding request body"),
    (CONFIGMAPS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, 400, "BadRequest",
     "must be of type ConfigMap"),
    ("/api/v1/namespaces/default/widgets", configmap("x"), 404, "NotFound", "could not find the requested resource"),
])
def test_bad_requests_answer_a_status_and_store_nothing(embedded_api: EmbeddedApi, path: str, body: Any, code: int,
                                                         reason: str, message: str) -> None:
    before = embedded_api.server.store.revision
    response = call(embedded_api, "POST", path, body)
    assert response.body["kind"] == "Status"
    assert (response.code, response.body["reason"]) == (code, reason)
    assert message in response.body["message"]
    assert embedded_api.server.store.revision == before


def test_a_wrong_token_is_401_and_reads_nothing(embedded_api: EmbeddedApi) -> None:
    response = call(embedded_api, "GET", CONFIGMAPS, token="forged")
    assert (response.code, response.body["reason"]) == (401, "Unauthorized")


def test_admission_refusals_are_422_invalid(embedded_api: EmbeddedApi) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
    response = call(embedded_api, "POST", "/api/v1/namespaces/default/pods", pod)
    assert (response.code, response.body["reason"]) == (422, "Invalid")
    assert response.body["message"].startswith('Pod "p" is invalid: ')


def test_label_and_field_selectors(embedded_api: EmbeddedApi) -> None:
    for name, version in (("a", "v1"), ("b", "v2"), ("c", "v3")):
        call(embedded_api, "POST", CONFIGMAPS, configmap(name, app="reviews", version=version))

    def names(**query: str) -> list[str]:
        return [o["metadata"]["name"] for o in call(embedded_api, "GET", CONFIGMAPS, **query).body["items"]]

    assert names(labelSelector="version in (v1,v3)") == ["a", "c"]
    assert names(labelSelector="app=reviews,version!=v2") == ["a", "c"]
    assert names(labelSelector="!version") == []
    assert names(fieldSelector="metadata.name=b") == ["b"]
    bad = call(embedded_api, "GET", CONFIGMAPS, fieldSelector="data.key=a")
    assert bad.code == 400 and "not a known field selector" in bad.body["message"]


def test_pods_print_as_a_table_like_the_seed_listing(embedded_api: EmbeddedApi) -> None:
    store = embedded_api.server.store
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "reviews-v3-1", "namespace": "default"},
           "spec": {"containers": [{"name": "reviews", "image": "x"}, {"name": "istio-proxy", "image": "y"}]},
           "status": {"phase": "Running", "podIP": "10.1.0.7", "containerStatuses": [
               {"name": "reviews", "ready": True, "restartCount": 1, "state": {"running": {}}},
               {"name": "istio-proxy", "ready": True, "restartCount": 0, "state": {"running": {}}}]}}
    store.put(pod)
    table = call(embedded_api, "GET", "/api/v1/namespaces/default/pods",
                 accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json").body
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:4] == ["reviews-v3-1", "2/2", "Running", 1]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_protobuf_namespaces_from_kubectl_create_are_decoded() -> None:
    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2, len(payload)]) + payload

    meta = field(1, b"shop") + field(11, field(1, b"team") + field(2, b"mesh"))
    raw = field(1, meta)
    body = protobuf.MAGIC + field(1, field(1, b"v1") + field(2, b"Namespace")) + field(2, raw)
    assert protobuf.decode(body) == {"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": "shop", "labels": {"team": "mesh"}}}


def test_watch_streams_added_modified_and_deleted(embedded_api: EmbeddedApi) -> None:
    call(embedded_api, "POST", CONFIGMAPS, configmap("w"))
    response = call(embedded_api, "GET", CONFIGMAPS, watch="1", timeoutSeconds="5")
    assert response.stream is not None
    events: list[tuple[str, str]] = []

    def read() -> None:
        assert response.stream is not None
        for chunk in response.stream:
            event = json.loads(chunk)
            events.append((event["type"], event["object"]["data"]["key"]))
            if event["type"] == "DELETED":
                return

    reader = threading.Thread(target=read)
    reader.start()
    current = call(embedded_api, "GET", f"{CONFIGMAPS}/w").body
    call(embedded_api, "PUT", f"{CONFIGMAPS}/w", {**current, "data": {"key": "changed"}})
    deleted = call(embedded_api, "DELETE", f"{CONFIGMAPS}/w").body
    reader.join(10)
    assert events[0] == ("ADDED", "w")
    assert ("MODIFIED", "changed") in events and events[-1][0] == "DELETED"
    # The deleted object comes back at its deletion's resourceVersion, as from etcd3's store: later than the
    # update's, and the one the DELETED event carries.
    assert int(deleted["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"]) + 1
    assert deleted["metadata"]["resourceVersion"] == str(embedded_api.server.store.revision)


def test_a_watch_from_a_resource_version_hears_of_the_deletion_of_an_object_it_never_saw_change(
        embedded_api: EmbeddedApi) -> None:
    # What `kubectl delete --wait` and `kubectl wait --for=delete` do: list (the object is there), then watch
    # by name from the list's resourceVersion; the deletion is the only event that follows.
    call(embedded_api, "POST", CONFIGMAPS, configmap("gone"))
    call(embedded_api, "POST", CONFIGMAPS, configmap("stays"))
    listed = call(embedded_api, "GET", CONFIGMAPS, fieldSelector="metadata.name=gone").body
    response = call(embedded_api, "GET", CONFIGMAPS, watch="1", timeoutSeconds="3", allowWatchBookmarks="true",
                    fieldSelector="metadata.name=gone", resourceVersion=listed["metadata"]["resourceVersion"])
    assert response.stream is not None
    call(embedded_api, "DELETE", f"{CONFIGMAPS}/stays")
    call(embedded_api, "DELETE", f"{CONFIGMAPS}/gone")
    events = [json.loads(chunk) for chunk in response.stream]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "gone")]


def test_bodies_over_the_limit_are_413(embedded_api: EmbeddedApi) -> None:
    response = call(embedded_api, "POST", CONFIGMAPS, b"{" + b" " * (4 * 1024 * 1024) + b"}")
    assert (response.code, response.body["reason"]) == (413, "RequestEntityTooLarge")


@pytest.mark.parametrize(("path", "expected"), [
    ("reviews", ("reviews", "")), ("reviews:9080", ("reviews", "9080")), ("reviews:http", ("reviews", "http")),
    ("http:reviews:9080", ("reviews", "9080")), ("https:reviews:", ("reviews", "")),
])
def test_a_services_proxy_name_splits_as_kube_apiserver_splits_it(path: str, expected: tuple[str, str]) -> None:
    assert proxied_service(path) == expected
