"""Service-account tokens (pytest_nginmesh.cluster.local.serviceaccounts) on the embedded API: the token Secret of
each namespace's default account, the admission plug-in that mounts it into pods, and the API accepting it."""

from __future__ import annotations

import base64

import requests
from embedded_api import EmbeddedApi

from pytest_nginmesh.cluster.local.serviceaccounts import (
    TOKEN_MOUNT_PATH,
    TOKEN_SECRET_TYPE,
    api_service,
    ensure_service_account,
    token_user,
)
from pytest_nginmesh.kube import Obj, ObjectKey


def token_secret(api: EmbeddedApi, namespace: str = "default") -> Obj:
    secret = ensure_service_account(api.server.store, namespace, api.credentials.ca_cert.read_text())
    assert secret is not None
    return secret


def call(api: EmbeddedApi, method: str, path: str, token: str, body: Obj | None = None) -> requests.Response:
    return requests.request(method, api.url + path, json=body, headers={"Authorization": f"Bearer {token}"},
                            verify=str(api.credentials.ca_cert), timeout=10)


def pod(name: str, **spec: object) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], **spec}}


def test_each_namespace_gets_one_default_account_with_token_ca_and_namespace(embedded_api: EmbeddedApi) -> None:
    secret = token_secret(embedded_api, "kube-public")
    assert token_secret(embedded_api, "kube-public") == secret  # made once
    assert secret["type"] == TOKEN_SECRET_TYPE
    assert secret["metadata"]["name"].startswith("default-token-")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["namespace"] == "kube-public"
    assert data["ca.crt"] == embedded_api.credentials.ca_cert.read_text()
    assert len(data["token"]) >= 32
    account = embedded_api.server.store.get(ObjectKey("ServiceAccount", "kube-public", "default"))
    assert account is not None and account["secrets"] == [{"name": secret["metadata"]["name"]}]


def test_no_account_is_made_for_a_namespace_that_does_not_exist(embedded_api: EmbeddedApi) -> None:
    assert ensure_service_account(embedded_api.server.store, "gone", "") is None
    assert embedded_api.server.store.objects("ServiceAccount", "gone") == []


def test_a_created_pod_gets_the_token_mounted_in_every_container(embedded_api: EmbeddedApi) -> None:
    created = call(embedded_api, "POST", "/api/v1/namespaces/default/pods", embedded_api.token(),
                   {**pod("web"), "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                                           "containers": [{"name": "app", "image": "busybox"},
                                                          {"name": "side", "image": "busybox"}]}})
    assert created.status_code == 201, created.text
    spec = created.json()["spec"]
    secret_name = token_secret(embedded_api)["metadata"]["name"]
    assert spec["serviceAccountName"] == "default"
    assert {"name": secret_name, "secret": {"secretName": secret_name, "defaultMode": 0o644}} in spec["volumes"]
    for container in spec["initContainers"] + spec["containers"]:
        assert {"name": secret_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH} in container["volumeMounts"]


def test_automount_false_leaves_the_pod_without_a_token(embedded_api: EmbeddedApi) -> None:
    created = call(embedded_api, "POST", "/api/v1/namespaces/default/pods", embedded_api.token(),
                   pod("plain", automountServiceAccountToken=False))
    assert created.status_code == 201, created.text
    assert "volumes" not in created.json()["spec"]


def test_the_api_accepts_a_service_account_token_and_refuses_a_wrong_one(embedded_api: EmbeddedApi) -> None:
    token = base64.b64decode(token_secret(embedded_api)["data"]["token"]).decode()
    assert token_user(embedded_api.server.store, f"Bearer {token}") == "system:serviceaccount:default:default"
    assert call(embedded_api, "GET", "/api/v1/namespaces/default/pods", token).status_code == 200
    refused = call(embedded_api, "GET", "/api/v1/namespaces/default/pods", token[:-1] + "x")
    assert (refused.status_code, refused.json()["reason"]) == (401, "Unauthorized")
    assert token_user(embedded_api.server.store, f"Basic {token}") is None


def test_a_deleted_namespace_takes_its_token_and_the_token_stops_working(embedded_api: EmbeddedApi) -> None:
    admin = embedded_api.token()
    assert call(embedded_api, "POST", "/api/v1/namespaces", admin,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}).status_code == 201
    token = base64.b64decode(token_secret(embedded_api, "team")["data"]["token"]).decode()
    assert call(embedded_api, "GET", "/api/v1/namespaces/team/configmaps", token).status_code == 200
    assert call(embedded_api, "DELETE", "/api/v1/namespaces/team", admin).status_code == 200
    assert call(embedded_api, "GET", "/api/v1/namespaces/default/pods", token).status_code == 401


def test_the_kubernetes_service_leads_to_the_api_port_on_the_link_address() -> None:
    service, endpoints = api_service("10.2.0.1", "10.3.0.1", 40123)
    assert (service["metadata"]["name"], service["metadata"]["namespace"]) == ("kubernetes", "default")
    assert "selector" not in service["spec"]
    assert service["spec"]["clusterIP"] == "10.2.0.1"
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 40123}]
    assert endpoints["subsets"] == [{"addresses": [{"ip": "10.3.0.1"}],
                                     "ports": [{"name": "https", "port": 40123, "protocol": "TCP"}]}]
