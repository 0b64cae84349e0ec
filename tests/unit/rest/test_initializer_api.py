"""Istio's Initializer (pytest_nginmesh.workloads.initializer) against the embedded API, with the client it uses
in its pod: pending workloads are hidden from lists and watches until it has PUT them back without itself."""

from __future__ import annotations

import threading

import pytest
from embedded_api import EmbeddedApi

from pytest_nginmesh.kube import Obj, key_of
from pytest_nginmesh.mesh.injection import INITIALIZER_NAME, PROXY_CONTAINER
from pytest_nginmesh.mesh.manifests import control_plane
from pytest_nginmesh.profiles import Profile, get_profile, injector_args
from pytest_nginmesh.workloads._kubeclient import KubeClient
from pytest_nginmesh.workloads.initializer import WATCHED, Initializer, initialized, pending_for

DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
LOCAL = get_profile("local")
LOCAL_ARGS = LOCAL.proxy_args


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


def install_initializer_config(api: EmbeddedApi, profile: Profile = LOCAL) -> None:
    """The control plane's ConfigMaps and InitializerConfiguration, stored as the installer applies them."""
    wanted = {"ConfigMap", "InitializerConfiguration", "Namespace"}
    api.server.apply([o for o in control_plane(profile) if o["kind"] in wanted])


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
    initializer = Initializer(kube, "istio-system", INITIALIZER_NAME, LOCAL_ARGS)
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
    initializer = Initializer(kube, "istio-system", INITIALIZER_NAME, LOCAL_ARGS)
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
    thread = threading.Thread(target=Initializer(kube, "istio-system", INITIALIZER_NAME, LOCAL_ARGS).run,
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


@pytest.mark.parametrize("name", ["local", "nginmesh-0.2.12", "nginmesh-0.3.0"])
def test_each_release_twins_initializer_writes_its_release_s_proxy_command_line(embedded_api: EmbeddedApi,
                                                                                 name: str) -> None:
    """The twin's control plane (its mesh ConfigMap, its Initializer image's tag) makes the proxies Istio 0.2.12
    injects (Pilot on 8080, no --controlPlaneAuthPolicy), or 0.3.0's (15003, with it)."""
    profile = get_profile(name)
    install_initializer_config(embedded_api, profile)
    (initializer,) = [o for o in control_plane(profile) if o["metadata"]["name"] == "istio-initializer"]
    release = initializer["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
    kube = client(embedded_api)
    kube.request("POST", DEPLOYMENTS, deployment("web"))
    (pending,) = kube.request("GET", WATCHED["Deployment"], query={"includeUninitialized": "true"})["items"]
    Initializer(kube, "istio-system", INITIALIZER_NAME, injector_args(release)).handle(WATCHED["Deployment"], pending)
    (proxy,) = [c for c in kube.request("GET", f"{DEPLOYMENTS}/web")["spec"]["template"]["spec"]["containers"]
                if c["name"] == PROXY_CONTAINER]
    flags = proxy["args"]
    assert flags[flags.index("--discoveryAddress") + 1] == profile.proxy_args.discovery_address
    assert ("--controlPlaneAuthPolicy" in flags) == profile.proxy_args.control_plane_auth_policy
    assert profile.proxy_args.discovery_address.endswith(":8080" if name == "nginmesh-0.2.12" else ":15003")
