"""The local twin of each release on the embedded cluster: its agents poll at the release's period and render as the
release's agent does, its mixer names the metrics as the release's Istio does, its Bookinfo is the release's images
(run as their tag says), its Pilot publishes no proxy versions as the release's does and the wait for
convergence (then judged by the proxies' configs over the agents' 5 s poll) still closes the stale window, and the
route and metrics suites' verdicts on it are the README's table, row by row.

CI time (the whole file within 8 min on 2 cores): the route and metrics suites, the retry rendering and the stale
window run on the nginmesh-0.2.12 twin. The 0.3.0 and 0.7.1 twins' agents are the 0.2.12 twin's (the same 5 s poll
and rendering: each twin's poll is shown, the rendering and the stale window once), their mixers serve Istio
0.3's names and buckets, which the metrics suite judges in full on `local` (each twin's mixer is shown serving its
names), so of the suites they run only the rows their own facts change (NGINMESH_TEST_TWINS_FULL=1 runs everything
on every twin):
- nginmesh-0.3.0: its Bookinfo, the 0.2.8 images (fault-abort-for-one-user reads their failure page and API status)
  and their Ingress, the one path /.* (the redirect and rewrite rows, whose /api/v1/products requests take it).
- nginmesh-0.7.1: its Bookinfo, the 1.5.0 images, the first to write the ratings error text while productpage
  relays the upstream's status (fault-abort-for-one-user; fault-abort-percent reads only the text, as on `local`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import cluster_settings, settings_env
from seeding import assert_fails_with
from test_convergence import assert_the_wait_closes_the_stale_window

from pytest_nginmesh.bookinfo import BLACK_STARS, release_of_tag
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.catalogue import repository, tag
from pytest_nginmesh.cluster.local.node import LocalNode, local_cluster
from pytest_nginmesh.cluster.published_versions import PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.mesh.manifests import BOOKINFO_NAMESPACE, MIXER_CONFIG_KEY, load_fixture, mixer_config_map
from pytest_nginmesh.profiles import Profile, get_profile
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.telemetry import scrape

REPO = Path(__file__).resolve().parents[2]
SUITES = (REPO / "suites" / "test_routing.py", REPO / "suites" / "test_metrics.py")
SUITE_RUN_TIMEOUT = 1500
# The twin that runs both suites in full, and what the others run (see the module docstring): None, everything.
FULL_TWIN = "nginmesh-0.2.12"
TWIN_ROWS: dict[str, tuple[str, ...] | None] = {
    FULL_TWIN: None,
    "nginmesh-0.3.0": ("fault-abort-for-one-user", "routing-redirect-uri", "routing-rewrite-uri"),
    "nginmesh-0.7.1": ("fault-abort-for-one-user",),
}
FULL_MATRIX = os.environ.get("NGINMESH_TEST_TWINS_FULL") == "1"
# What every twin's agent shares (the rendering, the stale window): on the full twin only, unless the full matrix.
ON_THE_AGENTS_TWINS = pytest.mark.parametrize("twin", tuple(TWIN_ROWS) if FULL_MATRIX else (FULL_TWIN,), indirect=True)
# README rows: | `conformance-name` | local | nginmesh-0.2.12 | nginmesh-0.3.0 | nginmesh-0.7.1 | why |
TABLE_HEADER = "| feature (conformance test) | local |"
TABLE_ROW = re.compile(r"^\| `([a-z0-9-]+)` \|(.*)$")
TABLE_COLUMNS = ("local", "nginmesh-0.2.12", "nginmesh-0.3.0", "nginmesh-0.7.1")


@pytest.fixture(scope="module", params=tuple(TWIN_ROWS))
def twin(request: pytest.FixtureRequest) -> Iterator[tuple[KubernetesCluster, Settings, Profile]]:
    """One release's twin at a time (pytest removes one before it builds the next, under the same name)."""
    # Address index 3: the teardown tests use it only for the length of one test.
    settings = cluster_settings("nmtwin", 3).with_overrides({"profile": request.param})
    with lifecycle.building(settings, mesh=True) as started:
        if started:
            install_mesh(local_cluster(settings), settings.timeouts, profile=settings.mesh_profile)
    try:
        yield local_cluster(settings), settings, settings.mesh_profile
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def readme_table() -> dict[str, dict[str, str]]:
    """The README's feature-by-release table: conformance name → profile → pass, fail or skip."""
    text = (REPO / "README.md").read_text()
    table = {}
    for line in text[text.index(TABLE_HEADER):].split("\n\n", 1)[0].splitlines():
        match = TABLE_ROW.match(line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split("|")]
            table[match.group(1)] = {profile: cells[i].replace("*", "").split()[0].lower()
                                     for i, profile in enumerate(TABLE_COLUMNS)}
    return table


def suite_tests() -> dict[str, str]:
    """Conformance name → the suite test's node id (``suites/test_routing.py::test_…``), from the suites' markers."""
    tests = {}
    for suite in SUITES:
        pairs = re.findall(r'@pytest\.mark\.conformance\(name="([^"]+)".*?\)\ndef (test_\w+)', suite.read_text())
        tests.update({name: f"{suite.relative_to(REPO)}::{function}" for name, function in pairs})
    return tests


def suite_verdicts(settings: Settings, profile: str, junit: Path,
                   rows: tuple[str, ...] | None = None) -> dict[str, str]:
    """The route and metrics suites (only the tests of ``rows`` when given) in a child pytest on the running
    cluster: conformance name → pass, fail or skip."""
    tests = suite_tests()
    selected = [tests[name] for name in rows] if rows is not None else [str(suite) for suite in SUITES]
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selected,
                    f"--nginmesh-profile={profile}", f"--junitxml={junit}"],
                   cwd=REPO, capture_output=True, text=True, timeout=SUITE_RUN_TIMEOUT,
                   env={**os.environ, **settings_env(settings)})
    names = {node.rsplit("::", 1)[1]: name for name, node in tests.items()}
    verdicts = {}
    for case in ET.parse(junit).iter("testcase"):
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcome = "fail" if failure is not None else "skip" if case.find("skipped") is not None else "pass"
        name = names[case.get("name", "").split("[")[0]]
        verdicts[name] = outcome
        if failure is not None:
            print(f"{name}: {failure.get('message', '')[:600]}")  # shown when the comparison fails
    return verdicts


def productpage_pod(cluster: KubernetesCluster) -> str:
    (pod,) = cluster.pods(BOOKINFO_NAMESPACE, {"app": "productpage"})
    return str(pod["metadata"]["name"])


def test_the_twins_agents_poll_every_5s(twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    cluster, _, profile = twin
    log = cluster.logs(BOOKINFO_NAMESPACE, productpage_pod(cluster), "istio-proxy")
    assert f"a twin of {profile.name}: polling Pilot, acking nothing, every 5s" in log


def test_the_twins_sidecars_carry_the_command_line_of_its_istio_releases_injector(
        twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    """Istio 0.2.12's Initializer: Pilot on 8080 and no --controlPlaneAuthPolicy; 0.3.0's: 15003, with it; 0.7.1's
    webhook (Nginmesh's template): 15007, without it. The agents found Pilot there (the suites ran through them).
    An Initializer injects the workload, the webhook each pod as it is created."""
    cluster, _, profile = twin
    deployment = cluster.get("Deployment", "productpage-v1", BOOKINFO_NAMESPACE)
    assert deployment is not None
    in_template = any(c["name"] == "istio-proxy" for c in deployment["spec"]["template"]["spec"]["containers"])
    assert in_template == (profile.injection == "initializer")
    (pod,) = cluster.pods(BOOKINFO_NAMESPACE, {"app": "productpage"})
    assert (pod["spec"]["containers"][-1]["image"], pod["spec"]["initContainers"][0]["image"]) == (
        profile.proxy_image, profile.init_image)
    (proxy,) = [c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"]
    flags = proxy["args"]
    assert flags[flags.index("--discoveryAddress") + 1] == profile.proxy_args.discovery_address
    assert ("--controlPlaneAuthPolicy" in flags) == profile.proxy_args.control_plane_auth_policy


@ON_THE_AGENTS_TWINS
def test_the_twins_agents_render_retries_as_the_release(twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    cluster, settings, _ = twin
    pod = productpage_pod(cluster)
    retry = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
             "metadata": {"name": "reviews-retry", "namespace": BOOKINFO_NAMESPACE},
             "spec": {"destination": {"name": "reviews"}, "httpReqRetries": {"simpleRetry": {"attempts": 2}},
                      "httpReqTimeout": {"simpleTimeout": {"timeout": "1s"}}}}
    cluster.apply([retry])
    try:
        cluster.wait_converged(settings.timeouts.convergence)
        config = (LocalNode(settings).pod_directory(BOOKINFO_NAMESPACE, pod) / "volumes" / "istio-envoy"
                  / "nginx.conf").read_text()
    finally:
        cluster.delete([retry])
        cluster.wait_converged(settings.timeouts.convergence)
    assert "proxy_next_upstream_tries 2;" in config
    assert "proxy_read_timeout" not in config  # the release renders no request timeout


def test_the_twins_mixer_names_the_metrics_as_its_istio_release(
        twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    cluster, settings, profile = twin
    samples = scrape(cluster, profile.metrics, settings.timeouts.http_request)
    names = {key.name for key in samples}
    prefixed = profile.metrics.request_count.startswith("istio_")
    assert profile.metrics.request_count in names, sorted(names)[:10]
    assert all(name.startswith("istio_") == prefixed for name in names), sorted(names)[:10]


def test_the_twin_runs_the_bookinfo_images_of_its_istio_release(
        twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    cluster, _, profile = twin
    images = {c["image"] for pod in cluster.pods(BOOKINFO_NAMESPACE) for c in pod["spec"]["containers"]
              if repository(c["image"]).startswith("examples-bookinfo-")}
    assert len(images) == 6 and {release_of_tag(tag(image)) for image in images} == {profile.bookinfo}, images


@ON_THE_AGENTS_TWINS
def test_the_version_less_wait_closes_the_stale_window_on_the_twin(
        twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    """As the release's Pilot, the twin's publishes no proxy versions: the wait spans the agents' 5 s poll."""
    cluster, settings, _ = twin
    assert cluster.get("ConfigMap", PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE) is None
    assert_the_wait_closes_the_stale_window(cluster, settings.timeouts.convergence)


def test_the_route_and_metrics_suites_on_the_twin_give_the_readme_tables_verdicts(
        twin: tuple[KubernetesCluster, Settings, Profile], tmp_path: Path) -> None:
    _, settings, profile = twin
    rows = None if FULL_MATRIX else TWIN_ROWS[profile.name]
    verdicts = suite_verdicts(settings, profile.name, tmp_path / "junit.xml", rows)
    table = readme_table()
    assert set(verdicts) <= set(table), f"rows missing from the README table: {sorted(set(verdicts) - set(table))}"
    assert rows is None or set(verdicts) == set(rows), "every selected row ran"
    assert verdicts == {name: table[name][profile.name] for name in verdicts}


def test_the_route_and_metrics_suites_pass_on_local(local_mesh: KubernetesCluster, e2e_settings: Settings,
                                                    tmp_path: Path) -> None:
    verdicts = suite_verdicts(e2e_settings, "local", tmp_path / "junit.xml")
    table = readme_table()
    assert verdicts == {name: table[name]["local"] for name in verdicts}
    assert set(verdicts) == set(table) and set(verdicts.values()) == {"pass"}


RATINGS_DATABASE = ("bookinfo/bookinfo-db-istio-0.2.12.yaml", "bookinfo/bookinfo-ratings-v2-istio-0.2.12.yaml")


def route_to(service: str, version: str) -> Obj:
    return {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
            "metadata": {"name": f"{service}-{version}-only", "namespace": BOOKINFO_NAMESPACE},
            "spec": {"destination": {"name": service}, "precedence": 5, "route": [{"labels": {"version": version}}]}}


def page_with_ratings_from_the_database(cluster: KubernetesCluster, settings: Settings) -> tuple[str, str]:
    """Istio's bookinfo-db.yaml and bookinfo-ratings-v2.yaml applied unchanged, reviews routed to v2 and ratings
    to v2: the productpage and the database's log; everything is removed again."""
    objects = [obj for fixture in RATINGS_DATABASE for obj in load_fixture(fixture)]
    rules = [route_to("reviews", "v2"), route_to("ratings", "v2")]
    cluster.apply(objects)
    try:
        (database,) = cluster.wait_pods_ready(BOOKINFO_NAMESPACE, settings.timeouts.pod_ready, {"app": "mongodb"})
        cluster.wait_pods_ready(BOOKINFO_NAMESPACE, settings.timeouts.pod_ready, {"app": "ratings", "version": "v2"})
        cluster.apply(rules)
        cluster.wait_converged(settings.timeouts.convergence)
        page = requests.get(cluster.ingress_url() + "/productpage", timeout=settings.timeouts.http_request)
        log = cluster.logs(BOOKINFO_NAMESPACE, database["metadata"]["name"], "mongodb")
    finally:
        cluster.delete(rules + objects)
        cluster.wait_pods_gone(BOOKINFO_NAMESPACE, settings.timeouts.pod_ready, {"app": "mongodb"})
        cluster.wait_converged(settings.timeouts.convergence)
    assert page.status_code == 200, page.text[:300]
    return page.text, log


def test_ratings_v2_reads_its_database_through_the_reference_mesh(local_mesh: KubernetesCluster,
                                                                   e2e_settings: Settings) -> None:
    """Istio's sidecars proxy the TCP service mongodb: ratings v2 answers from it, reviews v2 shows black stars."""
    page, log = page_with_ratings_from_the_database(local_mesh, e2e_settings)
    assert BLACK_STARS in page
    assert "GET /test/ratings" in log


@ON_THE_AGENTS_TWINS
def test_ratings_v2_cannot_reach_its_database_through_a_release(
        twin: tuple[KubernetesCluster, Settings, Profile]) -> None:
    """Nginmesh's agent renders no TCP service (profiles.NGINMESH_RENDERING): the sidecar closes ratings v2's
    connection to mongodb, which never sees a query; ratings v2 answers 500 and reviews v2 shows no stars."""
    cluster, settings, profile = twin
    page, log = page_with_ratings_from_the_database(cluster, settings)
    assert profile.bookinfo.ratings_failed(page)
    assert "GET /test/ratings" not in log


def restart_mixer(cluster: KubernetesCluster, settings: Settings) -> None:
    """A new mixer pod, which reads its config store afresh."""
    cluster.delete(cluster.pods("istio-system", {"istio": "mixer"}))
    cluster.wait_pods_ready("istio-system", settings.timeouts.pod_ready, {"istio": "mixer"})


def test_the_metrics_suite_catches_a_mixer_with_eight_size_bounds(healthy: KubernetesCluster,
                                                                 e2e_settings: Settings) -> None:
    """The local mixer used to expose 8 size bounds (1 … 1e7) where Istio has 9: check_buckets names it."""
    configmap = mixer_config_map(get_profile("local"))
    eight = json.loads(configmap["data"][MIXER_CONFIG_KEY])
    eight["sizeBuckets"] = eight["sizeBuckets"][:8]
    broken = {**configmap, "data": {MIXER_CONFIG_KEY: json.dumps(eight)}}
    healthy.apply([broken])
    try:
        restart_mixer(healthy, e2e_settings)
        test = "test_durations_and_sizes_are_reported"
        assert_fails_with(e2e_settings, "has buckets", test, str(SUITES[1]), "-k", test)
    finally:
        healthy.apply([configmap])
        restart_mixer(healthy, e2e_settings)
