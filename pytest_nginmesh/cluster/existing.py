"""The existing-cluster provider: a kubeconfig and context the user names, guarded, never created or deleted."""

from __future__ import annotations

from ..profiles import Profile
from ..settings import Settings
from .k8s import KubernetesCluster
from .kubeapi import choose_kubeconfig
from .provider import Progress, ProvidedCluster


class ExistingProvider:
    """Adopts the cluster behind ``--nginmesh-kubeconfig`` / ``--nginmesh-context`` (allow-list checked)."""

    def __init__(self, settings: Settings, profile: Profile, progress: Progress) -> None:
        self.choice = choose_kubeconfig(settings.kubeconfig, settings.context, settings.allowed_contexts)
        self.progress = progress

    def up(self) -> ProvidedCluster:
        self.progress(f"using context {self.choice.context} of {self.choice.path} ({self.choice.server})")
        return ProvidedCluster(self.choice, created=False)

    def prepare(self, cluster: KubernetesCluster) -> None:
        """Nothing to do: an existing cluster is used as it is."""

    def down(self) -> None:
        """An existing cluster is never deleted."""
