"""Kubernetes versions: parsing, the kubeadm config API each one speaks, pinned kind node images, profile fit."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError
from ..profiles import Profile

VERSION_PATTERN = re.compile(r"^v?1\.(\d+)(?:\.(\d+))?$")


@dataclass(frozen=True, order=True)
class KubeVersion:
    """A Kubernetes version; the patch is optional ("1.13" means any 1.13 release)."""

    major: int
    minor: int
    patch: int | None = None

    @classmethod
    def parse(cls, text: str, where: str = "--nginmesh-k8s-version") -> KubeVersion:
        match = VERSION_PATTERN.match(text.strip())
        if not match:
            raise UsageError(f"bad Kubernetes version {text!r} for {where}: give 1.MINOR or 1.MINOR.PATCH, e.g. 1.13")
        minor, patch = match.groups()
        return cls(1, int(minor), None if patch is None else int(patch))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}" + ("" if self.patch is None else f".{self.patch}")

    @property
    def minor_version(self) -> tuple[int, int]:
        return (self.major, self.minor)


# (first minor, kubeadm config apiVersion) from that minor on, oldest first.
KUBEADM_API_VERSIONS = (((1, 0), "v1alpha1"), ((1, 11), "v1alpha2"), ((1, 12), "v1alpha3"), ((1, 13), "v1beta1"),
                        ((1, 15), "v1beta2"), ((1, 22), "v1beta3"), ((1, 31), "v1beta4"))
# kind lags kubeadm: v1beta3 only from 1.23 and v1beta4 only from 1.36 (kind v0.32.0). 1.11 and 1.12 ran on
# kind up to v0.8, whose templates were v1alpha2 and v1alpha3; kind never ran anything older.
KIND_KUBEADM_API_VERSIONS = (((1, 11), "v1alpha2"), ((1, 12), "v1alpha3"), ((1, 13), "v1beta1"),
                             ((1, 15), "v1beta2"), ((1, 23), "v1beta3"), ((1, 36), "v1beta4"))


def _api_version_for(v: KubeVersion, ladder: tuple[tuple[tuple[int, int], str], ...]) -> str | None:
    chosen = None
    for first, api_version in ladder:
        if v.minor_version >= first:
            chosen = f"kubeadm.k8s.io/{api_version}"
    return chosen


def kubeadm_api_version(v: KubeVersion) -> str:
    """The kubeadm config apiVersion kubeadm of version ``v`` reads and writes natively."""
    return str(_api_version_for(v, KUBEADM_API_VERSIONS))


def kind_kubeadm_api_version(v: KubeVersion) -> str:
    """The kubeadm apiVersion kind generates for a node of version ``v``; patches must name it to apply."""
    chosen = _api_version_for(v, KIND_KUBEADM_API_VERSIONS)
    if chosen is None:
        raise UsageError(f"kind cannot run Kubernetes {v} (1.11 is the oldest it ever ran): use a kubeadm cluster")
    return chosen


@dataclass(frozen=True)
class NodeImage:
    """A pinned ``kindest/node`` image and the kind releases that go with it."""

    k8s: KubeVersion
    image: str
    kind_release: str  # the release whose notes list the image (and which built it)
    min_kind_release: str  # the oldest kind release able to run it

    @property
    def pinned(self) -> bool:
        return "@sha256:" in self.image


def _image(version: str, kind_release: str, digest: str | None = None) -> NodeImage:
    tag = f"kindest/node:v{version}"
    return NodeImage(KubeVersion.parse(version), f"{tag}@sha256:{digest}" if digest else tag,
                     kind_release, kind_release)


# One image per minor. kind supports an image only with the release that built it ("best effort" with
# others), so the oldest release able to run each is the one that built it. Sources: the digests kind's
# maintainers pushed for v0.7.0 (kubernetes-sigs/kind#1250), the v0.9.0 and v0.33.0 release notes, and the
# v0.12.0 image list (kubernetes-sigs/kind#2649). 1.24-1.33 carry a tag only: their digests could not be
# checked against release notes here, so the tag (which kind may rebuild) names the image the release built.
NODE_IMAGES = {
    image.k8s.minor_version: image
    for image in (
        _image("1.11.10", "v0.7.0", "e6f3dade95b7cb74081c5b9f3291aaaa6026a90a977e0b990778b6adc9ea6248"),
        _image("1.12.10", "v0.7.0", "68a6581f64b54994b824708286fafc37f1227b7b54cbb8865182ce1e036ed1cc"),
        _image("1.13.12", "v0.9.0", "1c1a48c2bfcbae4d5f4fa4310b5ed10756facad0b7a2ca93c7a4b5bae5db29f5"),
        _image("1.14.10", "v0.9.0", "ce4355398a704fca68006f8a29f37aafb49f8fc2f64ede3ccd0d9198da910146"),
        _image("1.15.12", "v0.9.0", "d9b939055c1e852fe3d86955ee24976cab46cba518abcb8b13ba70917e6547a6"),
        _image("1.16.15", "v0.9.0", "a89c771f7de234e6547d43695c7ab047809ffc71a0c3b65aa54eda051c45ed20"),
        _image("1.17.11", "v0.9.0", "5240a7a2c34bf241afb54ac05669f8a46661912eab05705d660971eeb12f6555"),
        _image("1.18.8", "v0.9.0", "f4bcc97a0ad6e7abaf3f643d890add7efe6ee4ab90baeb374b4f41a4c95567eb"),
        _image("1.19.1", "v0.9.0", "98cf5288864662e37115e362b23e4369c8c4a408f99cbc06e58ac30ddc721600"),
        _image("1.20.15", "v0.12.0", "393bb9096c6c4d723bb17bceb0896407d7db581532d11ea2839c80b28e5d8deb"),
        _image("1.21.10", "v0.12.0", "84709f09756ba4f863769bdcabe5edafc2ada72d3c8c44d6515fc581b66b029c"),
        _image("1.22.7", "v0.12.0", "1dfd72d193bf7da64765fd2f2898f78663b9ba366c2aa74be1fd7498a1873166"),
        _image("1.23.4", "v0.12.0", "0e34f0d0fd448aa2f2819cfd74e99fe5793a6e4938b328f657c8e3f81ee0dfb9"),
        _image("1.24.17", "v0.22.0"),
        _image("1.25.16", "v0.24.0"),
        _image("1.26.15", "v0.25.0"),
        _image("1.27.16", "v0.25.0"),
        _image("1.28.15", "v0.25.0"),
        _image("1.29.14", "v0.27.0"),
        _image("1.30.13", "v0.29.0"),
        _image("1.31.12", "v0.30.0"),
        _image("1.32.8", "v0.30.0"),
        _image("1.33.4", "v0.30.0"),
        _image("1.34.11", "v0.33.0", "44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d"),
        _image("1.35.8", "v0.33.0", "07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0"),
        _image("1.36.4", "v0.33.0", "099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed"),
        _image("1.37.0", "v0.33.0", "a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5"),
    )
}
CURRENT_K8S = KubeVersion(*max(NODE_IMAGES))
INITIALIZERS_ADDED = KubeVersion(1, 7)
INITIALIZERS_REMOVED = KubeVersion(1, 14)
MUTATING_WEBHOOK_ADDED = KubeVersion(1, 9)


def node_image(v: KubeVersion, *, image_option: str = "--nginmesh-node-image",
               kubeadm_hint: str = "--nginmesh-cluster=kubeadm") -> NodeImage:
    """The pinned kind node image for ``v``'s minor (and its patch, when ``v`` names one)."""
    image = NODE_IMAGES.get(v.minor_version)
    if image is None:
        raise UsageError(f"Kubernetes {v} has no kindest/node image: use {kubeadm_hint} or pass {image_option}")
    if v.patch is not None and v.patch != image.k8s.patch:
        raise UsageError(f"the pinned kind node image for Kubernetes {v.major}.{v.minor} is {image.k8s}, "
                         f"not {v}: ask for {v.major}.{v.minor} or pass {image_option}")
    return image


def check_profile_supports(profile: Profile, v: KubeVersion, *, version_option: str = "--nginmesh-k8s-version",
                           profile_option: str = "--nginmesh-profile") -> None:
    """Refuse a Kubernetes version the profile's injection mechanism does not exist in."""
    minor = v.minor_version
    if profile.injection == "initializer":
        if minor >= INITIALIZERS_REMOVED.minor_version:
            raise UsageError(f"profile {profile.name} injects through the Initializers admission plugin, which "
                             f"Kubernetes {INITIALIZERS_REMOVED} removed: use {version_option} 1.13 or lower, "
                             f"or {profile_option} nginmesh-0.7.1 (webhook)")
        if minor < INITIALIZERS_ADDED.minor_version:
            raise UsageError(f"profile {profile.name} injects through the Initializers admission plugin, which "
                             f"Kubernetes {INITIALIZERS_ADDED} introduced: use {version_option} 1.7 to 1.13")
    elif minor < MUTATING_WEBHOOK_ADDED.minor_version:
        raise UsageError(f"profile {profile.name} injects through the MutatingAdmissionWebhook, which Kubernetes "
                         f"{MUTATING_WEBHOOK_ADDED} introduced: use {version_option} 1.9 or higher")


def default_k8s_version(profile: Profile) -> KubeVersion:
    """The newest Kubernetes the profile runs on: 1.13 for Initializers, the newest kind image for webhooks."""
    return KubeVersion(1, 13) if profile.injection == "initializer" else CURRENT_K8S
