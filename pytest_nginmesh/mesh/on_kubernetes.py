"""A session's mesh on Kubernetes: the provider's cluster, preflight, the release installed when needed,
and afterwards exactly what this run made undone (the cluster it created, or what it installed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..cluster.k8s import KubernetesCluster
from ..cluster.kubeapi import KubeApi
from ..cluster.provider import Progress, Provider, make_provider, preflight, provided
from ..errors import UsageError
from ..profiles import Profile
from ..settings import Settings
from .release_install import Installation, install_release, mesh_installed, uninstall
from .releases import ReleaseStore, get_release


def release_version(settings: Settings, profile: Profile) -> str:
    """The Nginmesh release to install: ``--nginmesh-release``, else the profile's; it must inject as the
    profile expects."""
    release = get_release(settings.release or profile.nginmesh_version)
    if release.injection != profile.injection:
        raise UsageError(f"Nginmesh {release.version} injects with the {release.injection}, profile "
                         f"{profile.name} expects the {profile.injection}: choose a release and a profile that agree")
    return release.version


def kubernetes_provider(settings: Settings, profile: Profile, progress: Progress) -> Provider:
    """The provider of ``--nginmesh-cluster``, once the release to install and the profile agree (every option
    validated, nothing touched)."""
    release_version(settings, profile)
    return make_provider(settings, profile, progress)


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
