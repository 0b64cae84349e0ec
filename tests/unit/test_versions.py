"""Kubernetes versions: parsing, kubeadm API versions, pinned kind node images, which profile runs where."""

from __future__ import annotations

import re

import pytest

from pytest_nginmesh.cluster.versions import (
    CURRENT_K8S,
    NODE_IMAGES,
    KubeVersion,
    check_profile_supports,
    default_k8s_version,
    kind_kubeadm_api_version,
    kubeadm_api_version,
    node_image,
)
from pytest_nginmesh.errors import UsageError
from pytest_nginmesh.profiles import PROFILES


@pytest.mark.parametrize(("text", "expected"), [
    ("1.9", KubeVersion(1, 9)), ("v1.13.12", KubeVersion(1, 13, 12)), ("1.31.0", KubeVersion(1, 31, 0)),
    (" v1.37 ", KubeVersion(1, 37)),
])
def test_parse(text: str, expected: KubeVersion) -> None:
    assert KubeVersion.parse(text) == expected


@pytest.mark.parametrize("text", ["", "1", "1.", "2.0", "1.13.x", "v1.13.12-rc.1", "latest", "1.13.1.1"])
def test_parse_refuses_with_one_line_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        KubeVersion.parse(text, "--k8s-version")
    message = str(caught.value)
    assert "\n" not in message and "--k8s-version" in message and "e.g. 1.13" in message


def test_str_and_minor_version() -> None:
    assert (str(KubeVersion(1, 13)), str(KubeVersion(1, 13, 12))) == ("1.13", "1.13.12")
    assert KubeVersion(1, 13, 12).minor_version == (1, 13)
    assert KubeVersion(1, 9) < KubeVersion(1, 13)


@pytest.mark.parametrize(("minor", "api"), [
    (9, "v1alpha1"), (10, "v1alpha1"), (11, "v1alpha2"), (12, "v1alpha3"), (13, "v1beta1"), (14, "v1beta1"),
    (15, "v1beta2"), (21, "v1beta2"), (22, "v1beta3"), (30, "v1beta3"), (31, "v1beta4"), (37, "v1beta4"),
])
def test_kubeadm_api_version(minor: int, api: str) -> None:
    assert kubeadm_api_version(KubeVersion(1, minor)) == f"kubeadm.k8s.io/{api}"


@pytest.mark.parametrize(("minor", "api"), [
    (11, "v1alpha2"), (12, "v1alpha3"), (13, "v1beta1"), (14, "v1beta1"), (15, "v1beta2"), (22, "v1beta2"),
    (23, "v1beta3"), (31, "v1beta3"), (35, "v1beta3"), (36, "v1beta4"), (37, "v1beta4"),
])
def test_kind_lags_kubeadm(minor: int, api: str) -> None:
    assert kind_kubeadm_api_version(KubeVersion(1, minor)) == f"kubeadm.k8s.io/{api}"


def test_kind_never_ran_1_10() -> None:
    with pytest.raises(UsageError, match=re.escape("kind cannot run Kubernetes 1.10")):
        kind_kubeadm_api_version(KubeVersion(1, 10))


def test_node_images_are_pinned_where_verified_and_named_by_their_version() -> None:
    for minor, image in NODE_IMAGES.items():
        assert image.k8s.minor_version == minor
        assert image.image.startswith(f"kindest/node:v{image.k8s}")
        assert image.kind_release.startswith("v0.") and image.min_kind_release.startswith("v0.")
    pinned = {minor for minor, image in NODE_IMAGES.items() if image.pinned}
    assert {(1, 11), (1, 12), (1, 13), (1, 37)} <= pinned
    assert node_image(KubeVersion(1, 13)).image == (
        "kindest/node:v1.13.12@sha256:1c1a48c2bfcbae4d5f4fa4310b5ed10756facad0b7a2ca93c7a4b5bae5db29f5")
    assert node_image(KubeVersion(1, 13)).kind_release == "v0.9.0"
    assert node_image(KubeVersion(1, 13, 12)) == node_image(KubeVersion(1, 13))


def test_current_is_the_newest_minor_of_the_table() -> None:
    assert KubeVersion(1, 37) == CURRENT_K8S
    assert node_image(CURRENT_K8S).image.endswith(
        "@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5")


def test_no_node_image_for_1_9_names_both_ways_out() -> None:
    with pytest.raises(UsageError) as caught:
        node_image(KubeVersion(1, 9))
    assert str(caught.value) == ("Kubernetes 1.9 has no kindest/node image: use --nginmesh-cluster=kubeadm "
                                 "or pass --nginmesh-node-image")


def test_a_patch_the_table_does_not_pin_is_refused() -> None:
    expected = "pinned kind node image for Kubernetes 1.13 is 1.13.12, not 1.13.5"
    with pytest.raises(UsageError, match=re.escape(expected)):
        node_image(KubeVersion(1, 13, 5))


@pytest.mark.parametrize("profile", ["nginmesh-0.2.12", "nginmesh-0.3.0", "local"])
def test_initializer_profiles_stop_at_1_13(profile: str) -> None:
    for minor in (7, 9, 13):
        check_profile_supports(PROFILES[profile], KubeVersion(1, minor))
    with pytest.raises(UsageError) as caught:
        check_profile_supports(PROFILES[profile], KubeVersion(1, 14))
    assert str(caught.value) == (
        f"profile {profile} injects through the Initializers admission plugin, which Kubernetes 1.14 removed: "
        "use --nginmesh-k8s-version 1.13 or lower, or --nginmesh-profile nginmesh-0.7.1 (webhook)")
    with pytest.raises(UsageError, match=re.escape("Kubernetes 1.7 introduced")):
        check_profile_supports(PROFILES[profile], KubeVersion(1, 6))


def test_webhook_profile_needs_1_9() -> None:
    webhook = PROFILES["nginmesh-0.7.1"]
    for minor in (9, 13, 14, 37):
        check_profile_supports(webhook, KubeVersion(1, minor))
    with pytest.raises(UsageError, match=re.escape("MutatingAdmissionWebhook, which Kubernetes 1.9 introduced")):
        check_profile_supports(webhook, KubeVersion(1, 8))


def test_default_versions() -> None:
    assert default_k8s_version(PROFILES["nginmesh-0.2.12"]) == KubeVersion(1, 13)
    assert default_k8s_version(PROFILES["local"]) == KubeVersion(1, 13)
    assert default_k8s_version(PROFILES["nginmesh-0.7.1"]) == CURRENT_K8S
