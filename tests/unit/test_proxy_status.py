"""The ConfigMap nginmesh-proxy-status as Pilot renders it (pytest_nginmesh.mesh.proxy_status)."""

from __future__ import annotations

import json

from pytest_nginmesh.mesh.proxy_status import ProxyAck, status_config_map, status_data
from pytest_nginmesh.validation import object_errors


def test_the_data_names_the_mesh_version_and_each_proxys_ack() -> None:
    data = status_data("abc123", [ProxyAck("default", "ratings-v1-x", "abc123"),
                                  ProxyAck("istio-system", "istio-ingress-y", "old999")])
    assert data == {"mesh-version": "abc123",
                    "default.ratings-v1-x": '{"version": "abc123"}',
                    "istio-system.istio-ingress-y": '{"version": "old999"}'}


def test_a_rejection_is_shown_with_its_first_line_only() -> None:
    ack = ProxyAck("default", "details-v1-z", "old999", "abc123",
                   "nginx: [emerg] unknown directive\nnginx: test failed")
    entry = json.loads(status_data("abc123", [ack])["default.details-v1-z"])
    assert entry == {"version": "old999", "rejectedVersion": "abc123", "rejection": "nginx: [emerg] unknown directive"}


def test_no_live_proxy_leaves_only_the_mesh_version() -> None:
    assert status_data("abc123", []) == {"mesh-version": "abc123"}


def test_the_config_map_is_a_valid_object_in_istio_system() -> None:
    configmap = status_config_map(status_data("abc123", [ProxyAck("default", "a.b-c", "abc123")]))
    assert (configmap["kind"], configmap["metadata"]) == (
        "ConfigMap", {"name": "nginmesh-proxy-status", "namespace": "istio-system"})
    assert object_errors(configmap, frozenset()) == []
