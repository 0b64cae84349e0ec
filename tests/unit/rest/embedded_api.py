"""What the ``embedded_api`` fixture hands a test."""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_nginmesh.cluster.local.apiserver import ApiServer
from pytest_nginmesh.cluster.local.cgroup import Cgroup
from pytest_nginmesh.cluster.local.network import pod_netns
from pytest_nginmesh.cluster.local.rest.pki import Credentials
from pytest_nginmesh.cluster.local.rest.server import RestApi
from pytest_nginmesh.kube import Obj, ObjectKey


@dataclass
class EmbeddedApi:
    """The REST API, the daemon state behind it, and how a client reaches it."""

    server: ApiServer
    rest: RestApi
    credentials: Credentials
    url: str
    kubeconfig: Path

    def token(self) -> str:
        return self.credentials.token()


def start_container(api: EmbeddedApi, name: str, containers: list[Obj]) -> tuple[subprocess.Popen[bytes], Cgroup]:
    """A Running pod whose first container is a real process (a sleep) in its own network namespace and in the
    cgroup the kubelet would give it, so exec enters it as it enters any container. No kubelet runs here."""
    store = api.server.store
    pod, _ = store.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                        "spec": {"containers": containers}})
    netns = pod_netns(api.server.info["name"], "default", name)
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    container_id = secrets.token_hex(32)
    cgroup = Cgroup.of_cluster(api.server.info["name"]).child("pods", pod["metadata"]["uid"], containers[0]["name"],
                                                               container_id)
    process = subprocess.Popen(cgroup.create().launch_argv(["ip", "netns", "exec", netns, "sleep", "300"]))
    deadline = time.monotonic() + 5
    while process.pid not in cgroup.pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    running = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    statuses = [{"name": c["name"], "ready": True, "restartCount": 0, "state": running,
                 "containerID": f"nginmesh-local://{container_id}" if i == 0 else ""}
                for i, c in enumerate(containers)]
    store.update(ObjectKey("Pod", "default", name), lambda p: p.__setitem__(
        "status", {"phase": "Running", "containerStatuses": statuses}))
    return process, cgroup


def stop_container(api: EmbeddedApi, name: str, process: subprocess.Popen[bytes], cgroup: Cgroup) -> None:
    cgroup.kill(5)
    process.wait(5)
    cgroup.remove(5)
    subprocess.run(["ip", "netns", "delete", pod_netns(api.server.info["name"], "default", name)],
                   check=False, capture_output=True)
