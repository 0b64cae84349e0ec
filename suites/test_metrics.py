"""Metrics emission: every request is reported, with the right labels and values.

The suite's requests come from a client pod of its own (its own namespace and service, shared by the
module's tests, each measuring from a baseline taken once that source's series stand still), and it
asserts only on series of that source: it calls each service it measures (productpage, reviews,
ratings) itself, so other clients of Bookinfo meanwhile, even the productpage calls they cause
downstream, move none of the counters it reads. Deltas between two scrapes are waited for, bounded
and polling, never slept on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pytest_nginmesh.checks.findings import explain
from pytest_nginmesh.checks.metrics import (
    MetricNames,
    Scrape,
    check_buckets,
    check_histogram,
    check_request_counts,
    split_by,
    total,
)
from pytest_nginmesh.cluster.base import Cluster, wait_for
from pytest_nginmesh.mesh.applied import AppliedObjects
from pytest_nginmesh.mesh.bookinfo_instance import BookinfoInstance
from pytest_nginmesh.profiles import Profile
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.telemetry import quiet_baseline, scrape, settled_changes
from pytest_nginmesh.traffic import new_marker, requests_with_python

REQUESTS = 20


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


@pytest.fixture
def names(mesh_profile: Profile) -> MetricNames:
    return mesh_profile.metrics


@dataclass(frozen=True)
class Client:
    """The module's injected client pod (service ``metrics-client``), in a namespace of the module's own."""

    namespace: str
    pod: str

    @property
    def source(self) -> dict[str, str]:
        """The source labels of the series its requests make."""
        return {"source_service": f"metrics-client.{self.namespace}.svc.cluster.local", "source_version": "v1"}


@pytest.fixture(scope="module")
def client(mesh_cluster: Cluster, module_namespace: str, nginmesh_settings: Settings) -> Client:
    """One client pod for the module's tests: each measures the changes of its own requests from a baseline
    taken once the client's series stand still, so the tests share it without seeing each other's requests."""
    mesh_cluster.apply([
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "metrics-client", "namespace": module_namespace},
         "spec": {"ports": [{"name": "http", "port": 9080}], "selector": {"app": "metrics-client"}}},
        {"apiVersion": "extensions/v1beta1", "kind": "Deployment",
         "metadata": {"name": "metrics-client", "namespace": module_namespace},
         "spec": {"replicas": 1, "template": {
             "metadata": {"labels": {"app": "metrics-client", "version": "v1"}},
             "spec": {"containers": [{"name": "client", "image": "istio/examples-bookinfo-productpage-v1:0.2.3",
                                      "ports": [{"containerPort": 9080}]}]}}}},
    ])
    pods = mesh_cluster.wait_pods_ready(module_namespace, nginmesh_settings.timeouts.pod_ready)

    def endpoint_published() -> tuple[bool | None, str]:
        endpoints = mesh_cluster.get("Endpoints", "metrics-client", module_namespace) or {}
        addresses = [a for subset in endpoints.get("subsets") or [] for a in subset.get("addresses") or []]
        return (True, "") if addresses else (None, "no ready address yet")

    # The client's proxy names its own service (the reports' source) from its endpoint: converge after that.
    wait_for("the metrics-client endpoint", endpoint_published, nginmesh_settings.timeouts.pod_ready)
    mesh_cluster.wait_converged(nginmesh_settings.timeouts.convergence)
    return Client(module_namespace, str(pods[0]["metadata"]["name"]))


def baseline(cluster: Cluster, names: MetricNames, client: Client, settings: Settings) -> Scrape:
    return quiet_baseline(cluster, names, client.source, settings.timeouts.convergence)


def send(cluster: Cluster, client: Client, url: str, count: int = REQUESTS) -> list[tuple[int, float]]:
    """``count`` requests from the client pod, through its sidecar."""
    return requests_with_python(cluster, client.namespace, client.pod, "client", url, new_marker(), count)


PRODUCTPAGE_PATH, REVIEWS_PATH, RATINGS_PATH = "/productpage", "/reviews/0", "/ratings/0"


def settle(cluster: Cluster, names: MetricNames, before: Scrape, want: dict[frozenset[tuple[str, str]], int],
           client: Client, settings: Settings) -> Scrape:
    """The changes of the client's series, once they show ``want`` and hold still (bounded)."""
    return settled_changes(cluster, names, before, lambda changes: not check_request_counts(changes, names, want),
                           settings.timeouts.convergence, source=client.source)


@pytest.mark.conformance(name="metrics-counted-once-with-exact-labels", features=["metrics"])
def test_requests_are_counted_once_with_exact_labels(mesh_cluster: Cluster, client: Client, bookinfo: BookinfoInstance,
                                                     names: MetricNames, nginmesh_settings: Settings) -> None:
    before = baseline(mesh_cluster, names, client, nginmesh_settings)
    results = (send(mesh_cluster, client, bookinfo.service_url("productpage", PRODUCTPAGE_PATH))
               + send(mesh_cluster, client, bookinfo.service_url("reviews", REVIEWS_PATH)))
    assert [status for status, _ in results] == [200] * 2 * REQUESTS
    page = labels(**client.source, destination_service=bookinfo.fqdn("productpage"), destination_version="v1",
                  response_code="200")
    reviews = labels(**client.source, destination_service=bookinfo.fqdn("reviews"), response_code="200")
    want = {page: REQUESTS, reviews: REQUESTS}
    changes = settle(mesh_cluster, names, before, want, client, nginmesh_settings)
    findings = check_request_counts(changes, names, want)
    assert not findings, explain(findings)
    versions = split_by(changes, names.request_count, "destination_version",
                        destination_service=bookinfo.fqdn("reviews"))
    assert set(versions) == {"v1", "v2", "v3"}, f"reviews versions reported: {versions}"


@pytest.mark.conformance(name="metrics-all-v1-reports-only-v1", features=["metrics", "routing-version"])
def test_an_all_v1_rule_shows_only_v1_for_reviews(mesh_cluster: Cluster, client: Client, bookinfo: BookinfoInstance,
                                                 mesh_rules: AppliedObjects, names: MetricNames,
                                                 nginmesh_settings: Settings) -> None:
    mesh_rules.apply("routes/route-rule-all-v1.yaml")
    before = baseline(mesh_cluster, names, client, nginmesh_settings)
    send(mesh_cluster, client, bookinfo.service_url("reviews", REVIEWS_PATH))
    reviews = labels(**client.source, destination_service=bookinfo.fqdn("reviews"), response_code="200")
    changes = settle(mesh_cluster, names, before, {reviews: REQUESTS}, client, nginmesh_settings)
    versions = split_by(changes, names.request_count, "destination_version",
                        destination_service=bookinfo.fqdn("reviews"))
    assert versions == {"v1": REQUESTS}, f"reviews versions reported under all-v1: {versions}"


@pytest.mark.conformance(name="metrics-fault-abort-counted-with-status", features=["metrics", "fault-abort"])
def test_a_fault_abort_is_counted_with_its_status(mesh_cluster: Cluster, client: Client, bookinfo: BookinfoInstance,
                                                  mesh_rules: AppliedObjects, names: MetricNames,
                                                  nginmesh_settings: Settings) -> None:
    mesh_rules.apply({
        "apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule", "metadata": {"name": "ratings-abort"},
        "spec": {"destination": {"name": "ratings"}, "precedence": 3, "route": [{"labels": {"version": "v1"}}],
                 "httpFault": {"abort": {"percent": 100, "httpStatus": 503}}}})
    before = baseline(mesh_cluster, names, client, nginmesh_settings)
    send(mesh_cluster, client, bookinfo.service_url("ratings", RATINGS_PATH))
    aborted = labels(**client.source, destination_service=bookinfo.fqdn("ratings"), response_code="503")
    changes = settle(mesh_cluster, names, before, {aborted: REQUESTS}, client, nginmesh_settings)
    findings = check_request_counts(changes, names, {aborted: REQUESTS})
    assert not findings, explain(findings)
    assert total(changes, names.request_count, destination_service=bookinfo.fqdn("ratings"), response_code="200") == 0


@pytest.mark.conformance(name="metrics-durations-and-sizes", features=["metrics"])
def test_durations_and_sizes_are_reported(mesh_cluster: Cluster, client: Client, bookinfo: BookinfoInstance,
                                          names: MetricNames, nginmesh_settings: Settings) -> None:
    before = baseline(mesh_cluster, names, client, nginmesh_settings)
    results = send(mesh_cluster, client, bookinfo.service_url("productpage", PRODUCTPAGE_PATH))
    page = {**client.source, "destination_service": bookinfo.fqdn("productpage"), "response_code": "200"}
    changes = settle(mesh_cluster, names, before, {labels(**page): REQUESTS}, client,
                     nginmesh_settings)
    findings = (check_histogram(changes, names.request_duration, REQUESTS, **page)
                + check_histogram(changes, names.request_size, REQUESTS, **page)
                + check_histogram(changes, names.response_size, REQUESTS, **page))
    assert not findings, explain(findings)
    current = scrape(mesh_cluster, names, nginmesh_settings.timeouts.http_request)
    findings = (check_buckets(current, names.request_duration, names.duration_buckets)
                + check_buckets(current, names.request_size, names.size_buckets)
                + check_buckets(current, names.response_size, names.size_buckets))
    assert not findings, explain(findings)
    reported = total(changes, names.request_duration + "_sum", **page)
    observed = sum(seconds for _, seconds in results)
    assert 0 < reported <= observed, (f"the proxies report {reported:.3f}s in all for requests the client saw "
                                      f"take {observed:.3f}s")
    assert total(changes, names.response_size + "_sum", **page) > REQUESTS * 1000, "productpage pages are KBs"
