"""The kubeadm provider from pytest's side, with a recording stand-in for ``kubeadm`` (no kubelet or container
runtime can run here) whose "cluster" is the FAKE API server: dry run first and stop with its message,
init with the rendered config, pod network from the pinned manifest, control plane untainted, reset only
what it initialised; an existing admin.conf is adopted and left alone."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubefake import RecordedApiServer, bookinfo_objects

from pytest_nginmesh.cluster import kubeadm
from pytest_nginmesh.cluster.render import kubeadm_config, to_yaml
from pytest_nginmesh.cluster.versions import KubeVersion
from pytest_nginmesh.profiles import get_profile

RECORDING_KUBEADM = """#!{python}
import json, os, pathlib, shutil, sys
state = pathlib.Path(os.environ["FAKE_KUBEADM_STATE"])
args = sys.argv[1:]
entry = {{"argv": args}}
if "--config" in args:
    entry["config"] = pathlib.Path(args[args.index("--config") + 1]).read_text()
with (state / "log.jsonl").open("a") as log:
    log.write(json.dumps(entry) + "\\n")
if args[:1] == ["version"]:
    print("v1.13.12")
elif args[:1] == ["init"] and "--dry-run" in args and os.environ.get("FAKE_KUBEADM_PREFLIGHT_ERROR"):
    print("[preflight] Running pre-flight checks")
    print(os.environ["FAKE_KUBEADM_PREFLIGHT_ERROR"], file=sys.stderr)
    sys.exit(1)
elif args[:1] == ["init"] and "--dry-run" not in args:
    shutil.copy(os.environ["FAKE_KUBEADM_KUBECONFIG"], os.environ["FAKE_KUBEADM_ADMIN"])
elif args[:1] == ["reset"]:
    pathlib.Path(os.environ["FAKE_KUBEADM_ADMIN"]).unlink()
"""
USES_CLUSTER = """
def test_bookinfo_is_there(mesh_cluster):
    assert len(mesh_cluster.list_pods("default")) == 6
"""
CALICO = b"""apiVersion: v1
kind: ConfigMap
metadata: {name: calico-config, namespace: kube-system}
data: {calico_backend: bird}
"""


@pytest.fixture
def calico_url() -> Iterator[str]:
    """The pinned Calico manifest, served from loopback (the real URL is not reachable from here)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(CALICO)))
            self.end_headers()
            self.wfile.write(CALICO)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/calico.yaml"
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_kubeadm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calico_url: str) -> Iterator[RecordedApiServer]:
    state, bin_dir = tmp_path / "kubeadm-state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    tool = bin_dir / "kubeadm"
    tool.write_text(RECORDING_KUBEADM.format(python=sys.executable))
    tool.chmod(0o755)
    admin = tmp_path / "admin.conf"
    with RecordedApiServer() as server:
        server.load(bookinfo_objects())
        monkeypatch.setenv("FAKE_KUBEADM_STATE", str(state))
        monkeypatch.setenv("FAKE_KUBEADM_KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kc", "kubernetes-admin")))
        monkeypatch.setenv("FAKE_KUBEADM_ADMIN", str(admin))
        monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        monkeypatch.setattr(kubeadm, "ADMIN_KUBECONFIG", admin)
        monkeypatch.setattr(kubeadm, "CALICO_MANIFESTS", (((1, 7), (1, 99), calico_url),))
        yield server


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "kubeadm-state" / "log.jsonl").read_text().splitlines()]


def test_init_with_the_rendered_config_then_network_untaint_and_reset(pytester: pytest.Pytester, tmp_path: Path,
                                                                     fake_kubeadm: RecordedApiServer) -> None:
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=kubeadm")
    result.assert_outcomes(passed=1)
    log = calls(tmp_path)
    assert [c["argv"][:1] + (["--dry-run"] if "--dry-run" in c["argv"] else []) for c in log] == [
        ["version"], ["init", "--dry-run"], ["init"], ["reset"]]
    expected = to_yaml(kubeadm_config(KubeVersion(1, 13, 12), get_profile("nginmesh-0.2.12")))
    assert log[1]["config"] == expected and log[2]["config"] == expected
    assert fake_kubeadm.stored("v1", "ConfigMap", "calico-config", "kube-system") is not None
    master = fake_kubeadm.stored("v1", "Node", "kube-1")
    assert master is not None and not master["spec"].get("taints"), "the control plane takes pods"


def test_a_failing_dry_run_stops_with_its_message(pytester: pytest.Pytester, tmp_path: Path,
                                                  fake_kubeadm: RecordedApiServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KUBEADM_PREFLIGHT_ERROR", "[ERROR Port-6443]: Port 6443 is in use")
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=kubeadm")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*kubeadm init --config * --dry-run failed: [[]ERROR Port-6443]: Port 6443 is in use*"])
    assert [c["argv"][0] for c in calls(tmp_path)] == ["version", "init"], "no init, no reset after a failed dry run"


def test_an_existing_admin_conf_is_adopted_and_left_alone(pytester: pytest.Pytester, tmp_path: Path,
                                                          fake_kubeadm: RecordedApiServer) -> None:
    (tmp_path / "admin.conf").write_text((tmp_path / "kc").read_text())
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=kubeadm")
    result.assert_outcomes(passed=1)
    assert not (tmp_path / "kubeadm-state" / "log.jsonl").exists(), "kubeadm is never run on an adopted cluster"
    assert (tmp_path / "admin.conf").exists()
