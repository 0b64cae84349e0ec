"""An existing cluster from pytest's side: the mesh is installed only when asked, from the release's files,
labelled, and exactly what was installed is removed afterwards. The cluster is the FAKE API server with a
test-side stand-in for the controllers and kubelet (Deployments get a Ready pod), and the ingress node port
is a loopback HTTP server: nothing here can run real pods."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from kubefake import RecordedApiServer

from pytest_nginmesh.mesh.release_install import INSTALLATION_LABEL

ISTIO_YAML = """apiVersion: v1
kind: Namespace
metadata: {{name: istio-system}}
---
apiVersion: v1
kind: Service
metadata: {{name: istio-pilot, namespace: istio-system}}
spec:
  ports: [{{name: http-discovery, port: 15003}}]
  selector: {{istio: pilot}}
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {{name: istio-pilot, namespace: istio-system}}
spec:
  template:
    metadata: {{labels: {{istio: pilot}}}}
    spec:
      containers: [{{name: discovery, image: docker.io/istio/pilot:0.2.12}}]
---
apiVersion: v1
kind: Service
metadata: {{name: istio-ingress, namespace: istio-system}}
spec:
  type: NodePort
  ports: [{{name: http, port: 80, nodePort: {node_port}}}]
  selector: {{istio: ingress}}
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {{name: istio-ingress, namespace: istio-system}}
spec:
  template:
    metadata: {{labels: {{istio: ingress}}}}
    spec:
      containers: [{{name: istio-ingress, image: docker.io/istio/proxy_debug:0.2.12}}]
"""
INITIALIZER_YAML = """apiVersion: v1
kind: ConfigMap
metadata: {name: istio-inject, namespace: istio-system}
data:
  config: |-
    policy: enabled
    params:
      initImage: nginmesh/proxy_init:0.2.12
      proxyImage: nginmesh/proxy_debug:0.2.12
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {name: istio-initializer, namespace: istio-system}
spec:
  template:
    metadata: {labels: {istio: istio-initializer}}
    spec:
      containers: [{name: initializer, image: docker.io/istio/sidecar_initializer:0.2.12}]
"""
BOOKINFO_YAML = """apiVersion: v1
kind: Service
metadata: {name: productpage}
spec:
  ports: [{name: http, port: 9080}]
  selector: {app: productpage}
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {name: productpage-v1}
spec:
  template:
    metadata: {labels: {app: productpage, version: v1}}
    spec:
      containers: [{name: productpage, image: istio/examples-bookinfo-productpage-v1:0.2.3}]
"""
USES_CLUSTER = """
def test_bookinfo_is_there(mesh_cluster):
    assert [p["metadata"]["labels"]["app"] for p in mesh_cluster.list_pods("default")] == ["productpage"]
"""
BASE = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}},
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
     "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "not-ours", "namespace": "default"}},
]


class Productpage(BaseHTTPRequestHandler):
    """Stand-in for productpage behind the ingress: each reviews version renders it in turn, as Bookinfo's do."""

    STARS = itertools.cycle([b"", b'<font color="black">', b'<font color="red">'])

    def do_GET(self) -> None:
        body = b"<title>Simple Bookstore App</title>" + next(self.STARS)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def run_deployments(server: RecordedApiServer, stop: threading.Event) -> None:
    """Stand-in for the controllers and kubelet: every Deployment gets one Running, Ready pod."""
    auth = {"Authorization": f"Bearer {server.token}"}
    while not stop.wait(0.05):
        deployments = requests.get(f"{server.url}/apis/apps/v1/deployments", headers=auth, timeout=5).json()["items"]
        for deployment in deployments:
            namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"] + "-pod"
            pods = f"{server.url}/api/v1/namespaces/{namespace}/pods"
            if requests.get(f"{pods}/{name}", headers=auth, timeout=5).status_code == 200:
                continue
            template = deployment["spec"]["template"]
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"]["labels"]},
                   "spec": {**template["spec"], "nodeName": "node-1"}}
            created = requests.post(pods, json=pod, headers=auth, timeout=5).json()
            created["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
            requests.put(f"{pods}/{name}/status", json=created, headers=auth, timeout=5)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RecordedApiServer, Path]]:
    ingress = ThreadingHTTPServer(("127.0.0.1", 0), Productpage)
    threading.Thread(target=ingress.serve_forever, daemon=True).start()
    release = tmp_path / "releases"
    files = {"istio-0.2.12/install/kubernetes/istio.yaml": ISTIO_YAML.format(node_port=ingress.server_address[1]),
             "nginmesh-0.2.12/install/kubernetes/istio-initializer.yaml": INITIALIZER_YAML,
             "nginmesh-0.2.12/samples/kubernetes/bookinfo.yaml": BOOKINFO_YAML}
    for name, text in files.items():
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_text(text)
    stop = threading.Event()
    with RecordedApiServer() as server:
        server.load(BASE)
        controller = threading.Thread(target=run_deployments, args=(server, stop), daemon=True)
        controller.start()
        yield server, release
        stop.set()
        controller.join()
    ingress.shutdown()
    ingress.server_close()


def options(server: RecordedApiServer, tmp_path: Path, *extra: str) -> list[str]:
    return ["--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={server.write_kubeconfig(tmp_path / 'kc', 'ci')}",
            "--nginmesh-timeout=pod_ready=20", *extra]


def test_no_mesh_and_no_install_flag_touches_nothing(pytester: pytest.Pytester, tmp_path: Path,
                                                     cluster: tuple[RecordedApiServer, Path]) -> None:
    server, _ = cluster
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest(*options(server, tmp_path))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*context 'ci' has no Istio control plane in istio-system: "
                                 "pass --nginmesh-install to install Nginmesh 0.2.12*"])
    assert [r for r in server.requests if r.method != "GET"] == [], "read-only"


def test_a_release_dir_without_the_release_installs_nothing(pytester: pytest.Pytester, tmp_path: Path,
                                                            cluster: tuple[RecordedApiServer, Path]) -> None:
    server, _ = cluster
    (tmp_path / "empty").mkdir()
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest(*options(server, tmp_path, "--nginmesh-install",
                                         f"--nginmesh-release-dir={tmp_path / 'empty'}"))
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*istio-0.2.12-linux.tar.gz*"])
    assert [r for r in server.requests if r.method != "GET"] == []


def test_install_then_remove_exactly_what_was_installed(pytester: pytest.Pytester, tmp_path: Path,
                                                        cluster: tuple[RecordedApiServer, Path]) -> None:
    server, release = cluster
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest(*options(server, tmp_path, "--nginmesh-install", f"--nginmesh-release-dir={release}",
                                         "--nginmesh-proxy-image=registry.test/proxy:rc1"), "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*nginmesh: installing the Istio 0.2.12 control plane*",
                                 "*nginmesh: deploying Bookinfo*",
                                 "*nginmesh: removing what this run installed (9 objects)*"])
    created = [r.body for r in server.requests if r.method == "POST" and "/pods" not in r.path]
    assert {o["metadata"]["labels"][INSTALLATION_LABEL] for o in created} != set()
    inject = next(o for o in created if o["metadata"]["name"] == "istio-inject")
    assert "proxyImage: registry.test/proxy:rc1" in inject["data"]["config"]
    for kind, name, namespace in [("Deployment", "istio-pilot", "istio-system"), ("Service", "productpage", "default"),
                                  ("Namespace", "istio-system", None)]:
        assert server.stored("apps/v1" if kind == "Deployment" else "v1", kind, name, namespace) is None, name
    assert server.stored("v1", "ConfigMap", "not-ours", "default") is not None
