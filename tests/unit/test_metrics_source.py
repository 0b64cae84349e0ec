"""Counting only one client's traffic (checks.metrics.from_source): what other clients of the mesh send at the
same time never reaches a check."""

from __future__ import annotations

from pytest_nginmesh.checks.metrics import ISTIO_0_3, SampleKey, check_request_counts, from_source

MINE = {"source_service": "metrics-client.t1.svc.cluster.local", "source_version": "v1"}
PAGE = "productpage.default.svc.cluster.local"


def key(**labels: str) -> SampleKey:
    return SampleKey("istio_request_count", frozenset(labels.items()))


def test_only_the_samples_of_the_source_are_kept() -> None:
    changes = {
        key(**MINE, destination_service=PAGE, response_code="200"): 20.0,
        key(source_service="istio-ingress.istio-system.svc.cluster.local", source_version="unknown",
            destination_service=PAGE, response_code="200"): 137.0,
        key(source_service=MINE["source_service"], source_version="v2", destination_service=PAGE,
            response_code="200"): 3.0,
    }
    assert from_source(changes, MINE) == {key(**MINE, destination_service=PAGE, response_code="200"): 20.0}


def test_a_count_check_on_one_source_passes_whatever_others_add() -> None:
    page = frozenset({**MINE, "destination_service": PAGE, "response_code": "200"}.items())
    busy = {key(**MINE, destination_service=PAGE, response_code="200"): 20.0,
            key(source_service="unknown", source_version="unknown", destination_service=PAGE,
                response_code="200"): 250.0}
    assert check_request_counts(from_source(busy, MINE), ISTIO_0_3, {page: 20}) == []
    # Without the source, the other client's requests would count: the check must name its source.
    everyone = frozenset({"destination_service": PAGE, "response_code": "200"}.items())
    assert check_request_counts(from_source(busy, MINE), ISTIO_0_3, {everyone: 20}) == []
    assert check_request_counts(busy, ISTIO_0_3, {everyone: 20}) != []
