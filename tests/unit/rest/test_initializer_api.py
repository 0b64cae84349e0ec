"""Istio's Initializer (pytest_nginmesh.workloads.initializer) against the embedded API, with the client it uses
in its pod: pending workloads are hidden from lists and watches until it has PUT them back without itself."""

from __future__ import annotations

import threading

from embedded_api import EmbeddedApi

from pytest_nginmesh.kube import Obj, key_of
from pytest_nginmesh.mesh.injection import INITIALIZER_NAME, PROXY_CONTAINER
from pytest_nginmesh.mesh.manifests import CONTROL_PLANE, load_fixture
from pytest_nginmesh.workloads._kubeclient import KubeClient
from pytest_nginmesh.workloads.initializer import WATCHED, Initializer, initialized, pending_for

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"


def client(api: EmbeddedApi) -> KubeClient:
    host, port = api.url.removeprefix("https://").rsplit(":", 1)
    return KubeClient(host, int(port), api.token(), api.credentials.ca_cert)


def deployment(name: str, **annotations: str) -> Obj:
    """A deployment; Istio 0.2.12's Initializer reads the opt-out annotation on the workload itself."""
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}


def install_initializer_config(api: EmbeddedApi) -> None:
    """The control plane's ConfigMaps and InitializerConfiguration, stored as the installer applies them."""
    wanted = {"ConfigMap", "InitializerConfiguration", "Namespace"}
    api.server.apply([o for o in load_fixture(CONTROL_PLANE) if o["kind"] in wanted])


def names(kube: KubeClient, **query: str) -> list[str]:
    return [o["metadata"]["name"] for o in kube.request("GET", DEPLOYMENTS, query=query)["items"]]


def test_a_pending_workload_is_listed_only_with_include_uninitialized(embedded_api: EmbeddedApi) -> None:
    install_initializer_config(embedded_api)
    kube = client(embedded_api)
    created = kube.request("POST", DEPLOYMENTS, deployment("web"))
    assert pending_for(created, INITIALIZER_NAME)
    assert names(kube) == []
    assert names(kube, includeUninitialized="true") == ["web"]
    assert kube.request("GET", f"{DEPLOYMENTS}/web")["metadata"]["name"] == "web"  # a get shows it


def test_the_initializer_injects_and_removes_itself_so_the_workload_appears(embedded_api: EmbeddedApi) -> None:
    install_initializer_config(embedded_api)
    kube = client(embedded_api)
    kube.request("POST", DEPLOYMENTS, deployment("web"))
    initializer = Initializer(kube, "istio-system", INITIALIZER_NAME)
    (pending,) = kube.request("GET", WATCHED["Deployment"], query={"includeUninitialized": "true"})["items"]
    assert initializer.handle(WATCHED["Deployment"], pending)
    stored = kube.request("GET", f"{DEPLOYMENTS}/web")
    assert "initializers" not in stored["metadata"]
    assert PROXY_CONTAINER in [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]]
    assert names(kube) == ["web"]
    assert not initializer.handle(WATCHED["Deployment"], stored)  # no longer its turn


def test_a_workload_that_opts_out_is_initialized_without_a_sidecar(embedded_api: EmbeddedApi) -> None:
    install_initializer_config(embedded_api)
    kube = client(embedded_api)
    kube.request("POST", DEPLOYMENTS, deployment("plain", **{"sidecar.istio.io/inject": "false"}))
    initializer = Initializer(kube, "istio-system", INITIALIZER_NAME)
    (pending,) = kube.request("GET", WATCHED["Deployment"], query={"includeUninitialized": "true"})["items"]
    initializer.handle(WATCHED["Deployment"], pending)
    stored = kube.request("GET", f"{DEPLOYMENTS}/plain")
    assert "initializers" not in stored["metadata"]
    assert [c["name"] for c in stored["spec"]["template"]["spec"]["containers"]] == ["app"]


def test_only_the_first_pending_initializer_acts_and_the_others_stay_pending() -> None:
    obj = {"metadata": {"initializers": {"pending": [{"name": "other.example.com"}, {"name": INITIALIZER_NAME}]}}}
    assert not pending_for(obj, INITIALIZER_NAME)
    assert pending_for(obj, "other.example.com")
    remaining = initialized(obj, "other.example.com")["metadata"]["initializers"]
    assert remaining == {"pending": [{"name": INITIALIZER_NAME}]}
    assert obj["metadata"]["initializers"]["pending"][0] == {"name": "other.example.com"}  # the input is untouched


def test_the_running_initializer_handles_a_workload_created_after_it_started(embedded_api: EmbeddedApi) -> None:
    install_initializer_config(embedded_api)
    kube = client(embedded_api)
    stop = threading.Event()
    thread = threading.Thread(target=Initializer(kube, "istio-system", INITIALIZER_NAME).run,
                              args=(WATCHED["Deployment"], stop), daemon=True)
    thread.start()
    try:
        created = kube.request("POST", DEPLOYMENTS, deployment("late"))
        store = embedded_api.server.store
        with store.changed:
            while "initializers" in (store.get(key_of(created)) or {}).get("metadata", {}):
                assert store.changed.wait(10), "the initializer did not initialize the deployment within 10 s"
    finally:
        stop.set()
    assert names(kube) == ["late"]
