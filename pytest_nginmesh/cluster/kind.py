"""The kind provider: a kind cluster made through pytest-kind's ``KindCluster`` with our rendered config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from pytest_kind import KindCluster

from ..errors import ClusterError, UsageError
from ..profiles import Profile
from ..settings import Settings
from .k8s import KubernetesCluster
from .kind_download import download_kind
from .kubeapi import choose_kubeconfig
from .provider import Progress, ProvidedCluster
from .render import kind_config, to_yaml
from .versions import CURRENT_K8S, KubeVersion, check_profile_supports, default_k8s_version, node_image

KIND_STATE = Path(".pytest-kind")  # where pytest-kind keeps a cluster's kubeconfig and kind binary
KIND_RELEASE = re.compile(r"v\d+\.\d+\.\d+")


def release_tuple(release: str) -> tuple[int, ...]:
    return tuple(int(part) for part in release.lstrip("v").split("."))


def kind_version(settings: Settings, profile: Profile) -> KubeVersion:
    version = KubeVersion.parse(settings.k8s_version) if settings.k8s_version else default_k8s_version(profile)
    check_profile_supports(profile, version)
    return version


def kind_binary(settings: Settings) -> Path | None:
    """``--nginmesh-kind-bin``, else kind on PATH, else None (then the kind that built the node image is fetched)."""
    if settings.kind_bin is not None:
        if not (settings.kind_bin.is_file() and os.access(settings.kind_bin, os.X_OK)):
            raise UsageError(f"--nginmesh-kind-bin {settings.kind_bin} is not an executable file: "
                             "give the path of a kind binary")
        return settings.kind_bin
    found = shutil.which("kind")
    return Path(found) if found else None


def container_engine() -> str | None:
    """The engine kind would use, or None when this machine has none."""
    return next((engine for engine in ("docker", "podman", "nerdctl") if shutil.which(engine)), None)


class KindProvider:
    """Creates (or reuses, by name) a kind cluster; deletes only a cluster it created."""

    def __init__(self, settings: Settings, profile: Profile, progress: Progress) -> None:
        self.settings = settings
        self.progress = progress
        self.version = kind_version(settings, profile)
        self.pinned = None if settings.node_image else node_image(self.version)
        self.config = kind_config(self.version, profile, settings.node_image or node_image(self.version).image)
        self.binary = kind_binary(settings)
        if container_engine() is None:
            raise UsageError("kind needs a container engine (Docker or Podman) on this machine, and none is "
                             "installed: install Docker, or use --nginmesh-cluster=local")
        self.created = False

    def up(self) -> ProvidedCluster:
        if self.binary is None:
            release = (self.pinned or node_image(CURRENT_K8S)).kind_release
            self.progress(f"no kind on PATH and no --nginmesh-kind-bin: fetching kind {release}, which built the "
                          "node image")
            self.binary = download_kind(release, self.settings.timeouts.http_request * 6, self.progress)
        # Made here, not in __init__: KindCluster creates its state directory, and validation touches nothing.
        self.cluster = KindCluster(self.settings.cluster_name,
                                   kubeconfig=KIND_STATE / self.settings.cluster_name / "kubeconfig",
                                   kind_path=self.binary)
        name = self.settings.cluster_name
        self.check_kind_release()
        config_file = self.cluster.path / "kind-config.yaml"
        config_file.write_text(to_yaml(self.config))
        if name in self.existing_clusters():
            self.progress(f"reusing kind cluster {name} (it will be left running)")
            self.write_kubeconfig()
        else:
            self.progress(f"creating kind cluster {name}: Kubernetes {self.version}, "
                          f"{self.config['nodes'][0]['image']}")
            self.created = True
        try:
            self.cluster.create(config_file)
        except (subprocess.CalledProcessError, OSError) as e:
            raise ClusterError(f"kind create cluster {name} failed ({e}): see kind's output above") from None
        return ProvidedCluster(choose_kubeconfig(self.cluster.kubeconfig_path, f"kind-{name}"), self.created)

    def check_kind_release(self) -> None:
        """kind supports a node image with the release that built it (best effort with others): say so
        before a long, doomed ``kind create cluster``."""
        if self.pinned is None:
            return
        found = KIND_RELEASE.search(self.run("version").stdout)
        if found and release_tuple(found.group(0)) < release_tuple(self.pinned.min_kind_release):
            raise UsageError(f"kind {found.group(0)} is older than {self.pinned.min_kind_release}, the oldest "
                             f"kind that runs {self.pinned.image}: pass a newer kind with --nginmesh-kind-bin")
        if found and found.group(0) != self.pinned.kind_release:
            self.progress(f"kind {found.group(0)} runs {self.pinned.image} on a best-effort basis: kind "
                          f"{self.pinned.kind_release} built it (--nginmesh-kind-bin) if creation fails")

    def existing_clusters(self) -> list[str]:
        result = self.run("get", "clusters")
        return result.stdout.split()

    def write_kubeconfig(self) -> None:
        result = self.run("get", "kubeconfig", "--name", self.settings.cluster_name)
        self.cluster.kubeconfig_path.write_text(result.stdout)
        self.cluster.kubeconfig_path.chmod(0o600)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.cluster.kind_path), *args], capture_output=True, text=True,
                                timeout=self.settings.timeouts.api_request * 6)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ClusterError(f"kind {' '.join(args)} exited {result.returncode}: "
                               f"{detail[-1] if detail else 'no output'}")
        return result

    def prepare(self, cluster: KubernetesCluster) -> None:
        """Nothing to do: kind's nodes come with a pod network and take pods."""

    def down(self) -> None:
        if self.created:
            self.progress(f"deleting kind cluster {self.settings.cluster_name}")
            self.cluster.delete()
            self.created = False
