"""The mesh snapshot Pilot builds from what it lists and watches (pytest_nginmesh.mesh.snapshot), and the CRDs it
registers (pytest_nginmesh.mesh.istio_crds)."""

from __future__ import annotations

from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.istio_crds import istio_crds
from pytest_nginmesh.mesh.snapshot import WATCHED, MeshCache, build_snapshot


def meta(name: str, namespace: str = "default", **extra: object) -> Obj:
    return {"name": name, "namespace": namespace, **extra}


SERVICE = {"kind": "Service", "metadata": meta("reviews", labels={"app": "reviews"}, resourceVersion="3"),
           "spec": {"clusterIP": "10.2.0.9", "ports": [{"name": "http", "port": 9080}]}}
ENDPOINTS = {"kind": "Endpoints", "metadata": meta("reviews", resourceVersion="7"), "subsets": [{
    "addresses": [{"ip": "10.1.0.6", "targetRef": {"kind": "Pod", "name": "reviews-v2-b", "namespace": "default"}},
                  {"ip": "10.1.0.5", "targetRef": {"kind": "Pod", "name": "reviews-v1-a", "namespace": "default"}}],
    "ports": [{"name": "http", "port": 9080}]}]}
PODS = [{"kind": "Pod", "metadata": meta(f"reviews-{v}-{s}", labels={"app": "reviews", "version": v},
                                         resourceVersion="9"), "status": {"podIP": ip}}
        for v, s, ip in (("v1", "a", "10.1.0.5"), ("v2", "b", "10.1.0.6"))]
RULE = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
        "metadata": meta("reviews-default", resourceVersion="11", uid="u1", creationTimestamp="t"),
        "spec": {"destination": {"name": "reviews"}, "route": [{"labels": {"version": "v1"}}]}}


def test_services_carry_their_endpoints_pods_and_labels() -> None:
    snapshot = build_snapshot([SERVICE], [ENDPOINTS], PODS, [RULE], [])
    (service,) = snapshot["services"]
    assert service == {"name": "reviews", "namespace": "default", "clusterIP": "10.2.0.9",
                       "ports": [{"name": "http", "port": 9080, "protocol": "TCP"}],
                       "instances": [
                           {"ip": "10.1.0.5", "pod": "reviews-v1-a", "labels": {"app": "reviews", "version": "v1"},
                            "ports": {"http": 9080}},
                           {"ip": "10.1.0.6", "pod": "reviews-v2-b", "labels": {"app": "reviews", "version": "v2"},
                            "ports": {"http": 9080}}]}
    assert snapshot["routeRules"] == [{"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
                                       "metadata": {"name": "reviews-default", "namespace": "default"},
                                       "spec": RULE["spec"]}]


def test_the_version_follows_the_configuration_only() -> None:
    version = build_snapshot([SERVICE], [ENDPOINTS], PODS, [RULE], [])["version"]
    bumped = {**RULE, "metadata": {**RULE["metadata"], "resourceVersion": "12"}}
    assert build_snapshot([SERVICE], [ENDPOINTS], list(reversed(PODS)), [bumped], [])["version"] == version
    changed = {**RULE, "spec": {**RULE["spec"], "route": [{"labels": {"version": "v2"}}]}}
    assert build_snapshot([SERVICE], [ENDPOINTS], PODS, [changed], [])["version"] != version
    assert build_snapshot([SERVICE], [], PODS, [RULE], [])["version"] != version


def test_a_service_without_endpoints_has_no_instances() -> None:
    (service,) = build_snapshot([SERVICE], [], [], [], [])["services"]
    assert service["instances"] == []


def test_the_cache_is_ready_once_every_kind_is_listed_and_follows_watch_events() -> None:
    cache = MeshCache()
    for kind in WATCHED:
        assert not cache.ready
        cache.replace(kind, [], "20")
    assert cache.ready and cache.observed == 20
    cache.apply("RouteRule", "ADDED", RULE)  # an older resourceVersion leaves observed where it is
    assert cache.observed == 20
    cache.apply("RouteRule", "MODIFIED", {**RULE, "metadata": {**RULE["metadata"], "resourceVersion": "25"}})
    assert cache.observed == 25 and len(cache.snapshot()["routeRules"]) == 1
    cache.apply("RouteRule", "DELETED", {**RULE, "metadata": {**RULE["metadata"], "resourceVersion": "26"}})
    assert cache.observed == 26 and cache.snapshot()["routeRules"] == []


def test_pilot_registers_the_four_config_kinds_of_istio_0_2_12() -> None:
    names = {c["metadata"]["name"]: c["spec"]["names"] for c in istio_crds()}
    assert names == {
        "routerules.config.istio.io": {"kind": "RouteRule", "singular": "routerule", "plural": "routerules"},
        "ingressrules.config.istio.io": {"kind": "IngressRule", "singular": "ingressrule", "plural": "ingressrules"},
        "egressrules.config.istio.io": {"kind": "EgressRule", "singular": "egressrule", "plural": "egressrules"},
        "destinationpolicies.config.istio.io": {"kind": "DestinationPolicy", "singular": "destinationpolicy",
                                                "plural": "destinationpolicies"}}
    assert {(c["spec"]["group"], c["spec"]["version"], c["spec"]["scope"]) for c in istio_crds()} == {
        ("config.istio.io", "v1alpha2", "Namespaced")}
