"""Installing the Istio control plane, the Nginmesh injector and Bookinfo on a cluster, and waiting for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..cluster.base import Cluster
from ..cluster.k8s import KubernetesCluster
from ..cluster.local import lifecycle
from ..cluster.local.node import local_cluster
from ..profiles import DEFAULT_PROFILE, PROFILES, Profile
from ..settings import Settings, Timeouts
from .bookinfo_instance import BookinfoInstance, wait_for_productpage
from .manifests import BOOKINFO_DEPLOYMENTS, CONTROL_PLANE_PODS, control_plane, load_fixture

Progress = Callable[[str], None]


def install_mesh(cluster: Cluster, timeouts: Timeouts, progress: Progress = lambda line: None,
                 profile: Profile = PROFILES[DEFAULT_PROFILE]) -> None:
    """Apply the control plane, then Bookinfo, and return once /productpage answers through the ingress. The
    data plane is the profile's twin: its agents and mixer read what the profile says of the release, and its
    Bookinfo is the release's own (the images of its Istio release's bookinfo.yaml).

    Bookinfo goes in right after the control plane, as the install guides run their ``kubectl apply``s: its
    workloads stay pending under the InitializerConfiguration until the Initializer runs and injects them, and
    their agents wait for Pilot, so both start at once."""
    progress(f"installing the Istio control plane and the Nginmesh injector ({profile.name})")
    cluster.apply(control_plane(profile))
    progress("deploying Bookinfo")
    cluster.apply(load_fixture(profile.bookinfo.fixture))
    cluster.wait_pods_ready("istio-system", timeouts.pod_ready, minimum=CONTROL_PLANE_PODS)
    cluster.wait_pods_ready("default", timeouts.pod_ready, minimum=len(BOOKINFO_DEPLOYMENTS))
    cluster.wait_converged(timeouts.pod_ready)
    progress("waiting for /productpage through the ingress")
    wait_for_productpage(BookinfoInstance.installed(cluster), timeouts)


@contextmanager
def mesh_on_local(settings: Settings, progress: Progress = lambda line: None) -> Iterator[KubernetesCluster]:
    """The local cluster with the mesh, through the Kubernetes adapter on its kubeconfig: reused (and left
    running) when a complete one of that name runs with the same options, otherwise started and installed — all
    or nothing: an interrupted or failed install leaves no cluster — and torn down afterwards unless
    ``keep_cluster``."""
    with lifecycle.building(settings, mesh=True, progress=progress) as started:
        if started:
            installing = local_cluster(settings)
            try:
                install_mesh(installing, settings.timeouts, progress, settings.mesh_profile)
            finally:
                installing.close()
    cluster = local_cluster(settings)
    try:
        yield cluster
    finally:
        try:
            cluster.close()
        finally:
            if started and not settings.keep_cluster:
                with lifecycle.signals_held():
                    lifecycle.down(settings)
