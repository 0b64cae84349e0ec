"""The local twin of a release on the embedded cluster: its agents poll at the release's period and render as the
release's agent does, its mixer names the metrics as the release's Istio does, the wait for convergence still
closes the stale window, and the route and metrics suites' verdicts on it are the README's table, row by row."""

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
from helpers import cluster_settings, settings_env
from seeding import assert_fails_with
from test_convergence import assert_the_wait_closes_the_stale_window

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.node import LocalNode, local_cluster
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.mesh.manifests import BOOKINFO_NAMESPACE, MIXER_CONFIG_KEY, mixer_config_map
from pytest_nginmesh.profiles import get_profile
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.telemetry import scrape

REPO = Path(__file__).resolve().parents[2]
TWIN = "nginmesh-0.2.12"
SUITES = (REPO / "suites" / "test_routing.py", REPO / "suites" / "test_metrics.py")
SUITE_RUN_TIMEOUT = 1500
# README rows: | `conformance-name` | local | nginmesh-0.2.12 | nginmesh-0.3.0 | nginmesh-0.7.1 | why |
TABLE_HEADER = "| feature (conformance test) | local |"
TABLE_ROW = re.compile(r"^\| `([a-z0-9-]+)` \|(.*)$")
TABLE_COLUMNS = ("local", "nginmesh-0.2.12", "nginmesh-0.3.0", "nginmesh-0.7.1")
TWIN_CELL = re.compile(r"\(twin: (pass|fail|skip)")


@pytest.fixture(scope="module")
def twin() -> Iterator[tuple[KubernetesCluster, Settings]]:
    # Address index 3: the teardown tests use it only for the length of one test.
    settings = cluster_settings("nmtwin", 3).with_overrides({"profile": TWIN})
    with lifecycle.building(settings, mesh=True) as started:
        if started:
            install_mesh(local_cluster(settings), settings.timeouts, profile=settings.mesh_profile)
    try:
        yield local_cluster(settings), settings
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def readme_table() -> dict[str, dict[str, str]]:
    """The README's feature-by-release table: conformance name → profile → what the suite says on that profile's
    twin (pass, fail or skip): the cell's verdict on the real release, unless the cell says "(twin: …)"."""
    text = (REPO / "README.md").read_text()
    table = {}
    for line in text[text.index(TABLE_HEADER):].split("\n\n", 1)[0].splitlines():
        match = TABLE_ROW.match(line)
        if match:
            cells = [cell.strip() for cell in match.group(2).split("|")]
            table[match.group(1)] = {profile: twin_verdict(cells[i]) for i, profile in enumerate(TABLE_COLUMNS)}
    return table


def twin_verdict(cell: str) -> str:
    on_twin = TWIN_CELL.search(cell)
    return on_twin.group(1) if on_twin else cell.replace("*", "").split()[0].lower()


def suite_verdicts(settings: Settings, profile: str, junit: Path) -> dict[str, str]:
    """The route and metrics suites in a child pytest on the running cluster: conformance name → pass, fail or
    skip."""
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *map(str, SUITES),
                    f"--nginmesh-profile={profile}", f"--junitxml={junit}"],
                   cwd=REPO, capture_output=True, text=True, timeout=SUITE_RUN_TIMEOUT,
                   env={**os.environ, **settings_env(settings)})
    names = conformance_names()
    verdicts = {}
    for case in ET.parse(junit).iter("testcase"):
        failure = case.find("failure") if case.find("failure") is not None else case.find("error")
        outcome = "fail" if failure is not None else "skip" if case.find("skipped") is not None else "pass"
        name = names[case.get("name", "").split("[")[0]]
        verdicts[name] = outcome
        if failure is not None:
            print(f"{name}: {failure.get('message', '')[:600]}")  # shown when the comparison fails
    return verdicts


def conformance_names() -> dict[str, str]:
    """Test function → conformance name, from the suites' own markers."""
    source = "\n".join(suite.read_text() for suite in SUITES)
    pairs = re.findall(r'@pytest\.mark\.conformance\(name="([^"]+)".*?\)\ndef (test_\w+)', source)
    return {function: name for name, function in pairs}


def test_the_twins_agents_poll_every_5s_and_render_retries_as_the_release(
        twin: tuple[KubernetesCluster, Settings]) -> None:
    cluster, settings = twin
    (pod,) = cluster.pods(BOOKINFO_NAMESPACE, {"app": "productpage"})
    log = cluster.logs(BOOKINFO_NAMESPACE, pod["metadata"]["name"], "istio-proxy")
    assert f"a twin of {TWIN}: polling Pilot every 5s" in log
    retry = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
             "metadata": {"name": "reviews-retry", "namespace": BOOKINFO_NAMESPACE},
             "spec": {"destination": {"name": "reviews"}, "httpReqRetries": {"simpleRetry": {"attempts": 2}},
                      "httpReqTimeout": {"simpleTimeout": {"timeout": "1s"}}}}
    cluster.apply([retry])
    try:
        cluster.wait_converged(settings.timeouts.convergence)
        config = (LocalNode(settings).pod_directory(BOOKINFO_NAMESPACE, pod["metadata"]["name"]) / "volumes"
                  / "istio-envoy" / "nginx.conf").read_text()
    finally:
        cluster.delete([retry])
        cluster.wait_converged(settings.timeouts.convergence)
    assert "proxy_next_upstream_tries 2;" in config
    assert "proxy_read_timeout" not in config  # the release renders no request timeout


def test_the_twins_mixer_names_the_metrics_as_istio_0_2_12(twin: tuple[KubernetesCluster, Settings]) -> None:
    cluster, settings = twin
    metrics = get_profile(TWIN).metrics
    samples = scrape(cluster, metrics, settings.timeouts.http_request)
    names = {key.name for key in samples}
    assert "request_count" in names and not any(name.startswith("istio_") for name in names), sorted(names)[:10]


def test_the_wait_closes_the_stale_window_on_the_twin(twin: tuple[KubernetesCluster, Settings]) -> None:
    cluster, settings = twin
    assert_the_wait_closes_the_stale_window(cluster, settings.timeouts.convergence)


def test_the_route_and_metrics_suites_on_the_twin_give_the_readme_tables_verdicts(
        twin: tuple[KubernetesCluster, Settings], tmp_path: Path) -> None:
    _, settings = twin
    verdicts = suite_verdicts(settings, TWIN, tmp_path / "junit.xml")
    table = readme_table()
    assert set(verdicts) <= set(table), f"rows missing from the README table: {sorted(set(verdicts) - set(table))}"
    expected = {name: table[name][TWIN] for name in verdicts}
    assert verdicts == expected


def test_the_route_and_metrics_suites_pass_on_local(local_mesh: KubernetesCluster, e2e_settings: Settings,
                                                    tmp_path: Path) -> None:
    verdicts = suite_verdicts(e2e_settings, "local", tmp_path / "junit.xml")
    table = readme_table()
    assert verdicts == {name: table[name]["local"] for name in verdicts}
    assert set(verdicts) == set(table) and set(verdicts.values()) == {"pass"}


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
