"""A session's mesh on Kubernetes: the provider's cluster, preflight, the release installed when needed,
and afterwards exactly what this run made undone (the cluster it created, or what it installed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..cluster.k8s import KubernetesCluster
from ..cluster.kubeapi import KubeApi
from ..cluster.provider import Progress, Provider, preflight, provided, release_version
from ..errors import UsageError
from ..settings import Settings
from .release_install import Installation, install_release, mesh_installed, uninstall
from .releases import ReleaseStore


@contextmanager
def mesh_on_kubernetes(settings: Settings, provider: Provider, progress: Progress) -> Iterator[KubernetesCluster]:
    """The adapter on the provider's cluster with the mesh running; teardown runs whatever happens inside."""
    profile = settings.mesh_profile
    with provided(provider, settings.keep_cluster) as cluster_info:
        api = KubeApi(cluster_info.kubeconfig, settings.timeouts.api_request)
        facts = preflight(api, profile)
        progress(f"context {cluster_info.kubeconfig.context}: Kubernetes {facts.git_version}")
        cluster = KubernetesCluster(api, settings.cluster_name, settings.timeouts,
                                    settings.debug_image or settings.init_image or profile.init_image,
                                    refresh_period=profile.agent_refresh_period)
        installation: Installation | None = None
        try:
            provider.prepare(cluster)
            if mesh_installed(cluster):
                progress("an Istio control plane is installed already: using it as it is")
            elif settings.cluster == "existing" and not settings.install:
                raise UsageError(f"context {cluster_info.kubeconfig.context!r} has no Istio control plane in "
                                 f"istio-system: pass --nginmesh-install to install Nginmesh "
                                 f"{release_version(settings, profile)} for the session (removed afterwards)")
            else:
                installation = Installation.new()
                store = ReleaseStore(release_dir=settings.release_dir, timeout=settings.timeouts.http_request * 6,
                                     progress=progress)
                install_release(cluster, store.manifests(release_version(settings, profile)), profile, settings,
                                progress, installation)
            yield cluster
        finally:
            try:
                if installation is not None and not cluster_info.created and not settings.keep_cluster:
                    uninstall(cluster, installation, progress)
            finally:
                cluster.close()
