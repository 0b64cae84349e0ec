"""The MutatingAdmissionWebhook plug-in of the embedded API (pytest_nginmesh.cluster.local.webhooks): a real HTTPS
webhook on loopback, a MutatingWebhookConfiguration stored through the API, and pods created through the API
and by the Deployment controller, patched, refused or left alone as kube-apiserver would."""

from __future__ import annotations

import base64
import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from embedded_api import EmbeddedApi

from pytest_nginmesh.cluster.local.rest.pki import Credentials
from pytest_nginmesh.cluster.local.webhooks import JsonPatchError, apply_json_patch, label_selector_matches
from pytest_nginmesh.errors import ClusterError
from pytest_nginmesh.kube import Obj, ObjectKey
from pytest_nginmesh.workloads._common import HttpServer, send_json
from pytest_nginmesh.workloads._kubeclient import KubeClient

LABELLED = "injected"  # a namespace labelled for the webhook
Answer = Callable[[Obj], tuple[int, Obj]]


def client(api: EmbeddedApi) -> KubeClient:
    host, port = api.url.removeprefix("https://").rsplit(":", 1)
    return KubeClient(host, int(port), api.token(), api.credentials.ca_cert)


def review_response(review: Obj, **response: object) -> tuple[int, Obj]:
    return 200, {"apiVersion": review["apiVersion"], "kind": "AdmissionReview",
                 "response": {"uid": review["request"]["uid"], **response}}


def patching(review: Obj) -> tuple[int, Obj]:
    """Adds a container and an annotation, as a sidecar injector's JSONPatch does."""
    patch = [{"op": "add", "path": "/spec/containers/-", "value": {"name": "sidecar", "image": "busybox"}},
             {"op": "add", "path": "/metadata/annotations", "value": {"patched-by": "webhook"}}]
    return review_response(review, allowed=True, patchType="JSONPatch",
                           patch=base64.b64encode(json.dumps(patch).encode()).decode())


def denying(review: Obj) -> tuple[int, Obj]:
    return review_response(review, allowed=False, status={"message": "no pods named like that"})


class Webhook:
    """An HTTPS webhook on loopback whose answer a test sets; it records each AdmissionReview."""

    def __init__(self, credentials: Credentials) -> None:
        self.answer: Answer = patching
        self.reviews: list[Obj] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.reviews.append(review)
                send_json(self, *hook.answer(review))

        self.server = HttpServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(credentials.server_cert, credentials.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.ca_bundle = base64.b64encode(credentials.ca_cert.read_bytes()).decode()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/inject"


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[Webhook]:
    hook = Webhook(Credentials(tmp_path / "webhook-pki").create("webhook", ["127.0.0.1"]))
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


def configuration(url: str, ca_bundle: str, api_version: str = "v1beta1", **hook: object) -> Obj:
    """Istio 0.7.1's shape (nginxinc/nginmesh istio/release/install/kubernetes/istio/istio-sidecar-injector.yaml),
    with a url in place of the service (nothing routes a cluster IP to loopback here)."""
    return {"apiVersion": f"admissionregistration.k8s.io/{api_version}", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "istio-sidecar-injector"},
            "webhooks": [{"name": "sidecar-injector.istio.io", "clientConfig": {"url": url, "caBundle": ca_bundle},
                          "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                     "resources": ["pods"]}],
                          "failurePolicy": "Fail",
                          "namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}, **hook}]}


def install(api: EmbeddedApi, config: Obj) -> KubeClient:
    kube = client(api)
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": LABELLED, "labels": {"istio-injection": "enabled"}}})
    version = config["apiVersion"]
    kube.request("POST", f"/apis/{version}/mutatingwebhookconfigurations", config)
    return kube


def pod(name: str = "web") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}}


def create_pod(kube: KubeClient, namespace: str, name: str = "web") -> Obj:
    return dict(kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod(name)))


def test_a_pod_in_a_selected_namespace_is_patched_as_the_webhook_answers(embedded_api: EmbeddedApi,
                                                                          webhook: Webhook) -> None:
    kube = install(embedded_api, configuration(webhook.url, webhook.ca_bundle))
    created = create_pod(kube, LABELLED)
    assert [c["name"] for c in created["spec"]["containers"]] == ["app", "sidecar"]
    assert created["metadata"]["annotations"] == {"patched-by": "webhook"}
    (review,) = webhook.reviews
    request = review["request"]
    assert (review["apiVersion"], request["operation"], request["namespace"]) == (
        "admission.k8s.io/v1beta1", "CREATE", LABELLED)
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    # The ServiceAccount plug-in ran first: the webhook saw the token volume.
    assert any(v["name"].startswith("default-token") for v in request["object"]["spec"]["volumes"])


def test_pods_of_other_namespaces_and_other_operations_are_not_sent(embedded_api: EmbeddedApi,
                                                                    webhook: Webhook) -> None:
    kube = install(embedded_api, configuration(webhook.url, webhook.ca_bundle))
    created = create_pod(kube, "default")
    kube.request("POST", "/api/v1/namespaces/default/configmaps",
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})
    assert [c["name"] for c in created["spec"]["containers"]] == ["app"]
    assert webhook.reviews == []


def test_a_denial_refuses_the_pod_with_the_webhooks_message(embedded_api: EmbeddedApi, webhook: Webhook) -> None:
    webhook.answer = denying
    kube = install(embedded_api, configuration(webhook.url, webhook.ca_bundle))
    with pytest.raises(ClusterError, match=re.escape('admission webhook "sidecar-injector.istio.io" denied the '
                                                     "request: no pods named like that")):
        create_pod(kube, LABELLED)
    assert embedded_api.server.store.get(ObjectKey("Pod", LABELLED, "web")) is None


@pytest.mark.parametrize(("policy", "created"), [("Fail", False), ("Ignore", True)])
def test_an_unreachable_webhook_fails_or_is_ignored_as_its_failure_policy_says(
        embedded_api: EmbeddedApi, webhook: Webhook, policy: str, created: bool) -> None:
    webhook.answer = lambda review: (500, {"message": "broken"})
    kube = install(embedded_api, configuration(webhook.url, webhook.ca_bundle, failurePolicy=policy))
    if created:
        assert [c["name"] for c in create_pod(kube, LABELLED)["spec"]["containers"]] == ["app"]
    else:
        with pytest.raises(ClusterError, match=re.escape('failed calling admission webhook '
                                                         '"sidecar-injector.istio.io": it answered HTTP 500')):
            create_pod(kube, LABELLED)


def test_a_certificate_the_ca_bundle_does_not_sign_fails_the_call(embedded_api: EmbeddedApi, webhook: Webhook,
                                                                    tmp_path: Path) -> None:
    other = Credentials(tmp_path / "other-pki").create("other", ["127.0.0.1"])
    kube = install(embedded_api, configuration(webhook.url, base64.b64encode(other.ca_cert.read_bytes()).decode()))
    with pytest.raises(ClusterError, match="CERTIFICATE_VERIFY_FAILED"):
        create_pod(kube, LABELLED)


def test_the_v1_review_must_answer_with_the_requests_uid(embedded_api: EmbeddedApi, webhook: Webhook) -> None:
    webhook.answer = lambda review: (200, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                           "response": {"uid": "not-the-request", "allowed": True}})
    kube = install(embedded_api, configuration(webhook.url, webhook.ca_bundle, "v1",
                                               admissionReviewVersions=["v1"], sideEffects="None"))
    with pytest.raises(ClusterError, match="uid 'not-the-request' is not the request's"):
        create_pod(kube, LABELLED)
    assert webhook.reviews[0]["apiVersion"] == "admission.k8s.io/v1"


def test_the_deployment_controller_creates_its_pods_through_the_webhook(embedded_api: EmbeddedApi,
                                                                        webhook: Webhook) -> None:
    kube = install(embedded_api, configuration(webhook.url, webhook.ca_bundle))
    labels = {"app": "web"}
    kube.request("POST", f"/apis/apps/v1/namespaces/{LABELLED}/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod()["spec"]}}})
    embedded_api.server.controllers._deployments()
    (created,) = embedded_api.server.store.objects("Pod")
    assert [c["name"] for c in created["spec"]["containers"]] == ["app", "sidecar"]


# RFC 6902 appendix A, the operations a sidecar injector's patch uses and their errors.
@pytest.mark.parametrize(("document", "patch", "result"), [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}], {"foo": "bar", "baz": "qux"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": "x"}], {"foo": ["bar", "x"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"baz": "qux"}, [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo"}),
    ({"foo": {"bar": 1}}, [{"op": "move", "from": "/foo/bar", "path": "/qux"}], {"foo": {}, "qux": 1}),
    ({"foo": {"bar": 1}}, [{"op": "copy", "from": "/foo/bar", "path": "/qux"}], {"foo": {"bar": 1}, "qux": 1}),
    ({"a/b": 1}, [{"op": "test", "path": "/a~1b", "value": 1}], {"a/b": 1}),
])
def test_json_patch(document: Obj, patch: list[Obj], result: Obj) -> None:
    assert apply_json_patch(document, patch) == result


@pytest.mark.parametrize("patch", [
    [{"op": "add", "path": "/missing/child", "value": 1}],
    [{"op": "replace", "path": "/missing", "value": 1}],
    [{"op": "remove", "path": "/foo/5"}],
    [{"op": "test", "path": "/foo/0", "value": "other"}],
    [{"op": "jump", "path": "/foo"}],
    [{"op": "add", "path": "no-slash", "value": 1}],
])
def test_json_patch_errors(patch: list[Obj]) -> None:
    with pytest.raises(JsonPatchError):
        apply_json_patch({"foo": ["bar"]}, patch)


@pytest.mark.parametrize(("selector", "labels", "matches"), [
    (None, {}, True),
    ({"matchLabels": {"istio-injection": "enabled"}}, {"istio-injection": "enabled"}, True),
    ({"matchLabels": {"istio-injection": "enabled"}}, {}, False),
    ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}]}, {"env": "b"}, True),
    ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["a"]}]}, {}, True),
    ({"matchExpressions": [{"key": "env", "operator": "Exists"}]}, {}, False),
    ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, {}, True),
])
def test_label_selectors(selector: Obj | None, labels: dict[str, str], matches: bool) -> None:
    assert label_selector_matches(selector, labels) == matches


def test_a_service_without_endpoints_fails_the_call_at_once(embedded_api: EmbeddedApi, webhook: Webhook) -> None:
    """As kube-proxy rejects a connection to a service without endpoints: no wait for the webhook's timeout."""
    embedded_api.server.store.put({"apiVersion": "v1", "kind": "Service",
                                   "metadata": {"name": "istio-sidecar-injector", "namespace": "default"},
                                   "spec": {"clusterIP": "10.250.0.10", "ports": [{"port": 443}]}})
    config = configuration(webhook.url, webhook.ca_bundle)
    config["webhooks"][0]["clientConfig"] = {"caBundle": webhook.ca_bundle, "service": {
        "name": "istio-sidecar-injector", "namespace": "default", "path": "/inject"}}
    kube = install(embedded_api, config)
    started = time.monotonic()
    with pytest.raises(ClusterError, match='no endpoints available for service "istio-sidecar-injector"'):
        create_pod(kube, LABELLED)
    assert time.monotonic() - started < 5
