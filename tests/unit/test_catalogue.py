"""Which local program stands in for which image (pytest_nginmesh.cluster.local.catalogue)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_nginmesh.bookinfo import RELEASES_BY_TAG, BookinfoRelease
from pytest_nginmesh.cluster.local.catalogue import is_proxy, program_of, readiness_probe, repository, resolve, tag
from pytest_nginmesh.kube import Obj, read_manifest_file

REPO = Path(__file__).resolve().parents[2]
BOOKINFO_MANIFEST = REPO / "fixtures" / "bookinfo" / "bookinfo.yaml"
FIXTURES = REPO / "fixtures"
ISTIO_MANIFEST = REPO / "fixtures" / "istio" / "istio-0.2.12.yaml"
SEED_POD = REPO / "tests" / "data" / "seed-reviews-v3-pod.yaml"


def module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-u", "-m", f"pytest_nginmesh.workloads.{name}", *args]


def tcp(port: int) -> Obj:
    return {"tcpSocket": {"port": port}, "periodSeconds": 1}


def http(port: int, path: str) -> Obj:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 1}


def containers(path: Path, key: str = "containers") -> list[Obj]:
    found: list[Obj] = []
    for obj in read_manifest_file(str(path)):
        spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj.get("spec") or {}
        found += spec.get(key) or []
    return found


def named(items: list[Obj], name: str) -> Obj:
    (item,) = [c for c in items if c["name"] == name]
    return item


# -- repository ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("pilot", "pilot"),
        ("docker.io/istio/pilot:0.2.12", "pilot"),
        ("istio/examples-bookinfo-reviews-v2:0.2.3", "examples-bookinfo-reviews-v2"),
        ("localhost:5000/nginmesh/proxy_debug:0.2.12", "proxy_debug"),
        ("nginmesh/proxy_init@sha256:f73b68839f6ac1596d6286ca498e4478b8fcfa834e4884418d23f9f625cbe5f5", "proxy_init"),
        ("registry.example.com:443/a/b/sidecar_initializer:0.2.12@sha256:abcd", "sidecar_initializer"),
    ],
)
def test_repository_strips_registry_tag_and_digest(image: str, expected: str) -> None:
    assert repository(image) == expected


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("pilot", "latest"),
        ("istio/examples-bookinfo-reviews-v2:0.2.3", "0.2.3"),
        ("localhost:5000/istio/examples-bookinfo-reviews-v2", "latest"),
        ("localhost:5000/istio/examples-bookinfo-reviews-v2:1.5.0@sha256:abcd", "1.5.0"),
    ],
)
def test_tag_is_the_last_parts_tag_and_latest_without_one(image: str, expected: str) -> None:
    assert tag(image) == expected


# -- resolve ---------------------------------------------------------------------------------------


def test_proxy_init_runs_with_the_container_args() -> None:
    seed_init = named(containers(SEED_POD, "initContainers"), "istio-init")
    program = resolve(seed_init)
    assert program is not None
    assert program.argv == module("proxy_init", "-p", "15001", "-u", "1337")
    assert program.default_probe is None


AGENT_READY = {"httpGet": {"path": "/healthz/ready", "port": 15020}, "periodSeconds": 1}


def test_sidecar_proxy_runs_the_agent_and_is_ready_when_its_agent_says_so() -> None:
    proxy = named(containers(SEED_POD), "istio-proxy")
    program = resolve(proxy)
    assert program is not None
    assert program.argv == module("agent", *proxy["args"])
    assert program.default_probe == AGENT_READY, "a port held by orphaned NGINX workers never counts"
    assert is_proxy(proxy)


def test_ingress_runs_the_agent_and_is_ready_when_its_agent_says_so() -> None:
    ingress = named(containers(ISTIO_MANIFEST), "istio-ingress")
    program = resolve(ingress)
    assert program is not None
    assert program.argv == module("agent", *ingress["args"])
    assert program.default_probe == AGENT_READY
    assert is_proxy(ingress)


def test_pilot_runs_with_its_args_and_declared_port() -> None:
    program = resolve(named(containers(ISTIO_MANIFEST), "discovery"))
    assert program is not None
    assert program.argv == module("pilot", "discovery", "-v", "2", "--port", "15003")
    assert program.default_probe == tcp(15003)


def test_sidecar_initializer_runs_the_initializer() -> None:
    program = resolve(named(containers(ISTIO_MANIFEST), "initializer"))
    assert program is not None
    # The local reference's Initializer is Istio 0.3.0's (the seed's injected pod): its tag says which it is.
    assert program.argv == module("initializer", "--port=8083", "--namespace=istio-system", "-v=2",
                                  "--image-tag", "0.3.0")
    assert program.default_probe is None


def test_every_image_of_the_fixtures_is_known() -> None:
    manifests = [path for folder in ("bookinfo", "istio", "httpbin")
                 for path in (REPO / "fixtures" / folder).glob("*.yaml")]
    every = [c for path in sorted(manifests) for c in containers(path)]
    assert len(every) >= 9 + 6 * 3 + 2
    assert [c["image"] for c in every if resolve(c) is None] == []


def test_the_bookinfo_database_runs_the_mongodb_stand_in_on_its_port() -> None:
    (database,) = containers(REPO / "fixtures" / "bookinfo" / "bookinfo-db-istio-0.2.12.yaml")
    program = resolve(database)
    assert program is not None
    assert (program.argv, program.default_probe) == (module("mongodb", "--port", "27017"), tcp(27017))


@pytest.mark.parametrize(
    ("image", "service", "version"),
    [("istio/examples-bookinfo-details-v1:local", "details", "v1"),
     ("istio/examples-bookinfo-ratings-v1:local", "ratings", "v1"),
     ("istio/examples-bookinfo-reviews-v1:local", "reviews", "v1"),
     ("istio/examples-bookinfo-reviews-v2:local", "reviews", "v2"),
     ("istio/examples-bookinfo-reviews-v3:local", "reviews", "v3"),
     ("istio/examples-bookinfo-productpage-v1:local", "productpage", "v1")],
)
def test_bookinfo_images_run_their_service_version_on_the_container_port(
    image: str, service: str, version: str
) -> None:
    (container,) = [c for c in containers(BOOKINFO_MANIFEST) if c["image"] == image]
    program = resolve(container)
    assert program is not None
    assert program.argv == module("bookinfo", service, version, "--port", "9080", "--image-tag", "local")
    assert program.default_probe == http(9080, "/health")
    assert not is_proxy(container)


@pytest.mark.parametrize("release", RELEASES_BY_TAG.values(), ids=lambda release: release.tag)
def test_each_releases_fixture_runs_every_bookinfo_image_as_that_release(release: BookinfoRelease) -> None:
    """The release's bookinfo.yaml names images of its tag only, and the catalogue hands each program that tag."""
    fixture = FIXTURES / release.fixture
    bookinfo = [c for c in containers(fixture) if repository(c["image"]).startswith("examples-bookinfo-")]
    assert len(bookinfo) == 6
    for container in bookinfo:
        program = resolve(container)
        assert program is not None and program.argv[-2:] == ["--image-tag", release.tag]


def test_bookinfo_port_follows_the_declared_container_port() -> None:
    container = {"name": "reviews", "image": "istio/examples-bookinfo-reviews-v2:0.2.3",
                 "ports": [{"containerPort": 9181}, {"containerPort": 9999, "protocol": "UDP"}]}
    program = resolve(container)
    assert program is not None
    assert program.argv == module("bookinfo", "reviews", "v2", "--port", "9181", "--image-tag", "0.2.3")
    assert program.default_probe == http(9181, "/health")


@pytest.mark.parametrize(
    "image",
    ["nginx:1.25", "busybox", "istio/examples-bookinfo-mongodb-v1:0.2.3", "istio/examples-bookinfo-reviews-v2x:1",
     "istio/grafana:0.2.12", ""],
)
def test_unknown_image_resolves_to_none(image: str) -> None:
    assert resolve({"name": "c", "image": image}) is None


def test_httpbin_is_ready_when_it_answers_on_its_port() -> None:
    program = resolve({"name": "httpbin", "image": "docker.io/citizenstig/httpbin", "ports": [{"containerPort": 8000}]})
    assert program is not None
    assert program.default_probe == http(8000, "/status/200")


def test_a_manifest_readiness_probe_replaces_the_default() -> None:
    own = {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 2}
    container = {"name": "details", "image": "istio/examples-bookinfo-details-v1:0.2.3",
                 "ports": [{"containerPort": 9080}], "readinessProbe": own}
    program = resolve(container)
    assert program is not None
    assert readiness_probe(container, program) == own
    assert readiness_probe({k: v for k, v in container.items() if k != "readinessProbe"}, program) == \
        http(9080, "/health")


def test_every_program_runs_isolated_from_the_interpreter_env() -> None:
    every = containers(BOOKINFO_MANIFEST) + containers(ISTIO_MANIFEST) + containers(SEED_POD, "initContainers")
    for container in every:
        program = resolve(container)
        assert program is not None
        assert program.argv[:3] == [sys.executable, "-I", "-u"], container["name"]


def test_a_command_replaces_the_images_program_and_its_default_probe() -> None:
    # The helper pod the Kubernetes adapter reads pods' iptables from: the init image, running `sleep`.
    program = program_of({"name": "debug", "image": "nginmesh/proxy_init:0.2.12", "command": ["sleep", 3600],
                          "args": ["--extra"]})
    assert program is not None
    assert program.argv == ["sleep", "3600", "--extra"]
    assert program.default_probe is None
    with_args_only = program_of({"name": "p", "image": "docker.io/istio/pilot:0.2.12", "args": ["discovery"],
                                 "ports": [{"containerPort": 8080}]})
    assert with_args_only == resolve({"name": "p", "image": "docker.io/istio/pilot:0.2.12", "args": ["discovery"],
                                      "ports": [{"containerPort": 8080}]})


def test_a_command_does_not_make_an_unknown_image_known() -> None:
    assert program_of({"name": "c", "image": "busybox", "command": ["sleep", "1"]}) is None
