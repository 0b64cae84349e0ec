"""Seeded defects: break the running local cluster, see the sidecar and iptables suites fail with the right
finding, repair it, see them pass again."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import settings_env

from pytest_nginmesh.cluster.base import wait_for
from pytest_nginmesh.cluster.local.adapter import LocalCluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.injection import PROXY_CONTAINER
from pytest_nginmesh.mesh.manifests import BOOKINFO, load_fixture
from pytest_nginmesh.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SUITES = [str(REPO / "suites" / "test_sidecar.py"), str(REPO / "suites" / "test_iptables.py")]
PREROUTING_RULE = ["PREROUTING", "-m", "comment", "--comment", "istio/install-istio-prerouting",
                   "-j", "ISTIO_REDIRECT"]
UID_BYPASS_RULE = ["ISTIO_OUTPUT", "-m", "owner", "--uid-owner", "1337", "-m", "comment", "--comment",
                   "istio/bypass-envoy", "-j", "RETURN"]


def run_suites(settings: Settings) -> subprocess.CompletedProcess[str]:
    """The sidecar and iptables suites in a child pytest that reuses the running cluster."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **settings_env(settings)})


def pod_of(cluster: LocalCluster, app: str) -> str:
    pods = [p for p in cluster.list_pods("default") if p["metadata"]["labels"].get("app") == app
            and not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return str(pods[0]["metadata"]["name"])


def nat(cluster: LocalCluster, app: str, *args: str) -> None:
    cluster.exec("default", pod_of(cluster, app), ["iptables", "-t", "nat", *args], container=PROXY_CONTAINER).check()


def settle(cluster: LocalCluster, settings: Settings) -> None:
    cluster.wait_pods_ready("default", settings.timeouts.pod_ready, minimum=6)
    cluster.wait_converged(settings.timeouts.pod_ready)


def fixture_deployment(name: str) -> Obj:
    return next(o for o in load_fixture(BOOKINFO) if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


@contextmanager
def edited_deployment(cluster: LocalCluster, settings: Settings, name: str,
                      edit: Callable[[Obj], None]) -> Iterator[None]:
    """Apply an edited copy of a running (injected) Deployment; restore the fixture's afterwards."""
    deployment = cluster.get("Deployment", name)
    assert deployment is not None
    broken = copy.deepcopy(deployment)
    broken.pop("status", None)
    edit(next(c for c in broken["spec"]["template"]["spec"]["containers"] if c["name"] == PROXY_CONTAINER))
    old_pod = pod_of(cluster, deployment["spec"]["template"]["metadata"]["labels"]["app"])
    app = deployment["spec"]["template"]["metadata"]["labels"]["app"]
    cluster.apply([broken])
    cluster.wait_pods_gone("default", settings.timeouts.pod_ready, {"pod-template-hash": old_pod.split("-")[-2]})

    def running() -> tuple[bool | None, str]:
        phases = [p.get("status", {}).get("phase") for p in cluster.pods("default", {"app": app})]
        return (True, "") if phases == ["Running"] else (None, str(phases))

    wait_for(f"the edited {name} pod running", running, settings.timeouts.pod_ready)
    try:
        yield
    finally:
        cluster.apply([fixture_deployment(name)])  # the injector puts the right sidecar back
        settle(cluster, settings)


def assert_fails_with(settings: Settings, finding_id: str, failing_test: str) -> None:
    result = run_suites(settings)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert f"[{finding_id}]" in output, output[-3000:]
    assert failing_test in output, output[-3000:]


def assert_passes(settings: Settings) -> None:
    result = run_suites(settings)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


@pytest.fixture
def healthy(local_mesh: LocalCluster, e2e_settings: Settings) -> Iterator[LocalCluster]:
    settle(local_mesh, e2e_settings)
    yield local_mesh
    settle(local_mesh, e2e_settings)


def test_prerouting_capture_removed_in_one_pod(healthy: LocalCluster, e2e_settings: Settings) -> None:
    app = "ratings"
    nat(healthy, app, "-D", *PREROUTING_RULE)
    try:
        assert_fails_with(e2e_settings, "iptables.inbound-not-captured", "test_capture_rules_of_every_injected_pod")
    finally:
        nat(healthy, app, "-I", PREROUTING_RULE[0], "1", *PREROUTING_RULE[1:])
    assert_passes(e2e_settings)


def test_uid_bypass_removed(healthy: LocalCluster, e2e_settings: Settings) -> None:
    nat(healthy, "details", "-D", *UID_BYPASS_RULE)
    try:
        assert_fails_with(e2e_settings, "iptables.proxy-traffic-captured", "test_capture_rules_of_every_injected_pod")
    finally:
        nat(healthy, "details", "-I", UID_BYPASS_RULE[0], "2", *UID_BYPASS_RULE[1:])
    assert_passes(e2e_settings)


def test_capture_redirected_to_a_wrong_port(healthy: LocalCluster, e2e_settings: Settings) -> None:
    rule = ["-p", "tcp", "-m", "comment", "--comment", "istio/redirect-to-envoy-port", "-j", "REDIRECT",
            "--to-ports"]
    nat(healthy, "ratings", "-R", "ISTIO_REDIRECT", "1", *rule, "15002")
    try:
        assert_fails_with(e2e_settings, "iptables.inbound-wrong-port", "test_capture_rules_of_every_injected_pod")
    finally:
        nat(healthy, "ratings", "-R", "ISTIO_REDIRECT", "1", *rule, "15001")
    assert_passes(e2e_settings)


def test_proxy_running_as_root(healthy: LocalCluster, e2e_settings: Settings) -> None:
    def as_root(proxy: Obj) -> None:
        proxy["securityContext"].pop("runAsUser")

    with edited_deployment(healthy, e2e_settings, "details-v1", as_root):
        # As root, the agent's own calls to Pilot are captured too: the proxy never gets its config.
        assert_fails_with(e2e_settings, "sidecar.proxy-uid", "test_every_workload_pod_carries_a_conformant_sidecar")
    assert_passes(e2e_settings)


def test_pod_without_sidecar(healthy: LocalCluster, e2e_settings: Settings) -> None:
    rogue = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "rogue", "namespace": "default",
                                                             "labels": {"app": "rogue", "version": "v1"}},
             "spec": {"containers": [{"name": "details", "image": "istio/examples-bookinfo-details-v1:0.2.3",
                                      "ports": [{"containerPort": 9080}]}]}}
    healthy.apply([rogue])
    try:
        healthy.wait_pods_ready("default", e2e_settings.timeouts.pod_ready, {"app": "rogue"})
        assert_fails_with(e2e_settings, "sidecar.proxy-missing", "test_every_workload_pod_carries_a_conformant_sidecar")
    finally:
        healthy.delete([rogue])
        healthy.wait_pods_gone("default", e2e_settings.timeouts.pod_ready, {"app": "rogue"})
    assert_passes(e2e_settings)


def test_proxy_not_ready(healthy: LocalCluster, e2e_settings: Settings) -> None:
    def unreachable_pilot(proxy: Obj) -> None:
        args = proxy["args"]
        args[args.index("--discoveryAddress") + 1] = "istio-pilot.istio-system:1"

    with edited_deployment(healthy, e2e_settings, "ratings-v1", unreachable_pilot):
        assert_fails_with(e2e_settings, "sidecar.proxy-not-ready",
                          "test_every_workload_pod_carries_a_conformant_sidecar")
    assert_passes(e2e_settings)
