"""Seeding defects into the running local cluster, and running suites against it in a child pytest."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers import settings_env

from pytest_nginmesh.cluster.base import wait_for
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.injection import PROXY_CONTAINER
from pytest_nginmesh.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEFECTIVE_AGENT = REPO / "tests" / "defective_agent.py"
SUITES = [str(REPO / "suites" / "test_sidecar.py"), str(REPO / "suites" / "test_iptables.py")]
PREROUTING_RULE = ["PREROUTING", "-m", "comment", "--comment", "istio/install-istio-prerouting",
                   "-j", "ISTIO_REDIRECT"]
UID_BYPASS_RULE = ["ISTIO_OUTPUT", "-m", "owner", "--uid-owner", "1337", "-m", "comment", "--comment",
                   "istio/bypass-envoy", "-j", "RETURN"]


def run_suites(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """Suites (the sidecar and iptables ones unless given) in a child pytest reusing the running cluster."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(args or SUITES)],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **settings_env(settings)})


def pod_of(cluster: KubernetesCluster, app: str) -> str:
    pods = [p for p in cluster.list_pods("default") if p["metadata"]["labels"].get("app") == app
            and not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return str(pods[0]["metadata"]["name"])


def nat(cluster: KubernetesCluster, app: str, *args: str) -> None:
    cluster.exec("default", pod_of(cluster, app), ["iptables", "-t", "nat", *args], container=PROXY_CONTAINER).check()


def settle(cluster: KubernetesCluster, settings: Settings) -> None:
    cluster.wait_pods_ready("default", settings.timeouts.pod_ready, minimum=6)
    cluster.wait_converged(settings.timeouts.pod_ready)


def replace(cluster: KubernetesCluster, obj: Obj) -> None:
    """PUT ``obj`` over the live object (``kubectl replace``): exactly this spec, also where an apply would
    keep a field the last applied manifest did not set (the injected sidecar's)."""
    resource = cluster.api.resource(obj["apiVersion"], obj["kind"])
    path = resource.path(obj["metadata"]["namespace"], obj["metadata"]["name"])
    current = cluster.api.request("GET", path)
    body = {**obj, "metadata": {**obj["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]}}
    body.pop("status", None)
    cluster.api.request("PUT", path, body=body)


@contextmanager
def edited_deployment(cluster: KubernetesCluster, settings: Settings, name: str,
                      edit: Callable[[Obj], None]) -> Iterator[None]:
    """Replace a running (injected) Deployment with an edited copy, and with the original afterwards."""
    deployment = cluster.get("Deployment", name)
    assert deployment is not None
    broken = copy.deepcopy(deployment)
    edit(next(c for c in broken["spec"]["template"]["spec"]["containers"] if c["name"] == PROXY_CONTAINER))
    old_pod = pod_of(cluster, deployment["spec"]["template"]["metadata"]["labels"]["app"])
    app = deployment["spec"]["template"]["metadata"]["labels"]["app"]
    replace(cluster, broken)
    cluster.wait_pods_gone("default", settings.timeouts.pod_ready, {"pod-template-hash": old_pod.split("-")[-2]})

    def running() -> tuple[bool | None, str]:
        phases = [p.get("status", {}).get("phase") for p in cluster.pods("default", {"app": app})]
        return (True, "") if phases == ["Running"] else (None, str(phases))

    wait_for(f"the edited {name} pod running", running, settings.timeouts.pod_ready)
    try:
        yield
    finally:
        replace(cluster, deployment)
        settle(cluster, settings)


def assert_fails_with(settings: Settings, evidence: str, failing_test: str, *args: str) -> None:
    """The suites fail, in ``failing_test``, and the output names the problem (a finding id or a message)."""
    result = run_suites(settings, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert evidence in output, output[-3000:]
    assert f"FAILED {failing_test}" in output or f"::{failing_test}" in output, output[-3000:]


def assert_passes(settings: Settings, *args: str) -> None:
    result = run_suites(settings, *args)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def with_defect(name: str) -> Callable[[Obj], None]:
    """An edit for ``edited_deployment``: the proxy runs the agent through tests/defective_agent.py, which
    distorts what it renders as ``name`` says (its command goes ahead of the injected args, as on any runtime)."""

    def edit(proxy: Obj) -> None:
        proxy["command"] = [sys.executable, "-I", "-u", str(DEFECTIVE_AGENT), name]

    return edit
