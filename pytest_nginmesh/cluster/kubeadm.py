"""The kubeadm provider: ``kubeadm init`` on this host with the rendered config (dry run first), the pod
network, a schedulable control plane; or adoption of a kubeadm cluster through its kubeconfig."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import requests

from ..errors import ClusterError, UsageError
from ..kube import parse_manifests
from ..profiles import Profile
from ..settings import Settings
from .k8s import KubernetesCluster
from .kubeapi import choose_kubeconfig
from .provider import Progress, ProvidedCluster
from .render import kubeadm_config, to_yaml
from .versions import KubeVersion, check_profile_supports

ADMIN_KUBECONFIG = Path("/etc/kubernetes/admin.conf")
# Calico as its install guide of the time pinned it for each Kubernetes range (the seed used v2.6 on 1.9).
CALICO_MANIFESTS: tuple[tuple[tuple[int, int], tuple[int, int], str], ...] = (
    ((1, 7), (1, 10), "https://docs.projectcalico.org/v3.0/getting-started/kubernetes/installation/hosted/"
                      "kubeadm/1.7/calico.yaml"),
    ((1, 11), (1, 13), "https://docs.projectcalico.org/v3.3/getting-started/kubernetes/installation/hosted/"
                       "kubernetes-datastore/calico-networking/1.7/calico.yaml"),
    ((1, 14), (1, 99), "https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/calico.yaml"),
)
CONTROL_PLANE_TAINTS = frozenset({"node-role.kubernetes.io/master", "node-role.kubernetes.io/control-plane"})


def calico_manifest(version: KubeVersion) -> str:
    for low, high, url in CALICO_MANIFESTS:
        if low <= version.minor_version <= high:
            return url
    raise UsageError(f"no pinned Calico manifest for Kubernetes {version}: use 1.7 or later")


class KubeadmProvider:
    """Adopts ``--nginmesh-kubeconfig`` or this host's admin.conf when there is one; otherwise initialises
    a single-node control plane here, and resets only what it initialised."""

    def __init__(self, settings: Settings, profile: Profile, progress: Progress) -> None:
        self.settings = settings
        self.progress = progress
        self.created = False
        adopt = settings.kubeconfig or (ADMIN_KUBECONFIG if ADMIN_KUBECONFIG.exists() else None)
        self.adopted = (choose_kubeconfig(adopt, settings.context, settings.allowed_contexts)
                        if adopt is not None else None)
        if self.adopted is not None:
            return
        found = shutil.which("kubeadm")
        if found is None:
            raise UsageError("kubeadm is not installed: install kubeadm, kubelet and a container runtime, "
                             "or pass --nginmesh-kubeconfig of a kubeadm cluster")
        self.kubeadm = found
        self.version = (KubeVersion.parse(settings.k8s_version) if settings.k8s_version
                        else KubeVersion.parse(self._kubeadm_version(), "kubeadm version"))
        check_profile_supports(profile, self.version)
        self.config_text = to_yaml(kubeadm_config(self.version, profile))

    def _kubeadm_version(self) -> str:
        return self._run("version", "-o", "short", timeout=self.settings.timeouts.api_request).stdout.strip()

    def up(self) -> ProvidedCluster:
        if self.adopted is not None:
            self.progress(f"adopting kubeadm cluster {self.adopted.server} ({self.adopted.path})")
            return ProvidedCluster(self.adopted, created=False)
        with tempfile.TemporaryDirectory(prefix="pytest-nginmesh-kubeadm-") as directory:
            config_file = Path(directory) / "kubeadm-config.yaml"
            config_file.write_text(self.config_text)
            self.progress(f"kubeadm init --config {config_file} --dry-run")
            self._run("init", "--config", str(config_file), "--dry-run", timeout=self.settings.timeouts.cluster_up)
            self.progress(f"kubeadm init: Kubernetes {self.version} on this host")
            self.created = True
            self._run("init", "--config", str(config_file), timeout=self.settings.timeouts.cluster_up)
        return ProvidedCluster(choose_kubeconfig(ADMIN_KUBECONFIG, None), created=True)

    def prepare(self, cluster: KubernetesCluster) -> None:
        """A cluster kubeadm just made has no pod network and a control plane that takes no pods."""
        if not self.created:
            return
        url = calico_manifest(self.version)
        self.progress(f"installing the pod network: {url}")
        try:
            response = requests.get(url, timeout=self.settings.timeouts.http_request)
            response.raise_for_status()
        except requests.RequestException as e:
            raise ClusterError(f"cannot fetch the Calico manifest {url} ({e.__class__.__name__}): "
                               "install a pod network by hand, then rerun with --nginmesh-kubeconfig") from None
        cluster.apply(parse_manifests(response.text, url))
        for node in cluster.list_objects("Node"):
            taints = node.get("spec", {}).get("taints") or []
            kept = [t for t in taints if t.get("key") not in CONTROL_PLANE_TAINTS]
            if kept != taints:
                cluster.api.request("PATCH", f"/api/v1/nodes/{node['metadata']['name']}",
                                    body={"spec": {"taints": kept}}, content_type="application/merge-patch+json")

    def down(self) -> None:
        if self.created:
            self.progress("kubeadm reset")
            self._run("reset", "-f", timeout=self.settings.timeouts.teardown)
            self.created = False

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run([self.kubeadm, *args], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"kubeadm {' '.join(args)} did not finish within {timeout:g}s") from None
        if result.returncode != 0:
            lines = [line for line in (result.stderr or result.stdout).strip().splitlines() if line.strip()]
            raise ClusterError(f"kubeadm {' '.join(args)} failed: {lines[-1] if lines else 'no output'}")
        return result
