"""The Bookinfo under test, and its copies for pytest-xdist workers (pytest_nginmesh.mesh.bookinfo_instance)."""

from __future__ import annotations

from pytest_nginmesh.kube import key_of
from pytest_nginmesh.mesh.bookinfo_instance import COPY_HOST_DOMAIN, BookinfoInstance, copy_objects
from pytest_nginmesh.mesh.manifests import BOOKINFO_DEPLOYMENTS, load_fixture
from pytest_nginmesh.profiles import PROFILES


def test_the_installed_bookinfo_is_reached_without_a_host() -> None:
    bookinfo = BookinfoInstance("default", "http://10.1.0.2:30000")
    assert bookinfo.url("/productpage") == "http://10.1.0.2:30000/productpage"
    assert bookinfo.headers == {}
    assert bookinfo.fqdn("reviews") == "reviews.default.svc.cluster.local"
    assert bookinfo.service_url("ratings", "/ratings/0") == "http://ratings.default:9080/ratings/0"


def test_a_copy_is_reached_by_its_host() -> None:
    bookinfo = BookinfoInstance("nginmesh-1a2b3c4d", "http://10.1.0.2:30000", f"nginmesh-1a2b3c4d.{COPY_HOST_DOMAIN}")
    assert bookinfo.headers == {"Host": "nginmesh-1a2b3c4d.nginmesh.test"}
    assert bookinfo.fqdn("reviews") == "reviews.nginmesh-1a2b3c4d.svc.cluster.local"


def test_every_releases_bookinfo_copies_into_the_namespace_with_its_ingress_for_one_host() -> None:
    for profile in PROFILES.values():
        original = load_fixture(profile.bookinfo.fixture)
        copied = copy_objects(original, "copy", "copy.nginmesh.test")
        assert {key_of(o).namespace for o in copied} == {"copy"}, profile.name
        deployments = {o["metadata"]["name"] for o in copied if o["kind"] == "Deployment"}
        assert set(BOOKINFO_DEPLOYMENTS) <= deployments, profile.name
        (ingress,) = [o for o in copied if o["kind"] == "Ingress"]
        rules = ingress["spec"]["rules"]
        assert rules and all(rule["host"] == "copy.nginmesh.test" for rule in rules), profile.name
        (untouched,) = [o for o in original if o["kind"] == "Ingress"]
        assert all("host" not in rule for rule in untouched["spec"]["rules"]), "the fixture is not changed"
