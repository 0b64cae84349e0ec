"""The manifests the suites deploy, kept as readable YAML in the repository's ``fixtures/`` folder."""

from __future__ import annotations

from pathlib import Path

from ..kube import Obj, read_manifest_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
CONTROL_PLANE = "istio/istio-0.2.12.yaml"
CONTROL_PLANE_PODS = 4  # pilot, mixer, ingress, initializer
BOOKINFO = "bookinfo/bookinfo.yaml"
BOOKINFO_NAMESPACE = "default"
CONTROL_PLANE_NAMESPACE = "istio-system"
BOOKINFO_SERVICES = ("productpage", "details", "reviews", "ratings")
BOOKINFO_DEPLOYMENTS = ("productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3")


def fixture_path(relative: str) -> Path:
    return FIXTURES / relative


def load_fixture(relative: str) -> list[Obj]:
    return read_manifest_file(str(fixture_path(relative)))
