"""Installing the Istio control plane, the Nginmesh injector and Bookinfo on a cluster, and waiting for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import requests

from ..bookinfo import REVIEWS_VERSIONS, reviews_version
from ..cluster.base import Cluster, wait_for
from ..cluster.k8s import KubernetesCluster
from ..cluster.local import lifecycle
from ..cluster.local.node import local_cluster
from ..profiles import DEFAULT_PROFILE, PROFILES, Profile
from ..settings import Settings, Timeouts
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
    wait_for_productpage(cluster, timeouts)


def wait_for_productpage(cluster: Cluster, timeouts: Timeouts) -> None:
    """Wait until /productpage answers 200 through the ingress and every reviews version has rendered it.

    Bookinfo declares no readiness probes (istio/istio samples/bookinfo/kube/bookinfo.yaml, 0.2.12 to 0.7.1),
    so a Ready pod may not listen yet, and NGINX passes a refused request on to the next endpoint: until
    every version has answered, traffic is not yet split the way the suites judge it."""
    url = cluster.ingress_url() + "/productpage"
    seen: set[str] = set()

    def probe() -> tuple[bool | None, str]:
        try:
            response = requests.get(url, timeout=timeouts.http_request)
        except requests.RequestException as e:
            return None, str(e)
        if response.status_code != 200 or "Simple Bookstore App" not in response.text:
            return None, f"HTTP {response.status_code} {response.text[:80]!r}"
        seen.add(reviews_version(response.text))
        if seen >= set(REVIEWS_VERSIONS):
            return True, ""
        return None, f"reviews versions seen so far: {sorted(seen)}"

    wait_for(f"GET {url} to answer 200 from every reviews version", probe, timeouts.pod_ready)


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
