"""The kubelet's pod state: volume and log modes, names that cannot leave the pod directory, and a container's
cgroup killed whole (SIGTERM, the grace period, then SIGKILL); on real files, cgroups and processes."""

from __future__ import annotations

import base64
import os
import secrets
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_nginmesh.cluster.local.cgroup import Cgroup
from pytest_nginmesh.cluster.local.kubelet import Container, Kubelet, PodRunner, exec_in_container, service_env_vars
from pytest_nginmesh.cluster.local.network import Addresses, NodeNetwork
from pytest_nginmesh.cluster.local.store import Store
from pytest_nginmesh.errors import ClusterError
from pytest_nginmesh.kube import Obj

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups and chown need root")
GRACE = 1.0


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[Kubelet]:
    state = tmp_path / f"unit{uuid.uuid4().hex[:6]}"
    state.mkdir()
    store = Store(state / "objects.json")
    network = NodeNetwork(state.name, Addresses("10.239.0.0/20", "10.249.0.0/20", "10.255.0.0/30"), GRACE)
    kubelet = Kubelet(state.name, store, network, state, GRACE)
    yield kubelet
    Cgroup(kubelet.pods_cgroup.path.parent).remove(5)


def pod(volumes: list[Obj], containers: list[Obj] | None = None, name: str = "p") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": str(uuid.uuid4())},
            "spec": {"volumes": volumes, "containers": containers or [{"name": "app", "image": "x"}]}}


def runner_of(kubelet: Kubelet, spec: Obj) -> PodRunner:
    runner = PodRunner(kubelet, spec)
    for directory in (runner.directory, runner.directory / "volumes", runner.directory / "containers"):
        directory.mkdir(mode=0o700)
    return runner


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_pods_directory_is_root_only(kubelet: Kubelet) -> None:
    assert mode(kubelet.pods_dir) == 0o700


def test_volumes_get_the_modes_a_kubelet_gives(kubelet: Kubelet) -> None:
    kubelet.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "conf", "namespace": "default"},
                       "data": {"mesh": "a: 1\n"}})
    kubelet.store.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "certs", "namespace": "default"},
                       "data": {"key.pem": base64.b64encode(b"secret").decode()}})
    runner = runner_of(kubelet, pod([
        {"name": "scratch", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "conf"}},
        {"name": "certs", "secret": {"secretName": "certs", "defaultMode": 0o400}},
        {"name": "shared", "secret": {"secretName": "certs"}},
    ]))
    runner._prepare_volumes()
    volumes = runner.directory / "volumes"
    assert mode(volumes / "scratch") == 0o1777
    assert (mode(volumes / "conf"), mode(volumes / "conf" / "mesh")) == (0o755, 0o644)
    assert (volumes / "conf" / "mesh").read_text() == "a: 1\n"
    assert (mode(volumes / "certs"), mode(volumes / "certs" / "key.pem")) == (0o755, 0o400)
    assert (volumes / "certs" / "key.pem").read_bytes() == b"secret"
    assert mode(volumes / "shared" / "key.pem") == 0o644


@pytest.mark.parametrize("volume", [{"name": "..", "emptyDir": {}}, {"name": "a/../../b", "emptyDir": {}},
                                    {"name": "conf", "configMap": {"name": "evil"}}])
def test_no_volume_or_key_name_leaves_the_pod_directory(kubelet: Kubelet, volume: Obj) -> None:
    kubelet.store.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "evil", "namespace": "default"},
                       "data": {"../../../escaped": "x"}})
    runner = runner_of(kubelet, pod([volume]))
    with pytest.raises(ClusterError, match="refused path"):
        runner._prepare_volumes()
    assert sorted(p.name for p in kubelet.pods_dir.parent.rglob("*escaped*")) == []


@needs_root
def test_a_container_log_is_its_own_and_private(kubelet: Kubelet) -> None:
    runner = runner_of(kubelet, pod([], [{"name": "proxy", "image": "x", "securityContext": {"runAsUser": 1337}}]))
    container = runner.containers[0]
    for _ in range(2):
        os.close(runner._open_log(container))
    log = runner.directory / "proxy.log"
    assert (mode(log), log.stat().st_uid) == (0o600, 1337)
    assert (runner.directory / "proxy.previous.log").exists()


def alive(pid: int) -> bool:
    """Running, not gone nor a zombie waiting for init to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def start_in_cgroup(runner: PodRunner, container: Container, script: str, processes: int) -> None:
    container.container_id = secrets.token_hex(32)
    container.cgroup = runner.cgroup.child(container.name, container.container_id).create()
    container.process = subprocess.Popen(container.cgroup.launch_argv(["sh", "-c", script]), start_new_session=True)
    deadline = time.monotonic() + 5
    while len(container.cgroup.pids()) < processes and time.monotonic() < deadline:
        time.sleep(0.02)


@needs_root
def test_a_container_dies_whole_with_what_it_forked(kubelet: Kubelet, tmp_path: Path) -> None:
    runner = runner_of(kubelet, pod([]))
    container = runner.containers[0]
    termed = tmp_path / "termed"
    # A child detached into a session of its own (as a daemonising NGINX master) that ignores SIGTERM.
    start_in_cgroup(runner, container, f"trap 'echo yes > {termed}; exit 0' TERM; "
                                       "setsid sh -c 'trap \"\" TERM; sleep 300' & sleep 300 & wait", 4)
    assert container.cgroup is not None
    members = container.cgroup.pids()
    assert len(members) == 4, members  # the shell, its sleep, the detached shell (its trap set) and its sleep
    began = time.monotonic()
    runner._kill(container)
    assert termed.read_text() == "yes\n"  # SIGTERM came first
    assert time.monotonic() - began >= GRACE * 0.9  # the one ignoring it had its grace period, then SIGKILL
    assert container.cgroup.pids() == []
    assert not any(alive(pid) for pid in members)


@needs_root
def test_teardown_leaves_no_directory_and_no_cgroup(kubelet: Kubelet) -> None:
    runner = runner_of(kubelet, pod([{"name": "scratch", "emptyDir": {}}]))
    runner._prepare_volumes()
    start_in_cgroup(runner, runner.containers[0], "sleep 300 & sleep 300 & wait", 3)
    runner._teardown()
    assert not runner.directory.exists()
    assert not runner.cgroup.exists()


def running(pod_obj: Obj, container: Container) -> Obj:
    pod_obj["status"] = {"containerStatuses": [{**container.status(), "state": {"running": {}}}]}
    return pod_obj


def test_exec_refuses_a_container_that_is_not_running() -> None:
    stopped = pod([])
    stopped["status"] = {"containerStatuses": [{"name": "app", "containerID": "", "state": {"waiting": {}}}]}
    with pytest.raises(ClusterError, match="is not running"):
        exec_in_container("unit", stopped, stopped["spec"]["containers"][0], ["true"])


@needs_root
def test_exec_refuses_a_container_instance_that_is_gone(kubelet: Kubelet) -> None:
    # The status names an instance whose processes are gone (the container restarted since): never enter
    # anything else.
    spec = pod([])
    container = runner_of(kubelet, spec).containers[0]
    container.container_id = secrets.token_hex(32)
    with pytest.raises(ClusterError, match="has just restarted"):
        exec_in_container(kubelet.cluster, running(spec, container), container.spec, ["true"])


@needs_root
def test_exec_refuses_a_container_id_that_names_no_instance(kubelet: Kubelet) -> None:
    spec = pod([])
    spec["status"] = {"containerStatuses": [{"name": "app", "containerID": "nginmesh-local://../../daemon",
                                             "state": {"running": {}}}]}
    with pytest.raises(ClusterError, match="is not running"):
        exec_in_container(kubelet.cluster, spec, spec["spec"]["containers"][0], ["true"])


@needs_root
def test_exec_enters_the_container_in_its_cgroup_with_its_env(kubelet: Kubelet) -> None:
    spec = pod([], [{"name": "app", "image": "x", "env": [{"name": "LD_PRELOAD", "value": "/x.so"},
                                                          {"name": "KEPT", "value": "yes"}]}])
    runner = runner_of(kubelet, spec)
    container = runner.containers[0]
    start_in_cgroup(runner, container, "sleep 300 & sleep 300 & wait", 3)
    assert container.process is not None
    argv, env = exec_in_container(kubelet.cluster, running(spec, container), container.spec,
                                  ["sh", "-c", "cat /proc/self/cgroup"])
    try:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        # The instance's cgroup is named by its ID, so the ID finds its processes in /proc/<pid>/cgroup.
        assert result.stdout.strip().endswith(f"/pods/{spec['metadata']['uid']}/app/{container.container_id}")
        assert "LD_PRELOAD" not in env and env["KEPT"] == "yes"
    finally:
        runner._kill(container)


def test_every_container_gets_the_kubernetes_services_variables_as_a_kubelet_gives_them() -> None:
    # kubernetes pkg/kubelet/envvars/envvars.go FromServices, for the master service every pod sees.
    service = {"metadata": {"name": "kubernetes", "namespace": "default"},
               "spec": {"clusterIP": "10.214.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}
    assert service_env_vars(service) == {
        "KUBERNETES_SERVICE_HOST": "10.214.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.214.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.214.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.214.0.1"}
    assert service_env_vars({"metadata": {"name": "headless"}, "spec": {"clusterIP": "None", "ports": []}}) == {}


def test_the_base_env_carries_the_api_service_once_it_exists(kubelet: Kubelet) -> None:
    assert "KUBERNETES_SERVICE_HOST" not in kubelet.base_env()
    kubelet.store.put({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "kubernetes", "namespace": "default"},
                       "spec": {"clusterIP": "10.2.0.1", "ports": [{"name": "https", "port": 443}]}})
    assert kubelet.base_env()["KUBERNETES_SERVICE_HOST"] == "10.2.0.1"
