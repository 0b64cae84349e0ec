"""The local cluster as a provider: the Kubernetes adapter on the kubeconfig its daemon hands out (as kind does),
and the node's own helpers for what only the node can do (a pod's directory, a container's host argv, a pod's
iptables read in its network namespace). Objects, exec, logs and waits go through the Kubernetes API only."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ...errors import ClusterError, NotFoundError
from ...kube import Obj
from ...profiles import Profile
from ...settings import Settings
from ..base import ExecResult
from ..k8s import KubernetesCluster
from ..kubeapi import KubeApi, choose_kubeconfig
from .apiserver import KUBECONFIG
from .kubelet import exec_in_container
from .network import pod_netns
from .paths import inside


class LocalNode:
    """The node of a running local cluster, addressed by the cluster's name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.cluster_name
        self.state_dir = settings.state_dir
        try:
            self.info = json.loads((self.state_dir / "cluster.json").read_text())
        except OSError as e:
            raise NotFoundError(f"no local cluster named {self.name!r}: start one with "
                                f"'nginmesh local up --name {self.name}'") from e

    @property
    def node_ip(self) -> str:
        return str(self.info["node_ip"])

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / KUBECONFIG

    def pod_directory(self, namespace: str, pod: str) -> Path:
        """Where the kubelet keeps the pod's logs and volumes (root-only)."""
        return inside(self.state_dir / "pods", f"{namespace}_{pod}")

    def exec_argv(self, pod: Obj, command: Sequence[str], container: str | None = None
                  ) -> tuple[list[str], dict[str, str]]:
        """The host argv and environment that run ``command`` as the container would run it (for a process that
        replaces itself with the command: ``nginmesh local exec``)."""
        name = pod["metadata"]["name"]
        if (pod.get("status") or {}).get("phase") != "Running":
            raise ClusterError(f"pod {name} is {pod.get('status', {}).get('phase', 'Pending')}, "
                               "not Running: wait for it (nginmesh local get pods)")
        return exec_in_container(self.name, pod, container_of(pod, container), command)

    def pod_iptables(self, pod: Obj) -> str:
        """The node capability KubernetesCluster.pod_iptables uses here: ``iptables-save`` run by root in the
        pod's network namespace, where a kubelet's node would run a privileged helper pod."""
        meta = pod["metadata"]
        result = subprocess.run(["ip", "netns", "exec", pod_netns(self.name, meta["namespace"], meta["name"]),
                                 "iptables-save"], capture_output=True, text=True,
                                timeout=self.settings.timeouts.exec)
        return ExecResult(("iptables-save",), result.returncode, result.stdout, result.stderr).check().stdout


def container_of(pod: Obj, container: str | None) -> Obj:
    """The named container (or init container) of a pod, or its first container."""
    containers = pod["spec"]["containers"]
    if container is None:
        return dict(containers[0])
    for candidate in containers + (pod["spec"].get("initContainers") or []):
        if candidate["name"] == container:
            return dict(candidate)
    names = ", ".join(c["name"] for c in containers)
    raise NotFoundError(f'container "{container}" not found in pod {pod["metadata"]["name"]}; '
                        f"choose one of: {names}")


def local_cluster(settings: Settings, profile: Profile | None = None) -> KubernetesCluster:
    """The Kubernetes adapter on a running local cluster, through the kubeconfig it hands out, with the node's
    capabilities: a pod's ``iptables-save`` (LocalNode.pod_iptables) rather than a helper pod, and service
    addresses reached directly (the host routes the service range to the node)."""
    node = LocalNode(settings)
    profile = profile or settings.mesh_profile
    api = KubeApi(choose_kubeconfig(node.kubeconfig, None), settings.timeouts.api_request)
    return KubernetesCluster(api, settings.cluster_name, settings.timeouts, profile.init_image,
                             refresh_period=profile.agent_refresh_period, node_iptables=node.pod_iptables,
                             services_routed=True)
