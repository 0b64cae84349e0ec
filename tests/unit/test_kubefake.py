"""The fake API server (tests/kubefake), driven by the official kubernetes client as an adapter would drive it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubefake import ProxyRequest, RecordedApiServer
from kubefake.recorded import seed_pod
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from kubernetes.stream import stream

REVIEWS_V3 = "reviews-v3-5fff595d9b-zsb2q"
MERGE = "application/merge-patch+json"


@pytest.fixture
def api_client(server: RecordedApiServer, tmp_path: Path) -> Iterator[client.ApiClient]:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        yield api


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def dynamic(api_client: client.ApiClient, tmp_path: Path) -> DynamicClient:
    return DynamicClient(api_client, cache_file=str(tmp_path / "discovery.json"))


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


def configmap(name: str, data: dict[str, str] | None = None, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
            "data": data or {}}


# -- transport, auth, discovery -------------------------------------------------------------------------------

def test_kubeconfig_points_at_the_server_with_a_bearer_token(server: RecordedApiServer, tmp_path: Path) -> None:
    kubeconfig = json.loads(server.write_kubeconfig(tmp_path / "k", context="ctx", token="t0k").read_text())
    assert kubeconfig["current-context"] == "ctx"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == server.url.replace("localhost", "127.0.0.1")
    assert server.url.startswith("http://127.0.0.1:")
    assert kubeconfig["users"][0]["user"] == {"token": "t0k"}


def test_every_request_needs_the_bearer_token(server: RecordedApiServer, tmp_path: Path) -> None:
    kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", token="wrong")
    with config.new_client_from_config(config_file=str(kubeconfig)) as api, pytest.raises(ApiException) as raised:
        client.CoreV1Api(api).list_namespaced_pod("default")
    assert raised.value.status == 401
    assert status_of(raised.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                       "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert server.requests[-1].path == "/api/v1/namespaces/default/pods"


def test_version_is_1_13_and_configurable(api_client: client.ApiClient, tmp_path: Path) -> None:
    assert client.VersionApi(api_client).get_code().git_version == "v1.13.12"
    with RecordedApiServer(version={"gitVersion": "v1.13.5"}) as other:
        kubeconfig = other.write_kubeconfig(tmp_path / "other")
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            info = client.VersionApi(api).get_code()
    assert (info.git_version, info.minor) == ("v1.13.5", "13")


@pytest.mark.parametrize(("api_version", "kind", "namespaced"), [
    ("v1", "Pod", True), ("v1", "Service", True), ("v1", "Endpoints", True), ("v1", "Namespace", False),
    ("v1", "ConfigMap", True), ("v1", "Event", True), ("v1", "Node", False), ("v1", "ServiceAccount", True),
    ("v1", "Secret", True), ("apps/v1", "Deployment", True), ("extensions/v1beta1", "Deployment", True),
    ("extensions/v1beta1", "ReplicaSet", True), ("admissionregistration.k8s.io/v1alpha1", "InitializerConfiguration",
                                                 False),
    ("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration", False),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition", False),
    ("config.istio.io/v1alpha2", "RouteRule", True), ("config.istio.io/v1alpha2", "DestinationPolicy", True),
    ("config.istio.io/v1alpha2", "EgressRule", True),
])
def test_dynamic_client_discovers_and_uses_every_group_version(dynamic: DynamicClient, api_version: str, kind: str,
                                                               namespaced: bool) -> None:
    resource = dynamic.resources.get(api_version=api_version, kind=kind)
    assert resource.namespaced is namespaced
    name = f"probe-{kind.lower()}"
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    created = resource.create(body=body, namespace="default" if namespaced else None)
    assert (created.apiVersion, created.kind, created.metadata.name) == (api_version, kind, name)
    listed = resource.get(namespace="default" if namespaced else None)
    assert listed.kind == f"{kind}List"
    assert name in [item.metadata.name for item in listed.items]


def test_discovery_documents_have_the_1_13_shape(api_client: client.ApiClient) -> None:
    core_resources = client.CoreV1Api(api_client).get_api_resources()
    pods = next(r for r in core_resources.resources if r.name == "pods")
    assert (pods.singular_name, pods.kind, pods.short_names, pods.categories) == ("", "Pod", ["po"], ["all"])
    assert "pods/exec" in [r.name for r in core_resources.resources]
    groups = {g.name: g.preferred_version.version for g in client.ApisApi(api_client).get_api_versions().groups}
    assert groups["config.istio.io"] == "v1alpha2" and groups["admissionregistration.k8s.io"] == "v1beta1"
    istio = client.CustomObjectsApi(api_client).get_api_resources("config.istio.io", "v1alpha2")
    assert {(r.name, r.singular_name) for r in istio.resources} == {
        ("routerules", "routerule"), ("destinationpolicies", "destinationpolicy"), ("egressrules", "egressrule")}


def test_unknown_paths_are_not_found(dynamic: DynamicClient) -> None:
    with pytest.raises(NotFoundError) as raised:
        dynamic.request("GET", "/api/v1/widgets")
    assert raised.value.status == 404
    assert json.loads(raised.value.body)["message"] == "the server could not find the requested resource"


# -- objects ----------------------------------------------------------------------------------------------------

def test_create_sets_server_fields_and_refuses_duplicates(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", configmap("one"))
    second = core.create_namespaced_config_map("default", configmap("two"))
    assert first.metadata.uid and first.metadata.creation_timestamp
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version) > 3757
    assert first.metadata.generation is None  # core v1 objects had no generation in 1.13
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map("default", configmap("one"))
    assert raised.value.status == 409
    assert status_of(raised.value)["reason"] == "AlreadyExists"
    assert status_of(raised.value)["message"] == 'configmaps "one" already exists'


def test_group_objects_get_a_generation_that_follows_spec_changes(dynamic: DynamicClient) -> None:
    rules = dynamic.resources.get(api_version="config.istio.io/v1alpha2", kind="RouteRule")
    rule = rules.create(namespace="default", body={"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
                                                   "metadata": {"name": "reviews-default"},
                                                   "spec": {"destination": {"name": "reviews"}, "precedence": 1}})
    assert rule.metadata.generation == 1
    patched = rules.patch(namespace="default", name="reviews-default", body={"spec": {"precedence": 2}},
                          content_type=MERGE)
    assert patched.metadata.generation == 2
    assert patched.spec.destination.name == "reviews"
    relabelled = rules.patch(namespace="default", name="reviews-default",
                             body={"metadata": {"labels": {"a": "b"}}}, content_type=MERGE)
    assert relabelled.metadata.generation == 2


def test_generate_name_and_invalid_names(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map("default", {"metadata": {"generateName": "cfg-"}})
    assert made.metadata.name.startswith("cfg-") and len(made.metadata.name) == 9
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map("default", configmap("Not_Valid"))
    status = status_of(raised.value)
    assert (raised.value.status, status["reason"], status["details"]["causes"][0]["field"]) == (
        422, "Invalid", "metadata.name")
    assert status["message"].startswith('ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value')


def test_namespaced_create_needs_the_namespace(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map("nowhere", configmap("x"))
    assert raised.value.status == 404
    assert status_of(raised.value)["message"] == 'namespaces "nowhere" not found'
    assert status_of(raised.value)["details"] == {"name": "nowhere", "kind": "namespaces"}


def test_get_missing_is_not_found_with_details(dynamic: DynamicClient, core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod("nope", "default")
    assert status_of(raised.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                       "message": 'pods "nope" not found', "reason": "NotFound",
                                       "details": {"name": "nope", "kind": "pods"}, "code": 404}
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")
    with pytest.raises(ApiException) as raised:
        deployments.get(name="nope", namespace="default")
    assert status_of(raised.value)["message"] == 'deployments.apps "nope" not found'


def test_replace_and_conflict(core: client.CoreV1Api) -> None:
    created = core.create_namespaced_config_map("default", configmap("cfg", {"a": "1"}))
    created.data = {"a": "2"}
    replaced = core.replace_namespaced_config_map("cfg", "default", created)
    assert replaced.data == {"a": "2"}
    assert replaced.metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as raised:  # created still carries the old resourceVersion
        core.replace_namespaced_config_map("cfg", "default", created)
    assert (raised.value.status, status_of(raised.value)["reason"]) == (409, "Conflict")


def test_patch_content_types(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    core.create_namespaced_config_map("default", configmap("cfg", {"a": "1", "b": "2"}))
    merged = core.patch_namespaced_config_map("cfg", "default", {"data": {"a": None, "c": "3"}},
                                              _content_type=MERGE)
    assert merged.data == {"b": "2", "c": "3"}
    strategic = core.patch_namespaced_config_map("cfg", "default", {"data": {"d": "4"}},
                                                 _content_type="application/strategic-merge-patch+json")
    assert strategic.data == {"b": "2", "c": "3", "d": "4"}
    json_patched = core.patch_namespaced_config_map("cfg", "default", [{"op": "replace", "path": "/data/b",
                                                                        "value": "20"}])
    assert json_patched.data["b"] == "20"
    assert server.requests[-1].content_type == "application/json-patch+json"
    assert core.patch_namespaced_config_map("cfg", "default", {"data": {"e": "5"}}).data["e"] == "5"
    assert server.requests[-1].content_type == "application/strategic-merge-patch+json"  # the client's default


def test_status_only_changes_through_the_status_subresource(core: client.CoreV1Api) -> None:
    pod = core.patch_namespaced_pod(REVIEWS_V3, "default", {"status": {"phase": "Failed"}}, _content_type=MERGE)
    assert pod.status.phase == "Running"
    pod = core.patch_namespaced_pod_status(REVIEWS_V3, "default", {"status": {"phase": "Failed"}},
                                           _content_type=MERGE)
    assert pod.status.phase == "Failed"


def test_server_side_apply_creates_then_merges(dynamic: DynamicClient, server: RecordedApiServer) -> None:
    maps = dynamic.resources.get(api_version="v1", kind="ConfigMap")
    created = maps.server_side_apply(body=configmap("applied", {"a": "1"}), namespace="default",
                                     field_manager="nginmesh", force_conflicts=True)
    assert created.data.to_dict() == {"a": "1"}
    assert server.requests[-1].query["fieldManager"] == ["nginmesh"]
    assert server.requests[-1].query["force"] == ["true"]
    updated = maps.server_side_apply(body=configmap("applied", {"b": "2"}), namespace="default",
                                     field_manager="nginmesh")
    assert updated.data.to_dict() == {"a": "1", "b": "2"}
    assert updated.metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as raised:
        maps.server_side_apply(body=configmap("applied"), namespace="default")
    assert raised.value.status == 400


def test_lists_select_by_label_and_field(core: client.CoreV1Api) -> None:
    everywhere = core.list_pod_for_all_namespaces()
    assert {p.metadata.namespace for p in everywhere.items} == {"default", "istio-system"}
    assert int(everywhere.metadata.resource_version) >= 3757
    reviews = core.list_namespaced_pod("default", label_selector="app=reviews,version in (v1, v3)")
    assert sorted(p.metadata.labels["version"] for p in reviews.items) == ["v1", "v3"]
    not_reviews = core.list_namespaced_pod("default", label_selector="app!=reviews,version")
    assert {p.metadata.labels["app"] for p in not_reviews.items} == {"details", "productpage", "ratings"}
    one = core.list_namespaced_pod("default", field_selector=f"metadata.name={REVIEWS_V3}")
    assert [p.metadata.name for p in one.items] == [REVIEWS_V3]
    with pytest.raises(ApiException) as raised:
        core.list_namespaced_pod("default", field_selector="spec.foo=bar")
    assert raised.value.status == 400


def test_list_items_are_bare_for_builtins_and_typed_for_custom_resources(core: client.CoreV1Api,
                                                                           api_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules", {
        "apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule", "metadata": {"name": "r"}, "spec": {}})
    pods = json.loads(core.list_namespaced_pod("default", _preload_content=False).data)
    assert "kind" not in pods["items"][0] and pods["kind"] == "PodList"
    rules = custom.list_namespaced_custom_object("config.istio.io", "v1alpha2", "default", "routerules")
    assert (rules["kind"], rules["items"][0]["kind"]) == ("RouteRuleList", "RouteRule")


def test_events_select_by_involved_object(core: client.CoreV1Api) -> None:
    for name, involved in (("e1", REVIEWS_V3), ("e2", "other")):
        core.create_namespaced_event("default", {
            "metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": involved, "namespace": "default"},
            "reason": "Started", "message": "Started container", "type": "Normal"})
    events = core.list_namespaced_event("default", field_selector=f"involvedObject.name={REVIEWS_V3}")
    assert [e.metadata.name for e in events.items] == ["e1"]


def test_delete_answers_like_the_real_server(core: client.CoreV1Api, dynamic: DynamicClient,
                                             server: RecordedApiServer) -> None:
    core.create_namespaced_config_map("default", configmap("cfg"))
    gone = core.delete_namespaced_config_map("cfg", "default", propagation_policy="Foreground")
    assert (gone["status"], gone["details"]["name"], gone["details"]["kind"]) == ("Success", "cfg", "configmaps")
    assert server.requests[-1].query["propagationPolicy"] == ["Foreground"]
    with pytest.raises(ApiException) as raised:
        core.delete_namespaced_config_map("cfg", "default")
    assert (raised.value.status, status_of(raised.value)["reason"]) == (404, "NotFound")
    pod = dynamic.resources.get(api_version="v1", kind="Pod").delete(
        name=REVIEWS_V3, namespace="default", body={"propagationPolicy": "Background"})
    assert pod.kind == "Pod" and pod.metadata.deletionTimestamp and pod.metadata.deletionGracePeriodSeconds == 30
    assert server.stored("v1", "Pod", REVIEWS_V3, "default") is None


def test_deleting_owners_collects_or_orphans_dependents(dynamic: DynamicClient, server: RecordedApiServer) -> None:
    replica_sets = dynamic.resources.get(api_version="extensions/v1beta1", kind="ReplicaSet")
    replica_sets.delete(name="reviews-v3-5fff595d9b", namespace="default")  # extensions: orphans by default
    orphan = server.stored("v1", "Pod", REVIEWS_V3, "default")
    assert orphan is not None and "ownerReferences" not in orphan["metadata"]
    deployments = dynamic.resources.get(api_version="apps/v1", kind="Deployment")  # same objects as extensions
    deployments.delete(name="reviews-v2", namespace="default")  # apps/v1: Background
    assert [p.metadata.labels.version for p in dynamic.resources.get(api_version="v1", kind="Pod").get(
        namespace="default", label_selector="app=reviews").items] == ["v1", "v3"]


def test_deleting_a_namespace_deletes_its_objects(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "scratch"}})
    core.create_namespaced_config_map("scratch", configmap("cfg"))
    deleted = core.delete_namespace("scratch")
    assert deleted["status"] == {"phase": "Terminating"}
    assert core.list_namespaced_config_map("scratch").items == []
    with pytest.raises(ApiException):
        core.read_namespace("scratch")
    with pytest.raises(ApiException) as raised:
        core.delete_namespace("scratch")
    assert raised.value.status == 404
    with pytest.raises(ApiException) as raised:
        core.delete_namespace("default")
    assert (raised.value.status, status_of(raised.value)["reason"]) == (403, "Forbidden")


def test_request_log_records_what_the_client_sent(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    core.create_namespaced_config_map("default", configmap("logged", {"k": "v"}))
    request = server.requests_to("/api/v1/namespaces/default/configmaps", "POST")[-1]
    assert request.body["data"] == {"k": "v"}
    core.list_namespaced_pod("default", label_selector="app=reviews")
    assert server.requests[-1].query == {"labelSelector": ["app=reviews"]}


# -- logs ---------------------------------------------------------------------------------------------------------

def test_pod_logs_current_and_previous(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    server.set_log("default", REVIEWS_V3, "istio-proxy", "agent started\nnginx reloaded\n",
                   previous="agent crashed\n")
    assert core.read_namespaced_pod_log(REVIEWS_V3, "default", container="istio-proxy") == (
        "agent started\nnginx reloaded\n")
    assert core.read_namespaced_pod_log(REVIEWS_V3, "default", container="istio-proxy", tail_lines=1) == (
        "nginx reloaded\n")
    assert core.read_namespaced_pod_log(REVIEWS_V3, "default", container="istio-proxy",
                                        previous=True) == "agent crashed\n"
    assert core.read_namespaced_pod_log(REVIEWS_V3, "default", container="reviews") == ""
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log(REVIEWS_V3, "default", container="reviews", previous=True)
    assert raised.value.status == 400
    assert status_of(raised.value)["message"] == (
        f'previous terminated container "reviews" in pod "{REVIEWS_V3}" not found')


def test_pod_log_container_must_be_named_and_valid(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log(REVIEWS_V3, "default")
    assert status_of(raised.value)["message"] == (
        f"a container name must be specified for pod {REVIEWS_V3}, choose one of: [reviews istio-proxy] "
        "or one of the init containers: [istio-init]")
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log(REVIEWS_V3, "default", container="nginx")
    assert status_of(raised.value)["message"] == f"container nginx is not valid for pod {REVIEWS_V3}"


# -- exec ---------------------------------------------------------------------------------------------------------

def run(core: client.CoreV1Api, pod: str, command: list[str], container: str | None = "istio-proxy") -> Any:
    kwargs = {"container": container} if container else {}
    response = stream(core.connect_get_namespaced_pod_exec, pod, "default", command=command, stderr=True,
                      stdin=False, stdout=True, tty=False, _preload_content=False, **kwargs)
    response.run_forever(timeout=5)
    return response


def test_exec_streams_stdout_stderr_and_the_exit_code(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    seen: list[list[str]] = []

    def handler(command: list[str]) -> tuple[int, bytes, bytes]:
        seen.append(command)
        return (0, b"nginx version: nginx/1.13.7\n", b"") if command[-1] == "-v" else (3, b"out", b"no such file\n")

    server.on_exec("default", REVIEWS_V3, "istio-proxy", handler)
    ok = run(core, REVIEWS_V3, ["nginx", "-v"])
    assert (ok.returncode, ok.read_stdout(), ok.read_stderr()) == (0, "nginx version: nginx/1.13.7\n", "")
    failed = run(core, REVIEWS_V3, ["cat", "/etc/missing"])
    assert (failed.returncode, failed.read_stdout(), failed.read_stderr()) == (3, "out", "no such file\n")
    assert seen == [["nginx", "-v"], ["cat", "/etc/missing"]]
    query = server.requests[-1].query
    assert query["command"] == ["cat", "/etc/missing"] and query["container"] == ["istio-proxy"]


def test_exec_carries_large_output_and_preloaded_content(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    config_dump = b"".join(b"line %06d of the nginx configuration\n" % n for n in range(3000))
    server.on_exec("default", REVIEWS_V3, "istio-proxy", lambda command: (0, config_dump, b""))
    assert run(core, REVIEWS_V3, ["nginx", "-T"]).read_stdout() == config_dump.decode()
    preloaded = stream(core.connect_get_namespaced_pod_exec, REVIEWS_V3, "default", container="istio-proxy",
                       command=["nginx", "-T"], stderr=True, stdin=False, stdout=True, tty=False)
    assert preloaded == config_dump.decode()


def test_exec_error_channel_is_a_v1_status(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    server.on_exec("default", REVIEWS_V3, "reviews", lambda command: (2, b"", b""))
    response = run(core, REVIEWS_V3, ["false"], container="reviews")
    assert response.returncode == 2
    server.on_exec("default", REVIEWS_V3, "reviews", lambda command: (0, b"", b""))
    response = stream(core.connect_get_namespaced_pod_exec, REVIEWS_V3, "default", container="reviews",
                      command=["true"], stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    response.run_forever(timeout=5)
    assert json.loads(response.read_channel(3)) == {"metadata": {}, "status": "Success"}


def test_exec_without_a_handler_fails_like_a_missing_executable(core: client.CoreV1Api) -> None:
    response = run(core, REVIEWS_V3, ["curl", "localhost"])
    assert response.returncode == 126
    assert "no exec handler registered" in response.read_stderr()


def test_exec_in_unknown_pod_or_container_is_refused_before_the_upgrade(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        run(core, "nope", ["true"])
    assert "404" in str(raised.value.reason) and 'pods \\"nope\\" not found' in str(raised.value.reason)
    with pytest.raises(ApiException) as raised:
        run(core, REVIEWS_V3, ["true"], container="nginx")
    assert "400" in str(raised.value.reason) and "container nginx is not valid" in str(raised.value.reason)
    with pytest.raises(ApiException) as raised:
        run(core, REVIEWS_V3, ["true"], container=None)
    assert "a container name must be specified" in str(raised.value.reason)


# -- service proxy ------------------------------------------------------------------------------------------------

def test_service_proxy_reaches_the_registered_handler(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    received: list[ProxyRequest] = []

    def productpage(request: ProxyRequest) -> tuple[int, dict[str, str], bytes]:
        received.append(request)
        return 200, {"Content-Type": "application/json"}, b'[{"id": 0, "title": "The Comedy of Errors"}]'

    server.on_service_proxy("default", "productpage:9080", productpage)
    body = core.connect_get_namespaced_service_proxy_with_path("productpage:9080", "default", "api/v1/products")
    assert "Comedy of Errors" in body
    assert (received[0].method, received[0].path) == ("GET", "/api/v1/products")
    by_port_name = core.connect_get_namespaced_service_proxy_with_path("productpage:http", "default", "health")
    assert "Comedy" in by_port_name and received[-1].path == "/health"
    assert "Comedy" in core.connect_get_namespaced_service_proxy_with_path("productpage", "default", "x")


def test_service_proxy_passes_handler_status_through(core: client.CoreV1Api, server: RecordedApiServer) -> None:
    server.on_service_proxy("default", "ratings:9080", lambda request: (500, {}, b"ratings unavailable"))
    with pytest.raises(ApiException) as raised:
        core.connect_get_namespaced_service_proxy_with_path("ratings:9080", "default", "ratings/0")
    assert (raised.value.status, raised.value.body) == (500, "ratings unavailable")


def test_service_proxy_without_endpoints_or_service(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as raised:
        core.connect_get_namespaced_service_proxy_with_path("reviews:9080", "default", "reviews/0")
    assert raised.value.status == 503
    assert status_of(raised.value)["reason"] == "ServiceUnavailable"
    assert status_of(raised.value)["message"] == 'no endpoints available for service "reviews"'
    with pytest.raises(ApiException) as raised:
        core.connect_get_namespaced_service_proxy_with_path("nope:80", "default", "")
    assert raised.value.status == 404


# -- the recorded cluster -------------------------------------------------------------------------------------------

def test_recorded_cluster_keeps_the_seed_pod_and_the_seed_listings(core: client.CoreV1Api,
                                                                   server: RecordedApiServer) -> None:
    stored = server.stored("v1", "Pod", REVIEWS_V3, "default")
    assert stored == seed_pod()
    ingress = core.read_namespaced_service("istio-ingress", "istio-system")
    assert ingress.spec.type == "LoadBalancer" and ingress.status.load_balancer.ingress is None
    assert [(p.port, p.node_port) for p in ingress.spec.ports] == [(80, 32765), (443, 31969)]
    mixer = core.read_namespaced_service("istio-mixer", "istio-system")
    assert (mixer.spec.cluster_ip, [p.port for p in mixer.spec.ports]) == (
        "10.107.135.31", [9091, 15004, 9093, 9094, 9102, 9125, 42422])
    nodes = {n.metadata.name: [a.address for a in n.status.addresses if a.type == "InternalIP"]
             for n in core.list_node().items}
    assert nodes == {"kube-1": ["10.12.5.15"], "kube-2": ["10.12.5.31"]}
    bookinfo = core.list_namespaced_pod("default").items
    assert sorted(p.metadata.labels["app"] + "-" + p.metadata.labels["version"] for p in bookinfo) == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]
    assert all([c.name for c in p.spec.containers][1] == "istio-proxy" for p in bookinfo)
    reviews = core.read_namespaced_endpoints("reviews", "default")
    assert len(reviews.subsets[0].addresses) == 3
