"""Conformance features: what a test exercises, and what each mesh profile claims to support."""

from __future__ import annotations

from .errors import UsageError

FEATURES: dict[str, str] = {
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
}

ALL = frozenset(FEATURES)


def parse_feature_list(text: str, where: str) -> frozenset[str]:
    """A comma-separated list of feature names; unknown names are refused with the list of known ones."""
    names = frozenset(name.strip() for name in text.split(",") if name.strip())
    unknown = sorted(names - ALL)
    if unknown:
        raise UsageError(f"{where}: unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(ALL))}")
    return names
