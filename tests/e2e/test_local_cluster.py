"""The local cluster end to end: Bookinfo injected and served, the CLI, the kubelet's restarts and errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from helpers import settings_env

from pytest_nginmesh.bookinfo import reviews_version
from pytest_nginmesh.cluster.base import pod_is_ready, wait_for
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local.kubelet import instance_cgroup, main_process
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.injection import STATUS_ANNOTATION
from pytest_nginmesh.settings import Settings


def nginmesh(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", *args],
                          capture_output=True, text=True, input=stdin, timeout=120,
                          env={**os.environ, **settings_env(settings)})


def bookinfo_pods(cluster: KubernetesCluster) -> list[Obj]:
    return cluster.list_pods("default")


def test_get_pods_shows_six_injected_running_bookinfo_pods(local_mesh: KubernetesCluster,
                                                           e2e_settings: Settings) -> None:
    result = nginmesh(e2e_settings, "get", "pods", "-o", "json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["kind"] == "List"
    pods = listing["items"]
    assert sorted(p["metadata"]["labels"]["app"] + "-" + p["metadata"]["labels"]["version"] for p in pods) == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]
    for pod in pods:
        status = pod["status"]
        assert status["phase"] == "Running"
        assert pod["metadata"]["annotations"][STATUS_ANNOTATION] == "injected-version-0.2.12"
        proxy = next(c for c in status["containerStatuses"] if c["name"] == "istio-proxy")
        assert proxy["ready"] is True
        init = next(c for c in status["initContainerStatuses"] if c["name"] == "istio-init")
        assert init["state"]["terminated"]["exitCode"] == 0
        assert status["podIP"] and status["hostIP"]


def test_ingress_serves_productpage_with_every_reviews_version(local_mesh: KubernetesCluster,
                                                               e2e_settings: Settings) -> None:
    url = nginmesh(e2e_settings, "ingress-url").stdout.strip()
    assert url.startswith("http://")
    seen: Counter[tuple[int, str]] = Counter()
    with requests.Session() as session:
        for _ in range(30):
            response = session.get(url + "/productpage", timeout=10)
            seen[(response.status_code, reviews_version(response.text))] += 1
    assert {status for status, _ in seen} == {200}
    assert {version for _, version in seen} == {"v1", "v2", "v3"}


def test_exec_iptables_save_in_the_proxy_shows_the_capture_rules(local_mesh: KubernetesCluster,
                                                                  e2e_settings: Settings) -> None:
    pod = bookinfo_pods(local_mesh)[0]["metadata"]["name"]
    result = nginmesh(e2e_settings, "exec", pod, "-c", "istio-proxy", "--", "iptables-save", "-t", "nat")
    assert result.returncode == 0, result.stderr
    assert "-A PREROUTING -m comment --comment \"istio/install-istio-prerouting\" -j ISTIO_REDIRECT" in result.stdout
    assert "--uid-owner 1337" in result.stdout
    assert "REDIRECT --to-ports 15001" in result.stdout
    whoami = nginmesh(e2e_settings, "exec", pod, "-c", "istio-proxy", "--", "id", "-u")
    assert whoami.stdout.strip() == "1337"


def test_service_url_and_hosts_names(local_mesh: KubernetesCluster, e2e_settings: Settings) -> None:
    url = nginmesh(e2e_settings, "url", "details:9080").stdout.strip()
    assert requests.get(url + "/details/0", timeout=10).json()["author"] == "William Shakespeare"
    pod = next(p for p in bookinfo_pods(local_mesh) if p["metadata"]["labels"]["app"] == "productpage")
    hosts = local_mesh.exec("default", pod["metadata"]["name"], ["getent", "hosts", "reviews"]).check().stdout
    reviews = local_mesh.get("Service", "reviews")
    assert reviews is not None and hosts.split()[0] == reviews["spec"]["clusterIP"]


def test_bad_manifest_and_missing_namespace_are_refused_with_exit_2(local_mesh: KubernetesCluster,
                                                                     e2e_settings: Settings) -> None:
    broken = nginmesh(e2e_settings, "apply", "-f", "-", stdin="kind: Pod\nmetadata: [unclosed\n")
    assert broken.returncode == 2
    assert len(broken.stderr.strip().splitlines()) == 1 and "not valid YAML" in broken.stderr
    orphan = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "x", "namespace": "nowhere"}})
    missing = nginmesh(e2e_settings, "apply", "-f", "-", stdin=orphan)
    assert missing.returncode == 2 and 'namespaces "nowhere" not found' in missing.stderr


@pytest.fixture
def scratch_namespace(local_mesh: KubernetesCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted (and waited for) afterwards."""
    name = "t-" + request.node.name.replace("_", "-")[5:40].strip("-").lower()
    local_mesh.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    yield name
    local_mesh.delete([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    local_mesh.wait_pods_gone(name, 30)


def deployment(name: str, namespace: str, image: str, annotations: dict[str, str] | None = None,
               init_args: list[str] | None = None) -> Obj:
    spec: Obj = {"containers": [{"name": name, "image": image, "ports": [{"containerPort": 9080}]}]}
    if init_args is not None:
        spec["initContainers"] = [{"name": "setup", "image": "nginmesh/proxy_init:0.2.12", "args": init_args}]
    return {
        "apiVersion": "extensions/v1beta1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations or {}},
        "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }


def only_pod(cluster: KubernetesCluster, namespace: str) -> Obj:
    pods = cluster.list_pods(namespace)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def wait_pod(cluster: KubernetesCluster, namespace: str, what: str, check: Callable[[Obj], bool]) -> Obj:
    def probe() -> tuple[Obj | None, str]:
        pods = cluster.list_pods(namespace)
        for pod in pods:
            if check(pod):
                return pod, ""
        return None, json.dumps([p.get("status") for p in pods])[:400]

    return wait_for(what, probe, 60)


def test_opted_out_deployment_gets_no_sidecar(local_mesh: KubernetesCluster, scratch_namespace: str) -> None:
    local_mesh.apply([deployment("ratings", scratch_namespace, "istio/examples-bookinfo-ratings-v1:0.2.3",
                                 {"sidecar.istio.io/inject": "false"})])
    pods = local_mesh.wait_pods_ready(scratch_namespace, 60)
    assert [c["name"] for c in pods[0]["spec"]["containers"]] == ["ratings"]
    assert STATUS_ANNOTATION not in (pods[0]["metadata"].get("annotations") or {})


def test_killed_container_is_restarted_and_counted(local_mesh: KubernetesCluster, scratch_namespace: str) -> None:
    local_mesh.apply([deployment("ratings", scratch_namespace, "istio/examples-bookinfo-ratings-v1:0.2.3")])
    pod = local_mesh.wait_pods_ready(scratch_namespace, 60)[0]
    app = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "ratings")
    pid = main_process(instance_cgroup(local_mesh.name, pod, app))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)

    def restarted(pod: Obj) -> bool:
        status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "ratings")
        return status["restartCount"] == 1 and status["ready"] and pod_is_ready(pod)

    pod = wait_pod(local_mesh, scratch_namespace, "the killed container back and ready", restarted)
    status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "ratings")
    assert status["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    # A new instance, a new ID; the terminated one keeps its own, as a container runtime reports them.
    assert status["lastState"]["terminated"]["containerID"] == app["containerID"] != status["containerID"]
    previous = local_mesh.logs(scratch_namespace, pod["metadata"]["name"], "ratings", previous=True)
    assert "ratings-v1 (Bookinfo 0.2.3) listening" in previous
    assert any(e["reason"] == "BackOff" for e in local_mesh.events(scratch_namespace))


def test_unknown_image_leaves_the_pod_in_err_image_pull(local_mesh: KubernetesCluster, scratch_namespace: str) -> None:
    local_mesh.apply([deployment("mystery", scratch_namespace, "example.com/no/such-image:1.0",
                                 {"sidecar.istio.io/inject": "false"})])

    def pulling(pod: Obj) -> bool:
        states = [c["state"] for c in pod.get("status", {}).get("containerStatuses") or []]
        return any(s.get("waiting", {}).get("reason") == "ErrImagePull" for s in states)

    pod = wait_pod(local_mesh, scratch_namespace, "ErrImagePull", pulling)
    assert pod["status"]["phase"] == "Pending"
    waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"]
    assert "example.com/no/such-image:1.0" in waiting["message"] and "catalogue" in waiting["message"]


def test_failing_init_container_is_retried_and_blocks_the_pod(local_mesh: KubernetesCluster,
                                                               scratch_namespace: str) -> None:
    local_mesh.apply([deployment("details", scratch_namespace, "istio/examples-bookinfo-details-v1:0.2.3",
                                 {"sidecar.istio.io/inject": "false"}, init_args=["-p", "notaport"])])

    def retried(pod: Obj) -> bool:
        inits = pod.get("status", {}).get("initContainerStatuses") or []
        return bool(inits) and inits[0]["restartCount"] >= 2

    pod = wait_pod(local_mesh, scratch_namespace, "the init container retried", retried)
    init = pod["status"]["initContainerStatuses"][0]
    assert init["lastState"]["terminated"]["exitCode"] == 2
    assert pod["status"]["phase"] == "Pending"
    assert not pod_is_ready(pod)


def test_pods_of_a_deleted_deployment_leave_no_namespace(local_mesh: KubernetesCluster, scratch_namespace: str,
                                                         e2e_settings: Settings) -> None:
    manifest = deployment("ratings", scratch_namespace, "istio/examples-bookinfo-ratings-v1:0.2.3",
                          {"sidecar.istio.io/inject": "false"})
    local_mesh.apply([manifest])
    pod = local_mesh.wait_pods_ready(scratch_namespace, 60)[0]
    netns = f"nm_{e2e_settings.cluster_name}_{scratch_namespace}_{pod['metadata']['name']}"
    assert Path(f"/run/netns/{netns}").exists()
    local_mesh.delete([manifest])
    local_mesh.wait_pods_gone(scratch_namespace, 30)
    assert not Path(f"/run/netns/{netns}").exists()
