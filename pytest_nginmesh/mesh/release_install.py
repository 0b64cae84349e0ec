"""Installing an Nginmesh release (Istio control plane, the injector, Bookinfo) on a Kubernetes cluster
from the release's own manifests, labelled so that removing it touches nothing else."""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..cluster.k8s import MANAGED_BY, KubernetesCluster
from ..errors import ClusterError
from ..kube import Obj, key_of, read_manifest_file
from ..profiles import Profile
from ..settings import Settings
from .bookinfo_instance import BookinfoInstance, wait_for_productpage
from .install import Progress
from .manifests import BOOKINFO_NAMESPACE, CONTROL_PLANE_NAMESPACE
from .releases import ReleaseManifests, injector_script_argv

INSTALLATION_LABEL = "nginmesh.test/installation"
INJECTION_LABEL = "istio-injection"  # webhook releases inject into namespaces labelled enabled
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})


@dataclass
class Installation:
    """What one run installed: the objects (labelled with ``run_id``) and namespaces it labelled."""

    run_id: str
    objects: list[Obj] = field(default_factory=list)
    labelled_namespaces: list[str] = field(default_factory=list)

    @classmethod
    def new(cls) -> Installation:
        return cls(run_id=secrets.token_hex(4))


def mesh_installed(cluster: KubernetesCluster) -> bool:
    """Whether an Istio control plane is there already (then it is used, not installed again)."""
    return cluster.get("Service", "istio-pilot", CONTROL_PLANE_NAMESPACE) is not None


def labelled(objects: list[Obj], run_id: str) -> list[Obj]:
    """Copies of the objects with our labels on them."""
    labels = {**MANAGED_BY, INSTALLATION_LABEL: run_id}
    result = []
    for obj in objects:
        copy = {**obj, "metadata": {**obj.get("metadata", {}),
                                    "labels": {**(obj.get("metadata", {}).get("labels") or {}), **labels}}}
        result.append(copy)
    return result


def override_images(objects: list[Obj], profile: Profile, proxy_image: str | None,
                    init_image: str | None) -> list[Obj]:
    """The injector's configuration with the proxy and init images replaced (release qualification)."""
    replacements = {old: new for old, new in ((profile.proxy_image, proxy_image), (profile.init_image, init_image))
                    if new and new != old}
    if not replacements:
        return objects
    result = []
    for obj in objects:
        if obj.get("kind") == "ConfigMap":
            data = {}
            for key, value in (obj.get("data") or {}).items():
                for old, new in replacements.items():
                    value = str(value).replace(old, new)
                data[key] = value
            obj = {**obj, "data": data}
        result.append(obj)
    return result


def workload_count(objects: list[Obj], namespace: str) -> int:
    return sum(1 for o in objects if o.get("kind") in WORKLOAD_KINDS
               and (o.get("metadata", {}).get("namespace") or "default") == namespace)


def read_all(paths: list[Path]) -> list[Obj]:
    return [obj for path in paths for obj in read_manifest_file(str(path))]


def install_release(cluster: KubernetesCluster, manifests: ReleaseManifests, profile: Profile, settings: Settings,
                    progress: Progress, installation: Installation) -> None:
    """Control plane, injector, Bookinfo; each waited for (bounded, failing fast on hopeless pods).
    ``installation`` records every object as it is applied, so a failure half-way can be undone."""
    timeouts = settings.timeouts

    def apply(objects: list[Obj]) -> None:
        objects = labelled(objects, installation.run_id)
        for obj in objects:
            # One at a time, so a failure leaves the record exact; what existed before stays (it is not ours).
            [result] = cluster.apply([obj])
            if result["action"] == "created":
                installation.objects.append(obj)

    progress(f"installing the Istio {profile.istio_version} control plane")
    control_plane = read_all(manifests.control_plane)
    apply(control_plane)
    cluster.wait_pods_ready(CONTROL_PLANE_NAMESPACE, timeouts.pod_ready,
                            minimum=workload_count(control_plane, CONTROL_PLANE_NAMESPACE))
    progress(f"installing the Nginmesh {profile.nginmesh_version} injector ({profile.injection})")
    if manifests.injector_script is not None:
        run_injector_script(cluster, manifests, settings, profile.hub)
        restamp_injector_config(cluster, profile, settings)
    else:
        injector = override_images(read_all(manifests.injector), profile, settings.proxy_image, settings.init_image)
        apply(injector)
    cluster.wait_pods_ready(CONTROL_PLANE_NAMESPACE, timeouts.pod_ready,
                            minimum=workload_count(control_plane, CONTROL_PLANE_NAMESPACE) + 1)
    if profile.injection == "webhook":
        label_for_injection(cluster, BOOKINFO_NAMESPACE, installation)
    progress("deploying Bookinfo")
    bookinfo = read_all(manifests.bookinfo)
    apply(bookinfo)
    cluster.wait_pods_ready(BOOKINFO_NAMESPACE, timeouts.pod_ready,
                            minimum=workload_count(bookinfo, BOOKINFO_NAMESPACE))
    cluster.wait_converged(timeouts.pod_ready)
    progress("waiting for /productpage through the ingress")
    wait_for_productpage(BookinfoInstance.installed(cluster), timeouts)


def run_injector_script(cluster: KubernetesCluster, manifests: ReleaseManifests, settings: Settings,
                        hub: str) -> None:
    """The release's own install-sidecar.sh (it signs the webhook's certificate with kubectl and openssl)."""
    script = manifests.injector_script
    assert script is not None
    env = {**os.environ, "KUBECONFIG": str(cluster.api.choice.path)}
    try:
        result = subprocess.run(injector_script_argv(script, hub), cwd=script.parent, env=env, capture_output=True,
                                text=True, timeout=settings.timeouts.pod_ready)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{script} did not finish within {settings.timeouts.pod_ready:g}s") from None
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise ClusterError(f"{script.name} failed (it needs kubectl and openssl on PATH): "
                           f"{lines[-1] if lines else 'no output'}")


def restamp_injector_config(cluster: KubernetesCluster, profile: Profile, settings: Settings) -> None:
    """Apply the image overrides to the injector ConfigMaps the release's script created."""
    configmaps = [c for c in cluster.list_objects("ConfigMap", CONTROL_PLANE_NAMESPACE)
                  if "sidecar-injector" in c["metadata"]["name"]]
    for configmap in configmaps:
        for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink"):
            configmap["metadata"].pop(key, None)
    stamped = override_images(configmaps, profile, settings.proxy_image, settings.init_image)
    cluster.apply(stamped)


def label_for_injection(cluster: KubernetesCluster, namespace: str, installation: Installation) -> None:
    current = cluster.get("Namespace", namespace, "")
    if current is not None and (current["metadata"].get("labels") or {}).get(INJECTION_LABEL) == "enabled":
        return
    cluster.api.request("PATCH", f"/api/v1/namespaces/{namespace}",
                        body={"metadata": {"labels": {INJECTION_LABEL: "enabled"}}},
                        content_type="application/merge-patch+json")
    installation.labelled_namespaces.append(namespace)


def uninstall(cluster: KubernetesCluster, installation: Installation, progress: Progress) -> None:
    """Delete what ``installation`` created, newest first, skipping any object no longer carrying its label
    (someone else replaced it), and take back the namespace labels it added."""
    progress(f"removing what this run installed ({len(installation.objects)} objects)")
    mine = []
    for obj in reversed(installation.objects):
        live = cluster.live(obj)
        if live is not None and (live["metadata"].get("labels") or {}).get(INSTALLATION_LABEL) == installation.run_id:
            mine.append(obj)
    unique = {key_of(o): o for o in mine}
    cluster.delete(list(unique.values()))
    for namespace in installation.labelled_namespaces:
        cluster.api.request("PATCH", f"/api/v1/namespaces/{namespace}",
                            body={"metadata": {"labels": {INJECTION_LABEL: None}}},
                            content_type="application/merge-patch+json")
