"""The conformance suites through ``--nginmesh-cluster=existing`` on the embedded cluster's kubeconfig, as a user
points them at any cluster: the same adapter as ``local``, with the helper pod a real cluster needs for iptables
(no node capability), and no file of ``suites/`` aware of it."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from pytest_nginmesh.cluster.base import wait_for
from pytest_nginmesh.cluster.k8s import DEBUG_NAMESPACE, KubernetesCluster, debug_pod_name
from pytest_nginmesh.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SUITES_RUN_TIMEOUT = 900


def kubeconfig_of(settings: Settings, path: Path) -> Path:
    """What ``nginmesh local kubeconfig`` prints, in a file, as a user hands it over."""
    printed = subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", "kubeconfig", "--name",
                              settings.cluster_name], capture_output=True, text=True, timeout=60, check=True)
    path.write_text(printed.stdout)
    return path


def seed_a_failed_helper_pod(cluster: KubernetesCluster) -> None:
    """The iptables helper pod an earlier run left behind, Failed (as after its activeDeadlineSeconds)."""
    [node] = cluster.list_objects("Node")
    name = debug_pod_name(node["metadata"]["name"])
    metadata = {"name": name, "namespace": DEBUG_NAMESPACE, "annotations": {"sidecar.istio.io/inject": "false"}}
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEBUG_NAMESPACE}},
                   {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                    "spec": {"restartPolicy": "Never", "nodeName": node["metadata"]["name"],
                             "containers": [{"name": "debug", "image": "nginmesh/proxy_init:0.2.12",
                                             "command": ["false"]}]}}])

    def failed() -> tuple[bool | None, str]:
        pod = cluster.get("Pod", name, DEBUG_NAMESPACE)
        phase = ((pod or {}).get("status") or {}).get("phase", "absent")
        return (True, "") if phase == "Failed" else (None, phase)

    wait_for("the seeded helper pod to fail", failed, 60)


def test_the_suites_pass_through_the_existing_provider_on_the_embedded_cluster(
        local_mesh: KubernetesCluster, e2e_settings: Settings, tmp_path: Path) -> None:
    kubeconfig = kubeconfig_of(e2e_settings, tmp_path / "kubeconfig")
    seed_a_failed_helper_pod(local_mesh)
    junit = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_NGINMESH_")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "suites", "--nginmesh-cluster=existing",
             f"--nginmesh-kubeconfig={kubeconfig}", "--nginmesh-profile=local", f"--junitxml={junit}",
             f"--nginmesh-report-dir={tmp_path / 'reports'}"],
            cwd=REPO, capture_output=True, text=True, timeout=SUITES_RUN_TIMEOUT, env=env)
    finally:
        local_mesh.delete([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEBUG_NAMESPACE}}])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    cases = {case.get("name", ""): case for case in ET.parse(junit).iter("testcase")}
    skipped = sorted(name for name, case in cases.items() if case.find("skipped") is not None)
    assert skipped == [], skipped  # the local profile claims every feature: nothing is skipped
    assert "test_capture_rules_of_every_injected_pod" in cases  # read through the replaced helper pod
    assert f"using context nginmesh-{e2e_settings.cluster_name} of {kubeconfig}" in output
    report = yaml.safe_load((tmp_path / "reports" / "conformance-report.yaml").read_text())
    assert report["cluster"]["kind"] == "existing"
