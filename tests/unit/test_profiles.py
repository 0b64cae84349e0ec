"""The profiles (pytest_nginmesh.profiles): each release's facts, stated once."""

from __future__ import annotations

import pytest

from pytest_nginmesh.bookinfo import release_of_tag
from pytest_nginmesh.errors import UsageError
from pytest_nginmesh.features import ALL
from pytest_nginmesh.profiles import PROFILES, get_profile

RELEASES = ("nginmesh-0.2.12", "nginmesh-0.3.0", "nginmesh-0.7.1")


@pytest.mark.parametrize("name", RELEASES)
def test_real_releases_claim_what_the_agents_readme_claims_and_no_fault_delay(name: str) -> None:
    features = get_profile(name).features
    assert features < ALL and "fault-delay" not in features
    assert {"routing-request-timeout", "routing-retries", "fault-abort"} <= features, "claimed, though not rendered"


def test_the_local_reference_claims_everything() -> None:
    assert get_profile("local").features == ALL


@pytest.mark.parametrize("name", RELEASES)
def test_the_real_agent_polls_pilot_every_5s(name: str) -> None:
    assert get_profile(name).agent_refresh_period == 5.0


@pytest.mark.parametrize(("name", "hub", "proxy"), [
    ("nginmesh-0.2.12", "nginmesh", "nginmesh/proxy_debug:0.2.12"),
    ("nginmesh-0.3.0", "nginmesh", "nginmesh/proxy_debug:0.2.12"),
    ("nginmesh-0.7.1", "nginxinc", "nginxinc/nginmesh_proxy_debug:0.7.1"),
])
def test_images_come_from_the_releases_hub(name: str, hub: str, proxy: str) -> None:
    profile = get_profile(name)
    assert (profile.hub, profile.proxy_image) == (hub, proxy)
    assert profile.proxy_image.startswith(profile.hub + "/")


def test_istio_0_2_12_injects_without_auth_policy_and_pilot_on_8080() -> None:
    args = get_profile("nginmesh-0.2.12").proxy_args
    assert (args.discovery_address, args.control_plane_auth_policy) == ("istio-pilot.istio-system:8080", False)
    assert get_profile("nginmesh-0.3.0").proxy_args.control_plane_auth_policy


def test_only_bookinfo_from_istio_0_5_on_writes_the_ratings_error() -> None:
    assert get_profile("nginmesh-0.2.12").bookinfo.ratings_error_text is None
    assert get_profile("nginmesh-0.3.0").bookinfo.ratings_error_text is None
    assert get_profile("nginmesh-0.7.1").bookinfo.ratings_error_text == "Ratings service is currently unavailable"


def test_a_page_without_stars_shows_the_failed_ratings_call_of_an_istio_0_2_bookinfo() -> None:
    bookinfo = get_profile("nginmesh-0.2.12").bookinfo
    assert bookinfo.ratings_failed('<div class="review">An extremely entertaining play</div>')
    assert not bookinfo.ratings_failed('<font color="black"><span class="glyphicon glyphicon-star"></span></font>')
    assert not bookinfo.ratings_failed("Sorry, product reviews are currently unavailable for this book.")
    assert bookinfo.api_status(500) == 500 and get_profile("local").bookinfo.api_status(500) == 503


@pytest.mark.parametrize(("name", "tag", "fixture"), [
    ("nginmesh-0.2.12", "0.2.3", "bookinfo/bookinfo-istio-0.2.12.yaml"),
    ("nginmesh-0.3.0", "0.2.8", "bookinfo/bookinfo-istio-0.3.0.yaml"),
    ("nginmesh-0.7.1", "1.5.0", "bookinfo/bookinfo-istio-0.7.1.yaml"),
    ("local", "local", "bookinfo/bookinfo.yaml"),
])
def test_each_profile_deploys_the_bookinfo_of_its_istio_release(name: str, tag: str, fixture: str) -> None:
    bookinfo = get_profile(name).bookinfo
    assert (bookinfo.tag, bookinfo.fixture) == (tag, fixture)


@pytest.mark.parametrize("name", RELEASES)
def test_the_releases_productpage_answers_500_for_an_upstream_that_never_answered(name: str) -> None:
    assert get_profile(name).bookinfo.api_status(None) == 500
    assert get_profile("local").bookinfo.api_status(None) == 503


def test_an_image_tag_no_release_uses_runs_the_local_bookinfo() -> None:
    assert release_of_tag("latest") is release_of_tag("1.8.0") is get_profile("local").bookinfo
    assert release_of_tag("0.2.8") is get_profile("nginmesh-0.3.0").bookinfo


@pytest.mark.parametrize(("name", "status"), [("nginmesh-0.2.12", 301), ("nginmesh-0.7.1", 301), ("local", 302)])
def test_redirect_status_through_the_ingress(name: str, status: int) -> None:
    assert get_profile(name).redirect_status == status


def test_initializer_and_webhook_read_the_opt_out_in_different_places() -> None:
    initializer, webhook = (get_profile(n).injection_policy for n in ("nginmesh-0.2.12", "nginmesh-0.7.1"))
    assert initializer.annotation_on == "workload" and webhook.annotation_on == "pod"
    assert "istio-system" in initializer.ignored_namespaces
    assert webhook.namespace_label == ("istio-injection", "enabled")
    assert not initializer.injects("default", "maybe") and initializer.injects("default", "on")


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=", ".join(PROFILES)):
        get_profile("nginmesh-9")
