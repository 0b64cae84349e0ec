"""Conformance features: what a test exercises (its ``conformance`` marker), and what a profile may claim."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

FEATURES: dict[str, str] = {
    "ingress": "the application answers through the mesh ingress, every version taking part",
    "sidecar-injection": "every workload pod gets a conformant sidecar; opted-out pods none",
    "traffic-capture": "the pod's inbound and outbound TCP goes through the proxy; the proxy's own does not",
    "routing-default": "without rules, requests spread over every version of a service",
    "routing-version": "a rule sends every request to one version",
    "routing-weighted": "a rule splits requests between versions by weight",
    "routing-header-match": "rules match request headers and cookies (exact, prefix, regex)",
    "routing-precedence": "of several matching rules, the one with the highest precedence wins",
    "routing-redirect": "a rule answers with a redirect",
    "routing-rewrite": "a rule rewrites the URI before forwarding",
    "routing-retries": "a rule retries failed requests",
    "routing-request-timeout": "a rule bounds the time of a request",
    "fault-abort": "a rule aborts a share of requests with a status",
    "fault-delay": "a rule delays a share of requests",
    "metrics": "every request is reported: counters, durations and sizes with the right labels",
    "proxy-overhead": "the sidecars add no more latency (p50, p99) than the budget to a request",
}

ALL = frozenset(FEATURES)


def parse_feature_list(text: str, where: str) -> frozenset[str]:
    """A comma-separated list of feature names; unknown names are refused with the list of known ones."""
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - ALL)
    if unknown:
        raise UsageError(f"{where}: unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL))}")
    return names


MARKER = "conformance"
MARKER_HELP = ("conformance(name, features): a conformance test's stable short name and the features it "
               "tests; tests of a feature not claimed or exempted are skipped with the reason")
SHORT_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class ConformanceTest:
    """What a conformance test declares: a stable short name (for reports across releases) and its features."""

    name: str
    features: tuple[str, ...]


def declared(args: tuple[Any, ...], kwargs: Mapping[str, Any], where: str) -> ConformanceTest:
    """The ``@pytest.mark.conformance(name=…, features=[…])`` of a test, refusing anything malformed."""
    usage = f'{where}: give @pytest.mark.{MARKER}(name="short-name", features=["feature", …])'
    if args or set(kwargs) - {"name", "features"}:
        raise UsageError(f"{usage} (keywords only)")
    name, features = kwargs.get("name"), kwargs.get("features")
    if not isinstance(name, str) or not SHORT_NAME.match(name):
        raise UsageError(f"{usage}: name {name!r} is not lowercase words joined by '-'")
    if isinstance(features, str) or not isinstance(features, (list, tuple)) or not features:
        raise UsageError(f"{usage}: features must be a non-empty list")
    unknown = sorted(set(features) - ALL)
    if unknown:
        raise UsageError(f"{where}: unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL))}")
    return ConformanceTest(name, tuple(features))
