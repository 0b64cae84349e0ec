"""The running embedded cluster is a Kubernetes: real kubectl and the official Python client against the
kubeconfig `nginmesh local kubeconfig` prints, on the live mesh (pods, logs, exec, waits, rollouts)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client, config, watch
from kubernetes.stream import stream

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.mesh.manifests import load_fixture
from pytest_nginmesh.settings import Settings

NEEDS_KUBECTL = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def kubeconfig(local_mesh: KubernetesCluster, e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kubeconfig as a user gets it: from `nginmesh local kubeconfig --name …`."""
    result = subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", "kubeconfig",
                             "--name", e2e_settings.cluster_name], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(result.stdout)
    return path


@pytest.fixture
def kubectl(kubeconfig: Path) -> Kubectl:
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *args], capture_output=True, text=True,
                              timeout=120, input=stdin)

    return run


def _pod(local_mesh: KubernetesCluster, app: str, namespace: str = "default") -> str:
    return next(p["metadata"]["name"] for p in local_mesh.list_pods(namespace)
                if p["metadata"].get("labels", {}).get("app") == app)


@NEEDS_KUBECTL
def test_get_pods_shows_the_injected_bookinfo(kubectl: Kubectl) -> None:
    result = kubectl("get", "pods", "-l", "app=reviews")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert len(rows) == 3 and {row[1] for row in rows} == {"2/2"} and {row[2] for row in rows} == {"Running"}
    wide = kubectl("get", "pods", "-A", "-o", "wide").stdout
    assert "istio-system" in wide and "ingress" in wide


@NEEDS_KUBECTL
def test_describe_logs_and_exec(kubectl: Kubectl, local_mesh: KubernetesCluster) -> None:
    pod = _pod(local_mesh, "productpage")
    described = kubectl("describe", "pod", pod)
    assert described.returncode == 0, described.stderr
    assert "istio-proxy" in described.stdout and "istio-init" in described.stdout
    logs = kubectl("logs", pod, "-c", "istio-proxy")
    assert logs.returncode == 0, logs.stderr
    failed = kubectl("exec", pod, "-c", "productpage", "--", "sh", "-c", "echo inside; exit 3")
    assert (failed.returncode, failed.stdout) == (3, "inside\n")


@NEEDS_KUBECTL
def test_wait_and_rollout_status(kubectl: Kubectl) -> None:
    waited = kubectl("wait", "--for=condition=Ready", "pod", "-l", "app=ratings", "--timeout=60s")
    assert waited.returncode == 0, waited.stderr
    rolled = kubectl("rollout", "status", "deployment/ratings-v1", "--timeout=60s")
    assert rolled.returncode == 0, rolled.stderr
    assert "successfully rolled out" in rolled.stdout


@NEEDS_KUBECTL
def test_namespace_and_configmap_lifecycle(kubectl: Kubectl, tmp_path: Path) -> None:
    assert kubectl("create", "namespace", "kubectl-e2e").returncode == 0
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: kubectl-e2e}\n"
                        "data: {k: one}\n")
    assert "created" in kubectl("apply", "-f", str(manifest)).stdout
    manifest.write_text(manifest.read_text().replace("one", "two"))
    assert "configured" in kubectl("apply", "-f", str(manifest)).stdout
    assert kubectl("get", "cm", "c", "-n", "kubectl-e2e", "-o", "jsonpath={.data.k}").stdout == "two"
    assert kubectl("delete", "-f", str(manifest)).returncode == 0
    assert kubectl("delete", "namespace", "kubectl-e2e").returncode == 0


@NEEDS_KUBECTL
def test_deleting_a_pod_waits_until_the_kubelet_has_stopped_it(kubectl: Kubectl, tmp_path: Path) -> None:
    # kubectl delete waits (--wait is its default) by watching the marked pod from its list's resourceVersion.
    manifest = tmp_path / "pod.yaml"
    manifest.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: sleeper, namespace: default, annotations: "
                        "{sidecar.istio.io/inject: 'false'}}\nspec: {containers: [{name: s, "
                        "image: 'nginmesh/proxy_init:0.2.12', command: [sleep, '300']}]}\n")
    assert kubectl("apply", "-f", str(manifest)).returncode == 0
    assert kubectl("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s").returncode == 0
    deleted = kubectl("delete", "pod", "sleeper", "--timeout=30s")
    assert deleted.returncode == 0, deleted.stderr
    assert "NotFound" in kubectl("get", "pod", "sleeper").stderr


def test_the_official_client_lists_reads_watches_execs_and_logs(kubeconfig: Path,
                                                                local_mesh: KubernetesCluster) -> None:
    api_client = config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(api_client)
    pods = core.list_namespaced_pod("default", label_selector="app=details").items
    assert len(pods) == 1 and pods[0].status.phase == "Running"
    name = pods[0].metadata.name
    assert core.read_namespaced_pod(name, "default").spec.containers[0].name == "details"
    events = list(watch.Watch().stream(core.list_namespaced_pod, "default", label_selector="app=details",
                                       timeout_seconds=2))
    assert [e["type"] for e in events][:1] == ["ADDED"]
    output = stream(core.connect_get_namespaced_pod_exec, name, "default", container="details",
                    command=["sh", "-c", "echo from-exec"], stderr=True, stdin=False, stdout=True, tty=False)
    assert output.strip() == "from-exec"
    assert isinstance(core.read_namespaced_pod_log(name, "default", container="istio-proxy", tail_lines=5), str)
    apps = client.AppsV1Api(api_client)
    assert {d.metadata.name for d in apps.list_namespaced_deployment("default").items} >= {"details-v1"}


IN_CLUSTER_CALL = """
import json, ssl, sys, urllib.request, urllib.error
account = "/var/run/secrets/kubernetes.io/serviceaccount"
namespace = open(account + "/namespace").read()
context = ssl.create_default_context(cafile=account + "/ca.crt")
request = urllib.request.Request("https://kubernetes.default.svc/api/v1/namespaces/" + namespace + "/pods")
if sys.argv[1] == "token":
    request.add_header("Authorization", "Bearer " + open(account + "/token").read())
try:
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        print(response.status, len(json.load(response)["items"]))
except urllib.error.HTTPError as e:
    print(e.code, json.load(e)["reason"])
"""


def test_a_pod_reaches_the_api_at_the_kubernetes_service_with_its_service_account_token(
        local_mesh: KubernetesCluster) -> None:
    """As on any Kubernetes: the `kubernetes` Service's ClusterIP leads to the API server, which the pod's mounted
    token opens and nothing else does; the CA mounted beside it verifies the server."""
    service = local_mesh.get("Service", "kubernetes", "default")
    assert service is not None and service["spec"]["ports"][0]["port"] == 443
    pod = next(p["metadata"]["name"] for p in local_mesh.list_pods("istio-system")
               if p["metadata"].get("labels", {}).get("istio") == "pilot")  # no sidecar: it calls the API directly
    hosts = local_mesh.exec("istio-system", pod, ["getent", "hosts", "kubernetes.default.svc"]).check().stdout
    assert hosts.split()[0] == service["spec"]["clusterIP"]
    with_token = local_mesh.exec("istio-system", pod, ["python3", "-c", IN_CLUSTER_CALL, "token"]).check()
    status, count = with_token.stdout.split()
    assert status == "200" and int(count) >= 1, with_token.stdout
    without = local_mesh.exec("istio-system", pod, ["python3", "-c", IN_CLUSTER_CALL, "none"]).check()
    assert without.stdout.split() == ["401", "Unauthorized"]


@NEEDS_KUBECTL
def test_get_routerules_through_the_crds_pilot_registered(kubectl: Kubectl, local_mesh: KubernetesCluster,
                                                          e2e_settings: Settings) -> None:
    crds = kubectl("get", "crds", "-o", "name")
    assert crds.returncode == 0, crds.stderr
    assert {"customresourcedefinition.apiextensions.k8s.io/" + n for n in (
        "routerules.config.istio.io", "ingressrules.config.istio.io", "egressrules.config.istio.io",
        "destinationpolicies.config.istio.io")} <= set(crds.stdout.split())
    rules = load_fixture("routes/route-rule-all-v1.yaml")
    local_mesh.apply(rules)
    try:
        listed = kubectl("get", "routerules", "-A", "-o", "name")
        assert listed.returncode == 0, listed.stderr
        assert {f"routerule.config.istio.io/{r['metadata']['name']}" for r in rules} <= set(listed.stdout.split())
    finally:
        local_mesh.delete(rules)
        local_mesh.wait_converged(e2e_settings.timeouts.convergence)


@NEEDS_KUBECTL
def test_the_services_proxy_reaches_a_service_by_name_and_port(kubectl: Kubectl) -> None:
    for service in ("productpage:9080", "productpage:http", "productpage"):
        result = kubectl("get", "--raw", f"/api/v1/namespaces/default/services/{service}/proxy/productpage")
        assert result.returncode == 0 and "Simple Bookstore App" in result.stdout, (service, result.stderr)
    missing = kubectl("get", "--raw", "/api/v1/namespaces/default/services/nosuch:9080/proxy/")
    assert missing.returncode == 1 and 'services "nosuch" not found' in missing.stderr
