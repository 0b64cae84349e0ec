"""Real kubectl against the embedded API server: the one on PATH and each versioned kubectl 1.30+ beside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from embedded_api import EmbeddedApi, start_container, stop_container

REPO = Path(__file__).resolve().parents[3]
BOOKINFO = REPO / "fixtures" / "bookinfo" / "bookinfo.yaml"


def _kubectls() -> list[str]:
    found = shutil.which("kubectl")
    if found is None:
        return []
    directory = Path(os.path.realpath(found)).parent
    versioned = sorted(p.name for p in directory.glob("kubectl.1.*")
                       if p.name.split(".")[-1].isdigit() and int(p.name.split(".")[-1]) >= 30)
    return ["kubectl", *(str(directory / name) for name in versioned)]


KUBECTLS = _kubectls()
pytestmark = pytest.mark.skipif(not KUBECTLS, reason="kubectl is not on PATH")


def _runner(binary: str, api: EmbeddedApi):  # type: ignore[no-untyped-def]
    def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        result = subprocess.run([binary, f"--kubeconfig={api.kubeconfig}", *args],
                                capture_output=True, text=True, timeout=60, input=stdin)
        return result.returncode, result.stdout, result.stderr

    return run


@pytest.fixture
def kubectl(embedded_api: EmbeddedApi):  # type: ignore[no-untyped-def]
    """Run the kubectl on PATH against the embedded API; returns (exit code, stdout, stderr)."""
    return _runner("kubectl", embedded_api)


@pytest.fixture(params=KUBECTLS or ["kubectl"], ids=lambda p: Path(p).name)
def each_kubectl(request: pytest.FixtureRequest, embedded_api: EmbeddedApi):  # type: ignore[no-untyped-def]
    """Each kubectl (PATH, then 1.30 and newer) against the embedded API, for the flows whose wire differs."""
    return _runner(request.param, embedded_api)


def test_get_create_apply_update_delete(each_kubectl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    kubectl = each_kubectl
    assert kubectl("create", "namespace", "shop")[0] == 0
    code, out, err = kubectl("apply", "-f", str(BOOKINFO))
    assert code == 0, err
    assert "deployment.extensions/reviews-v3 created" in out
    changed = tmp_path / "bookinfo.yaml"
    changed.write_text(BOOKINFO.read_text().replace("replicas: 1", "replicas: 2", 1))
    code, out, err = kubectl("apply", "-f", str(changed))
    assert code == 0, err
    assert "configured" in out and "unchanged" in out
    code, out, _ = kubectl("get", "deployments", "-o", "json")
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in json.loads(out)["items"]}
    assert sorted(replicas.values()) == [1, 1, 1, 1, 1, 2]
    code, out, _ = kubectl("get", "svc", "-l", "app=reviews", "-o", "yaml")
    assert [s["metadata"]["name"] for s in yaml.safe_load(out)["items"]] == ["reviews"]
    code, out, _ = kubectl("get", "ns")
    assert out.split()[:3] == ["NAME", "STATUS", "AGE"] and "shop" in out
    code, out, err = kubectl("delete", "-f", str(BOOKINFO))
    assert code == 0, err
    assert kubectl("get", "deployments", "-A", "-o", "name")[1] == ""


def test_get_pods_prints_the_seed_columns(kubectl, embedded_api: EmbeddedApi) -> None:  # type: ignore[no-untyped-def]
    embedded_api.server.store.put({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "details-v1-1", "namespace": "default"},
        "spec": {"containers": [{"name": "details", "image": "d"}, {"name": "istio-proxy", "image": "p"}],
                 "nodeName": "node"},
        "status": {"phase": "Running", "podIP": "10.1.0.9", "containerStatuses": [
            {"name": "details", "ready": True, "restartCount": 0, "state": {"running": {}}},
            {"name": "istio-proxy", "ready": True, "restartCount": 0, "state": {"running": {}}}]}})
    code, out, err = kubectl("get", "pods", "-A", "-o", "wide")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split()[:6] == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert row.split()[:5] == ["default", "details-v1-1", "2/2", "Running", "0"]
    assert "10.1.0.9" in row


def test_errors_print_as_kubectl_prints_a_real_servers(kubectl) -> None:  # type: ignore[no-untyped-def]
    code, _, err = kubectl("get", "pod", "nowhere")
    assert code == 1 and err.strip() == 'Error from server (NotFound): pods "nowhere" not found'
    code, _, err = kubectl("apply", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbogus: 1\n")
    assert code == 1 and 'strict decoding error: unknown field "bogus"' in err


def test_wait_for_condition_ready(kubectl, embedded_api: EmbeddedApi) -> None:  # type: ignore[no-untyped-def]
    store = embedded_api.server.store
    store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w", "namespace": "default"},
               "spec": {"containers": [{"name": "app", "image": "a"}]}, "status": {"phase": "Pending"}})

    def become_ready() -> None:
        time.sleep(1)
        from pytest_nginmesh.kube import ObjectKey

        store.update(ObjectKey("Pod", "default", "w"), lambda p: p.__setitem__("status", {
            "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}))

    threading.Thread(target=become_ready, daemon=True).start()
    code, out, err = kubectl("wait", "--for=condition=Ready", "pod/w", "--timeout=20s")
    assert code == 0, err
    assert out.strip() == "pod/w condition met"


@pytest.fixture
def running_pod(embedded_api: EmbeddedApi):  # type: ignore[no-untyped-def]
    """A Running pod "shell" whose container is a real process (no kubelet runs in-process), with logs on disk."""
    if os.geteuid() != 0:
        pytest.skip("a container needs a network namespace and a cgroup: needs root")
    process, cgroup = start_container(embedded_api, "shell", [
        {"name": "app", "image": "a", "env": [{"name": "GREETING", "value": "hi"}]},
        {"name": "istio-proxy", "image": "p"}])
    logs = embedded_api.server.kubelet.pods_dir / "default_shell"
    logs.mkdir(parents=True)
    (logs / "app.log").write_text("one\ntwo\nthree\n")
    (logs / "app.previous.log").write_text("before the restart\n")
    try:
        yield "shell"
    finally:
        stop_container(embedded_api, "shell", process, cgroup)


def test_exec_carries_streams_stdin_and_the_exit_code(each_kubectl, running_pod: str) -> None:  # type: ignore[no-untyped-def]
    kubectl = each_kubectl
    script = 'echo "$GREETING"; echo err >&2; exit 3'
    code, out, err = kubectl("exec", running_pod, "-c", "app", "--", "sh", "-c", script)
    assert (code, out, err.splitlines()[0]) == (3, "hi\n", "err")
    code, out, _ = kubectl("exec", "-i", running_pod, "-c", "app", "--", "cat", stdin="from stdin\n")
    assert (code, out) == (0, "from stdin\n")
    code, out, _ = kubectl("exec", running_pod, "-c", "app", "--", "ip", "-o", "link", "show")
    assert code == 0 and "eth0" not in out, "the command runs in the pod's network namespace"


def test_logs_current_previous_and_tail(kubectl, running_pod: str) -> None:  # type: ignore[no-untyped-def]
    assert kubectl("logs", running_pod, "-c", "app")[1] == "one\ntwo\nthree\n"
    assert kubectl("logs", running_pod, "-c", "app", "--tail=1")[1] == "three\n"
    assert kubectl("logs", running_pod, "-c", "app", "-p")[1] == "before the restart\n"
    code, out, err = kubectl("logs", running_pod)
    assert (code, out) == (0, "one\ntwo\nthree\n") and 'Defaulted container "app"' in err
