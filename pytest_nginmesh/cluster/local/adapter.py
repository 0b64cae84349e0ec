"""The local cluster as a cluster port: API calls over its socket, exec inside a container's namespaces."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ...errors import ClusterError, NotFoundError
from ...kube import Obj
from ...settings import Settings
from ..base import Cluster, ExecResult, wait_for
from . import catalogue, lifecycle
from .kubelet import exec_in_container
from .network import pod_netns
from .paths import inside


class LocalCluster(Cluster):
    """A running local cluster, addressed by its name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.cluster_name
        self.state_dir = settings.state_dir
        self.api = lifecycle.api_client(settings)
        try:
            self.info = json.loads((self.state_dir / "cluster.json").read_text())
        except OSError as e:
            raise NotFoundError(f"no local cluster named {self.name!r}: start one with "
                                f"'nginmesh local up --name {self.name}'") from e

    def list_pods(self, namespace: str | None = None) -> list[Obj]:
        return self.list_objects("Pod", namespace)

    def list_objects(self, kind: str, namespace: str | None = None) -> list[Obj]:
        return list(self.api.get("/api/objects", kind=kind, namespace=namespace))

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        try:
            return dict(self.api.get("/api/object", kind=kind, namespace=namespace, name=name))
        except NotFoundError:
            return None

    def _pod(self, namespace: str, name: str) -> Obj:
        pod = self.get("Pod", name, namespace)
        if pod is None:
            raise NotFoundError(f'pod "{name}" not found in namespace "{namespace}"')
        return pod

    def _container(self, pod: Obj, container: str | None) -> Obj:
        containers = pod["spec"]["containers"]
        if container is None:
            return dict(containers[0])
        for candidate in containers + (pod["spec"].get("initContainers") or []):
            if candidate["name"] == container:
                return dict(candidate)
        names = ", ".join(c["name"] for c in containers)
        raise NotFoundError(f'container "{container}" not found in pod {pod["metadata"]["name"]}; '
                            f"choose one of: {names}")

    def exec_argv(self, namespace: str, pod_name: str, command: Sequence[str],
                  container: str | None = None) -> tuple[list[str], dict[str, str]]:
        """The host argv and environment that run ``command`` as the container would run it."""
        pod = self._pod(namespace, pod_name)
        if (pod.get("status") or {}).get("phase") != "Running":
            raise ClusterError(f"pod {pod_name} is {pod.get('status', {}).get('phase', 'Pending')}, "
                               "not Running: wait for it (nginmesh local get pods)")
        return exec_in_container(self.name, pod, self._container(pod, container), command)

    def exec(self, namespace: str, pod: str, command: Sequence[str], container: str | None = None,
             timeout: float | None = None) -> ExecResult:
        argv, env = self.exec_argv(namespace, pod, command, container)
        limit = timeout or self.settings.timeouts.exec
        try:
            result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=limit)
        except subprocess.TimeoutExpired as e:
            raise ClusterError(f"exec {' '.join(command)} in {pod}: no exit within {limit:g}s") from e
        return ExecResult(tuple(command), result.returncode, result.stdout, result.stderr)

    def apply(self, objects: list[Obj]) -> list[Obj]:
        return list(self.api.post("/api/apply", {"objects": objects}))

    def delete(self, objects: list[Obj]) -> list[Obj]:
        return list(self.api.post("/api/delete", {"objects": objects}))

    def service_url(self, namespace: str, service: str, port: int) -> str:
        svc = self.service_with_port(namespace, service, port)
        return f"http://{svc['spec']['clusterIP']}:{port}"

    def ingress_url(self) -> str:
        svc = self.get("Service", "istio-ingress", "istio-system")
        if svc is None:
            raise NotFoundError("service istio-ingress not found in istio-system: is the mesh installed?")
        for port in svc["spec"].get("ports") or []:
            if port.get("nodePort") and port["port"] == 80:
                return f"http://{self.info['node_ip']}:{port['nodePort']}"
        raise ClusterError("service istio-ingress has no NodePort for port 80 yet")

    def logs(self, namespace: str, pod: str, container: str | None = None, previous: bool = False) -> str:
        spec = self._container(self._pod(namespace, pod), container)
        suffix = ".previous.log" if previous else ".log"
        path = inside(self.pod_directory(namespace, pod), f"{spec['name']}{suffix}")
        try:
            return path.read_text(errors="replace")
        except FileNotFoundError as e:
            which = "previous " if previous else ""
            raise NotFoundError(f"no {which}log for container {spec['name']} of pod {pod}") from e

    def events(self, namespace: str | None = None) -> list[Obj]:
        return list(self.api.get("/api/events", namespace=namespace))

    def wait_converged(self, timeout: float) -> None:
        """Every proxy of a running pod is ready and has acked the version Pilot serves now (the API server
        keeps an ack only while the proxy process that made it lives). A proxy that is not ready (crashed,
        restarting, not yet serving) holds convergence back: it may still route the old way, or not at all."""

        def probe() -> tuple[str | None, str]:
            target = self.api.get("/api/mesh")["version"]
            acks = self.api.get("/api/proxy-status")
            for ack in acks:
                if ack.get("rejectedVersion") == target:
                    raise ClusterError(f"proxy {ack['namespace']}/{ack['pod']} rejected mesh config {target}: "
                                       f"{ack.get('rejection')}")
            acked = {(a["namespace"], a["pod"]): a["version"] for a in acks}
            behind = []
            for pod in self.list_pods():
                meta = pod["metadata"]
                if (pod.get("status") or {}).get("phase") != "Running" or meta.get("deletionTimestamp"):
                    continue
                statuses = {c["name"]: c for c in (pod.get("status") or {}).get("containerStatuses") or []}
                for proxy in (c["name"] for c in pod["spec"]["containers"] if catalogue.is_proxy(c)):
                    version = acked.get((meta["namespace"], meta["name"]))
                    if not statuses.get(proxy, {}).get("ready"):
                        behind.append(f"{proxy} of {meta['name']} not ready")
                    elif version != target:
                        behind.append(f"{proxy} of {meta['name']} at {version or 'nothing'}")
            if behind:
                return None, f"mesh version {target}; {', '.join(behind)}"
            return str(target), ""

        wait_for("every proxy to apply the current mesh config", probe, timeout)

    def close(self) -> None:
        """Nothing to release: every API call opens and closes its own socket connection."""

    def pod_iptables(self, namespace: str, pod: str) -> str:
        self._pod(namespace, pod)
        result = subprocess.run(["ip", "netns", "exec", pod_netns(self.name, namespace, pod), "iptables-save"],
                                capture_output=True, text=True, timeout=self.settings.timeouts.exec)
        return ExecResult(("iptables-save",), result.returncode, result.stdout, result.stderr).check().stdout

    def pod_directory(self, namespace: str, pod: str) -> Path:
        """Where the kubelet keeps the pod's logs and volumes (root-only)."""
        return inside(self.state_dir / "pods", f"{namespace}_{pod}")
