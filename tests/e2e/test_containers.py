"""Containers that are contained: killed whole, ready only when their program answers, in a mount namespace of
their own that a manifest cannot turn into code run as root, with private state on the host."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import stat
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from seeding import pod_of

from pytest_nginmesh.cluster.base import pod_is_ready, wait_for
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local.cgroup import Cgroup
from pytest_nginmesh.cluster.local.kubelet import instance_cgroup, main_process
from pytest_nginmesh.cluster.local.network import pod_netns
from pytest_nginmesh.cluster.local.node import LocalNode
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.injection import PROXY_CONTAINER
from pytest_nginmesh.settings import Settings

DETAILS_IMAGE = "istio/examples-bookinfo-details-v1:0.2.3"
HEAL_WITHIN = 30.0
PAYLOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void inject(void) { fprintf(stderr, "PRELOADED uid=%d\n", (int)getuid()); }
"""
SITECUSTOMIZE = """import os
print(f"INJECTED uid={os.getuid()}", flush=True)
open("/scratch/injected", "w").write(str(os.getuid()))
"""


@pytest.fixture
def namespace(local_mesh: KubernetesCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own, deleted (and waited for) afterwards."""
    name = "c-" + request.node.name.replace("_", "-")[5:40].strip("-").lower()
    local_mesh.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    yield name
    local_mesh.delete([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    local_mesh.wait_pods_gone(name, 60)


def status_of(pod: Obj, container: str) -> Obj:
    return next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)


def pid_of(cluster: KubernetesCluster, pod: Obj, container: str) -> int:
    pid = main_process(container_cgroup(cluster, pod, container))
    assert pid is not None, f"container {container} of {pod['metadata']['name']} has no process"
    return pid


def children(pid: int) -> list[int]:
    """The processes ``pid`` started, from any of its threads (each thread's children are listed apart)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def container_cgroup(cluster: KubernetesCluster, pod: Obj, container: str) -> Cgroup:
    """The cgroup of the container instance the pod's status names."""
    return instance_cgroup(cluster.name, pod, status_of(pod, container))


def listeners(cluster: KubernetesCluster, pod: Obj, port: int) -> set[int]:
    """Pids of the processes listening on ``port`` in the pod's network namespace."""
    netns = pod_netns(cluster.name, pod["metadata"]["namespace"], pod["metadata"]["name"])
    out = subprocess.run(["ip", "netns", "exec", netns, "ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout
    return {int(part.split("=", 1)[1]) for part in out.replace(",", " ").replace(")", " ").split()
            if part.startswith("pid=")}


def wait_restarted_and_ready(cluster: KubernetesCluster, name: str, namespace: str, container: str,
                             restarts: int) -> tuple[Obj, bool, float]:
    """Poll until the container restarted and is ready again; return the pod, whether it was ever seen not
    ready on the way, and the seconds it took."""
    began = time.monotonic()
    saw_unready = False
    while time.monotonic() - began < HEAL_WITHIN:
        pod = cluster.get("Pod", name, namespace)
        assert pod is not None
        status = status_of(pod, container)
        saw_unready = saw_unready or not status["ready"] or not pod_is_ready(pod)
        if status["restartCount"] > restarts and status["ready"] and pod_is_ready(pod):
            return pod, saw_unready, time.monotonic() - began
        time.sleep(0.05)
    raise AssertionError(f"{container} of {name} not restarted and ready within {HEAL_WITHIN:g}s")


def productpage_serves(cluster: KubernetesCluster) -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                cluster.ingress_url() + "/productpage", timeout=5) as response:
            return response.status == 200 and b"ISBN-10" in response.read()
    except OSError:
        return False


def test_a_killed_sidecar_nginx_master_makes_the_pod_unready_and_heals(healthy: KubernetesCluster,
                                                                       e2e_settings: Settings) -> None:
    name = pod_of(healthy, "details")
    pod = healthy.get("Pod", name, "default")
    assert pod is not None
    (master,) = children(pid_of(healthy, pod, PROXY_CONTAINER))
    workers = children(master)
    assert workers and listeners(healthy, pod, 15001) <= {master, *workers}
    restarts = status_of(pod, PROXY_CONTAINER)["restartCount"]

    os.kill(master, signal.SIGKILL)  # its workers are orphaned, still holding 15001
    pod, saw_unready, seconds = wait_restarted_and_ready(healthy, name, "default", PROXY_CONTAINER, restarts)

    print(f"healed in {seconds:.1f}s")
    assert saw_unready, "the pod stayed Ready while its proxy was down"
    assert not any(alive(pid) for pid in workers), "an orphan NGINX worker survived the restart"
    holders = listeners(healthy, pod, 15001)
    assert holders and holders <= set(container_cgroup(healthy, pod, PROXY_CONTAINER).pids())
    healthy.wait_converged(e2e_settings.timeouts.convergence)
    wait_for("/productpage with details through the healed proxy",
             lambda: (True, "") if productpage_serves(healthy) else (None, "not yet"), HEAL_WITHIN)


def test_what_a_container_forked_dies_with_it(healthy: KubernetesCluster) -> None:
    name = pod_of(healthy, "ratings")
    pod = healthy.get("Pod", name, "default")
    assert pod is not None
    agent = pid_of(healthy, pod, PROXY_CONTAINER)
    forked = [pid for pid in container_cgroup(healthy, pod, PROXY_CONTAINER).pids() if pid != agent]
    assert len(forked) >= 2, "the agent runs an NGINX master and its workers"
    restarts = status_of(pod, PROXY_CONTAINER)["restartCount"]

    os.kill(agent, signal.SIGKILL)  # the NGINX it started would outlive it as orphans
    wait_restarted_and_ready(healthy, name, "default", PROXY_CONTAINER, restarts)

    assert [pid for pid in forked if alive(pid)] == []


def injection_configmap(namespace: str, payload: bytes) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inject", "namespace": namespace},
            "data": {"sitecustomize.py": SITECUSTOMIZE},
            "binaryData": {"payload.so": base64.b64encode(payload).decode()}}


def compiled_payload(tmp_path: Path) -> bytes:
    """A shared object that says so when loaded; without a compiler, a non-ELF file, which the loader names in
    an error when LD_PRELOAD is honoured ("cannot be preloaded")."""
    if shutil.which("cc") is None:
        return b"not an ELF object\n"
    (tmp_path / "payload.c").write_text(PAYLOAD_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "payload.so"), str(tmp_path / "payload.c")],
                   check=True, timeout=60)
    return (tmp_path / "payload.so").read_bytes()


def test_env_driven_code_injection_is_contained(local_mesh: KubernetesCluster, namespace: str, tmp_path: Path) -> None:
    local_mesh.apply([injection_configmap(namespace, compiled_payload(tmp_path)), {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "target", "namespace": namespace},
        "spec": {"containers": [{
            "name": "details", "image": DETAILS_IMAGE, "ports": [{"containerPort": 9080}],
            "env": [{"name": "PYTHONPATH", "value": "/etc/inject"},
                    {"name": "LD_PRELOAD", "value": "/etc/inject/payload.so"}],
            "volumeMounts": [{"name": "inject", "mountPath": "/etc/inject"},
                             {"name": "scratch", "mountPath": "/scratch"}]}],
            "volumes": [{"name": "inject", "configMap": {"name": "inject"}},
                        {"name": "scratch", "emptyDir": {}}]}}])
    local_mesh.wait_pods_ready(namespace, 60)

    log = local_mesh.logs(namespace, "target", "details")
    assert "details-v1 (Bookinfo 0.2.3) listening" in log, log
    for trace in ("INJECTED", "PRELOADED", "cannot be preloaded"):
        assert trace not in log
    assert local_mesh.exec(namespace, "target", ["test", "-e", "/scratch/injected"]).returncode == 1

    # The same payload does run where nothing isolates the interpreter: the test could fail.
    control = local_mesh.exec(namespace, "target", [
        "sh", "-c", "LD_PRELOAD=/etc/inject/payload.so python3 -c pass; cat /scratch/injected"])
    assert "INJECTED uid=0" in control.stdout
    assert "PRELOADED uid=0" in control.stderr or "cannot be preloaded" in control.stderr


def test_a_volume_shows_at_its_mount_path_in_the_container_and_nowhere_on_the_host(
        local_mesh: KubernetesCluster, namespace: str, e2e_settings: Settings) -> None:
    unique = uuid.uuid4().hex[:8]
    config, data, secret = f"/etc/nmtest-{unique}", f"/nmtest-{unique}/data", f"/etc/nmtest-secret-{unique}"
    local_mesh.apply([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeting", "namespace": namespace},
         "data": {"greeting": "hello from a ConfigMap"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": namespace},
         "data": {"token": base64.b64encode(b"s3cret").decode()}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mounts", "namespace": namespace},
         "spec": {"containers": [{
             "name": "details", "image": DETAILS_IMAGE, "ports": [{"containerPort": 9080}],
             "volumeMounts": [{"name": "greeting", "mountPath": config}, {"name": "data", "mountPath": data},
                              {"name": "token", "mountPath": secret, "readOnly": True}]}],
             "volumes": [{"name": "greeting", "configMap": {"name": "greeting", "defaultMode": 0o640}},
                         {"name": "data", "emptyDir": {}},
                         {"name": "token", "secret": {"secretName": "token", "defaultMode": 0o400}}]}}])
    local_mesh.wait_pods_ready(namespace, 60)

    inside = local_mesh.exec(namespace, "mounts", ["sh", "-c", f"cat {config}/greeting {secret}/token; echo; "
                                                   f"echo written > {data}/file && cat {data}/file; "
                                                   f"touch /etc/nmtest-{unique}-host 2>&1; touch {secret}/x 2>&1; "
                                                   f"echo private > /tmp/nmtest-{unique} && ls /tmp"])
    assert inside.stdout.splitlines()[:3] == ["hello from a ConfigMaps3cret", "written",
                                              f"touch: cannot touch '/etc/nmtest-{unique}-host': "
                                              "Read-only file system"]
    assert "Read-only file system" in inside.stdout.splitlines()[3]
    assert f"nmtest-{unique}" in inside.stdout.splitlines()[4:]
    for path in (config, f"/nmtest-{unique}", secret, f"/etc/nmtest-{unique}-host", f"/tmp/nmtest-{unique}"):
        assert not Path(path).exists(), path

    volumes = LocalNode(e2e_settings).pod_directory(namespace, "mounts") / "volumes"
    assert (mode(volumes / "greeting" / "greeting"), mode(volumes / "token" / "token")) == (0o640, 0o400)
    assert (volumes / "data" / "file").read_text() == "written\n"


def test_pod_state_on_the_host_is_private(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    pods_dir = e2e_settings.state_dir / "pods"
    assert mode(pods_dir) == 0o700
    live = {f"{p['metadata']['namespace']}_{p['metadata']['name']}" for p in healthy.list_pods()}
    directories = {d.name for d in pods_dir.iterdir()}
    assert directories <= live, f"pod directories without a pod: {sorted(directories - live)}"
    for directory in pods_dir.iterdir():
        assert mode(directory) == 0o700, directory
        logs = list(directory.glob("*.log"))
        assert logs and all(mode(log) == 0o600 for log in logs), directory
    for path in pods_dir.rglob("*"):
        if path.is_dir() and not path.is_symlink() and mode(path) & stat.S_IWOTH:
            assert mode(path) & stat.S_ISVTX, f"{path} is world-writable without the sticky bit"
    for envoy in pods_dir.glob("*/volumes/istio-envoy"):
        assert mode(envoy) == 0o1777
    for certs in pods_dir.glob("*/volumes/istio-certs"):
        assert mode(certs) == 0o755


def test_an_exec_readiness_probe_runs_in_the_containers_own_filesystem(local_mesh: KubernetesCluster,
                                                                       namespace: str) -> None:
    local_mesh.apply([{
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed", "namespace": namespace},
        "spec": {"containers": [{
            "name": "details", "image": DETAILS_IMAGE, "ports": [{"containerPort": 9080}],
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1,
                               "failureThreshold": 1}}]}}])
    wait_for("the probed pod to run", lambda: (True, "") if (local_mesh.get("Pod", "probed", namespace) or {}).get(
        "status", {}).get("phase") == "Running" else (None, "not running"), 60)
    time.sleep(3)  # three periods: the program answers, but the probe says not ready
    pod = local_mesh.get("Pod", "probed", namespace)
    assert pod is not None and not pod_is_ready(pod)

    local_mesh.exec(namespace, "probed", ["touch", "/tmp/ready"]).check()  # the container's private /tmp
    local_mesh.wait_pods_ready(namespace, 10)
    assert not Path("/tmp/ready").exists()
