"""The manifests the suites deploy: readable YAML in the repository's ``fixtures/`` folder, shipped in the
package as ``pytest_nginmesh.fixtures`` and always read as package data (so they work from a wheel)."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

from ..errors import ManifestError
from ..kube import Obj, parse_manifests

FIXTURES: Traversable = files("pytest_nginmesh.fixtures")
CONTROL_PLANE = "istio/istio-0.2.12.yaml"
CONTROL_PLANE_PODS = 4  # pilot, mixer, ingress, initializer
BOOKINFO = "bookinfo/bookinfo.yaml"
BOOKINFO_NAMESPACE = "default"
CONTROL_PLANE_NAMESPACE = "istio-system"
BOOKINFO_SERVICES = ("productpage", "details", "reviews", "ratings")
BOOKINFO_DEPLOYMENTS = ("productpage-v1", "details-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3")


def fixture_text(relative: str) -> str:
    """A fixture file's text; ``relative`` is a path below ``fixtures/`` such as ``routes/route-rule-all-v1.yaml``."""
    try:
        return FIXTURES.joinpath(*relative.split("/")).read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ManifestError(f"fixtures/{relative}: no such fixture; give a path below fixtures/ "
                            "such as routes/route-rule-all-v1.yaml, or an absolute path") from e


def load_fixture(relative: str) -> list[Obj]:
    return parse_manifests(fixture_text(relative), f"fixtures/{relative}")
