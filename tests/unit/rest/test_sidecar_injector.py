"""Istio 0.7.1's injection webhook (pytest_nginmesh.workloads.sidecar_injector) behind the embedded API: the 0.7.1
twin's control plane config, a pod created through the API in the labelled namespace comes back injected with
the release's command line, and the webhook's policy (ignored namespaces, the pod's own opt-out) holds."""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from embedded_api import EmbeddedApi
from test_mutating_webhooks import client, pod

from pytest_nginmesh.cluster.local.rest.pki import issue
from pytest_nginmesh.cluster.local.webhooks import apply_json_patch
from pytest_nginmesh.injection_policy import INJECT_ANNOTATION, STATUS_ANNOTATION
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.manifests import WEBHOOK_NAME, control_plane
from pytest_nginmesh.profiles import get_profile
from pytest_nginmesh.workloads._common import HttpServer
from pytest_nginmesh.workloads.sidecar_injector import Injector, webhook_handler

PROFILE = get_profile("nginmesh-0.7.1")


def twin_config(kind: str, name: str) -> Obj:
    (found,) = [o for o in control_plane(PROFILE) if (o["kind"], o["metadata"]["name"]) == (kind, name)]
    return found


@pytest.fixture
def injector(tmp_path: Path) -> Injector:
    """The webhook's files as its Deployment mounts them from the twin's ConfigMaps."""
    (tmp_path / "config").write_text(twin_config("ConfigMap", "istio-inject")["data"]["config"])
    (tmp_path / "mesh").write_text(twin_config("ConfigMap", "istio")["data"]["mesh"])
    return Injector(tmp_path / "config", tmp_path / "mesh", PROFILE.proxy_args)


@pytest.fixture
def webhook_url(injector: Injector) -> Iterator[tuple[str, str]]:
    """The webhook on loopback over HTTPS: (its URL, the caBundle that verifies it)."""
    ca, cert, key = issue("test-ca", "127.0.0.1", [x509.DNSName("localhost")])
    server = HttpServer(("127.0.0.1", 0), webhook_handler(injector))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    directory = Path(injector.inject_config).parent
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(key)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}/inject", base64.b64encode(ca).decode()
    server.shutdown()
    server.server_close()


def test_a_pod_created_in_the_labelled_namespace_gets_the_releases_sidecar(embedded_api: EmbeddedApi,
                                                                          webhook_url: tuple[str, str]) -> None:
    url, ca_bundle = webhook_url
    config = twin_config("MutatingWebhookConfiguration", "istio-sidecar-injector")
    config["webhooks"][0]["clientConfig"] = {"url": url, "caBundle": ca_bundle}  # loopback: no cluster IP here
    kube = client(embedded_api)
    kube.request("POST", "/api/v1/namespaces", twin_config("Namespace", "default") | {"metadata": {
        "name": "shop", "labels": {"istio-injection": "enabled"}}})
    kube.request("POST", "/apis/admissionregistration.k8s.io/v1beta1/mutatingwebhookconfigurations", config)
    created = kube.request("POST", "/api/v1/namespaces/shop/pods", pod())
    plain = kube.request("POST", "/api/v1/namespaces/default/pods", pod())  # not labelled here
    containers = {c["name"]: c for c in created["spec"]["containers"]}
    assert set(containers) == {"app", "istio-proxy"}
    assert containers["istio-proxy"]["image"] == PROFILE.proxy_image == "nginxinc/nginmesh_proxy_debug:0.7.1"
    assert [c["image"] for c in created["spec"]["initContainers"]] == [PROFILE.init_image]
    flags = containers["istio-proxy"]["args"]
    assert flags[flags.index("--discoveryAddress") + 1] == "istio-pilot.istio-system:15007"
    assert "--controlPlaneAuthPolicy" not in flags
    assert STATUS_ANNOTATION in created["metadata"]["annotations"]
    assert [c["name"] for c in plain["spec"]["containers"]] == ["app"]
    assert config["webhooks"][0]["name"] == WEBHOOK_NAME


@pytest.mark.parametrize(("namespace", "annotations", "injected"), [
    ("shop", {}, True),
    ("shop", {INJECT_ANNOTATION: "false"}, False),  # the pod's own opt-out: the webhook sees the pod
    ("kube-system", {}, False),  # webhook.go ignoredNamespaces
    ("kube-public", {}, False),
    ("istio-system", {}, True),  # ignored by the 0.2/0.3 Initializer, not by the 0.7 webhook
])
def test_the_webhooks_policy(injector: Injector, namespace: str, annotations: dict[str, str],
                             injected: bool) -> None:
    subject = pod() | {"metadata": {"name": "web", "annotations": annotations}}
    config = injector.review({"apiVersion": "admission.k8s.io/v1beta1", "request": {
        "uid": "u1", "namespace": namespace, "object": subject}})["response"]
    assert config["allowed"] and config["uid"] == "u1"
    assert ("patch" in config) == injected
    if injected:
        result = apply_json_patch(subject, yaml.safe_load(base64.b64decode(config["patch"])))
        assert [c["name"] for c in result["spec"]["containers"]] == ["app", "istio-proxy"]


def test_an_injected_pod_is_not_injected_again(injector: Injector) -> None:
    subject = pod() | {"metadata": {"name": "web", "annotations": {STATUS_ANNOTATION: "injected-version-x"}}}
    config = injector.review({"request": {"uid": "u", "namespace": "shop", "object": subject}})
    assert "patch" not in config["response"]
