"""Kubernetes providers: how a kubeconfig comes to be (kind, kubeadm, an existing cluster), and the
session's way to a ready mesh on it: provide, preflight, install if allowed, and undo only its own work."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import ClusterError, UsageError
from ..profiles import Profile
from ..settings import Settings
from .kubeapi import KubeApi, KubeconfigChoice, as_obj
from .versions import KubeVersion, check_profile_supports

if TYPE_CHECKING:
    from .k8s import KubernetesCluster

PREFLIGHT_TIMEOUT = 5.0  # /version is the cheapest request there is; a server slower than this is not usable

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProvidedCluster:
    """A reachable cluster's kubeconfig, and whether this run created the cluster (only then may it delete it)."""

    kubeconfig: KubeconfigChoice
    created: bool


class Provider(Protocol):
    def up(self) -> ProvidedCluster:
        """Create or adopt the cluster."""

    def prepare(self, cluster: KubernetesCluster) -> None:
        """Make a cluster this run created ready for pods (pod network, schedulable nodes)."""

    def down(self) -> None:
        """Delete the cluster if this run created it; otherwise nothing."""


@dataclass(frozen=True)
class ServerFacts:
    """What the read-only preflight learnt about the API server."""

    version: KubeVersion
    git_version: str


def preflight(api: KubeApi, profile: Profile) -> ServerFacts:
    """Read-only checks before anything is installed: the server answers (bounded) and serves the API the
    profile's injection needs (when not, its version says why, if it can)."""
    info = as_obj(api.request("GET", "/version", timeout=min(PREFLIGHT_TIMEOUT, api.request_timeout)))
    git_version = str(info.get("gitVersion") or f"v{info.get('major')}.{info.get('minor')}")
    try:
        version = KubeVersion.parse(git_version.split("-")[0].split("+")[0], "the API server's version")
    except UsageError:
        raise ClusterError(f"the API server reports version {git_version!r}, which is not a Kubernetes 1.x "
                           "version: is this a Kubernetes API server?") from None
    # The API served is the truth (the embedded cluster serves InitializerConfigurations at any version); the
    # version only explains why it is missing.
    if profile.injection == "initializer":
        served = api.serves("admissionregistration.k8s.io/v1alpha1", "InitializerConfiguration")
    else:
        served = any(api.serves(f"admissionregistration.k8s.io/{v}", "MutatingWebhookConfiguration")
                     for v in ("v1", "v1beta1"))
    if served:
        return ServerFacts(version, git_version)
    try:
        check_profile_supports(profile, version, version_option="a cluster")
    except UsageError as e:
        raise UsageError(f"context {api.choice.context!r} runs Kubernetes {git_version}: {e}") from None
    if profile.injection == "initializer":
        raise UsageError(f"context {api.choice.context!r} does not serve admissionregistration.k8s.io/v1alpha1 "
                         f"InitializerConfigurations, which profile {profile.name} needs: start kube-apiserver "
                         "with the Initializers admission plugin and that runtime-config (see "
                         "'nginmesh render kubeadm-config')")
    raise UsageError(f"context {api.choice.context!r} serves no MutatingWebhookConfigurations, which profile "
                     f"{profile.name} needs: enable the MutatingAdmissionWebhook admission plugin")


def make_provider(settings: Settings, profile: Profile, progress: Progress) -> Provider:
    """The provider ``--nginmesh-cluster`` names; its constructor validates every option (nothing is touched)."""
    from .existing import ExistingProvider
    from .kind import KindProvider
    from .kubeadm import KubeadmProvider

    providers: dict[str, Callable[[Settings, Profile, Progress], Provider]] = {
        "kind": KindProvider, "kubeadm": KubeadmProvider, "existing": ExistingProvider}
    return providers[settings.cluster](settings, profile, progress)


@contextmanager
def provided(provider: Provider, keep: bool) -> Iterator[ProvidedCluster]:
    """The provider's cluster for the block; deleted afterwards if this run created it (also when creating
    it failed half-way), unless kept."""
    try:
        yield provider.up()
    finally:
        if not keep:
            provider.down()
