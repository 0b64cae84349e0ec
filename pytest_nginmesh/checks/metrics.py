"""Request metrics: parse Prometheus exposition text (prometheus_client's parser) and compare two scrapes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ManifestError
from ..observe import reports_findings
from .findings import Finding


class MetricsParseError(ManifestError):
    """The text is not Prometheus exposition format."""


class SampleKey(NamedTuple):
    name: str
    labels: frozenset[tuple[str, str]]


Scrape = dict[SampleKey, float]


# Istio 0.2/0.3 Mixer config (istio/istio install/kubernetes/istio.yaml, the prometheus handler):
# request_duration explicit bounds 0.005 ... 10 s; request_size and response_size exponentialBuckets
# numFiniteBuckets 8, scale 1, growthFactor 10, which Mixer's Prometheus adapter exposes as 9 bounds, 1 ... 1e8.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = tuple(10.0 ** i for i in range(9))


@dataclass(frozen=True)
class MetricNames:
    """Where a mesh's request metrics are and what they are called (Istio 0.2 and 0.3 differ)."""

    request_count: str
    request_duration: str
    request_size: str
    response_size: str
    namespace: str = "istio-system"
    service: str = "istio-mixer"
    port: int = 42422
    path: str = "/metrics"
    duration_buckets: tuple[float, ...] = DURATION_BUCKETS
    size_buckets: tuple[float, ...] = SIZE_BUCKETS
    response_code_default: str = "200"  # the metric instance's "response.code | 200"


# Istio 0.2.12: no istio_ prefix yet (istio/istio install/kubernetes/istio.yaml at 0.2.12, prometheus handler
# metrics request_count, request_duration, request_size, response_size); buckets and the response_code
# default as above.
ISTIO_0_2 = MetricNames("request_count", "request_duration", "request_size", "response_size",
                        duration_buckets=DURATION_BUCKETS, size_buckets=SIZE_BUCKETS, response_code_default="200")
ISTIO_0_3 = MetricNames("istio_request_count", "istio_request_duration", "istio_request_size", "istio_response_size")


def parse_scrape(text: str) -> Scrape:
    """Every sample of an exposition, keyed by its name and labels."""
    from prometheus_client.parser import text_string_to_metric_families  # ~30 ms: only when parsing

    samples: Scrape = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                # The parser names counter samples NAME_total whether or not the text did; key them by NAME.
                name = family.name if family.type == "counter" and sample.name == family.name + "_total" \
                    else sample.name
                samples[SampleKey(name, frozenset(sample.labels.items()))] = float(sample.value)
    except (ValueError, TypeError, IndexError) as e:
        raise MetricsParseError(f"not Prometheus exposition text ({e}); give what /metrics serves") from e
    return samples


def delta(before: Scrape, after: Scrape) -> Scrape:
    """What grew between two scrapes, per sample; a sample that went down was reset and counts from zero."""
    changes: Scrape = {}
    for key, value in after.items():
        previous = before.get(key, 0.0)
        grown = value - previous if value >= previous else value
        if grown:
            changes[key] = grown
    return changes


def from_source(samples: Scrape, source: Mapping[str, str]) -> Scrape:
    """Only the samples whose labels include ``source`` (e.g. a test client's source_service and
    source_version): what one client sent, whatever other clients of the mesh send meanwhile."""
    wanted = set(source.items())
    return {key: value for key, value in samples.items() if wanted <= key.labels}


def total(changes: Scrape, name: str, **labels: str) -> float:
    """The sum of the changes of every sample of this name whose labels include the given ones."""
    wanted = set(labels.items())
    return sum(v for k, v in changes.items() if k.name == name and wanted <= k.labels)


def split_by(changes: Scrape, name: str, label: str, **labels: str) -> dict[str, float]:
    """The changes of a metric grouped by one label's values, among samples with the given labels."""
    wanted = set(labels.items())
    grouped: dict[str, float] = {}
    for key, value in changes.items():
        if key.name == name and wanted <= key.labels:
            value_of = dict(key.labels).get(label, "")
            grouped[value_of] = grouped.get(value_of, 0.0) + value
    return grouped


@reports_findings
def check_request_counts(changes: Scrape, names: MetricNames, expected: Mapping[frozenset[tuple[str, str]], int],
                         subject: str = "metrics") -> list[Finding]:
    """Findings where the request counter did not grow by exactly the expected amount for a label set."""
    findings = []
    for labels, count in expected.items():
        grown = total(changes, names.request_count, **dict(labels))
        if grown != count:
            seen = {",".join(f"{k}={v}" for k, v in sorted(key.labels)): v
                    for key, v in changes.items() if key.name == names.request_count}
            findings.append(Finding(
                "metrics.request-count", subject,
                f"{names.request_count}{{{', '.join(f'{k}={v!r}' for k, v in sorted(labels))}}} grew by "
                f"{grown:g}, not {count}", {"expected": count, "grown": grown, "all_changes": seen}))
    return findings


@reports_findings
def check_buckets(scrape: Scrape, name: str, bounds: tuple[float, ...], subject: str = "metrics") -> list[Finding]:
    """A finding per label set of histogram ``name`` whose finite bucket bounds are not ``bounds``."""
    found: dict[frozenset[tuple[str, str]], set[float]] = {}
    for key in scrape:
        if key.name == name + "_bucket":
            labels = dict(key.labels)
            bound = float(labels.pop("le", "nan"))
            found.setdefault(frozenset(labels.items()), set()).add(bound)
    return [Finding("metrics.histogram-buckets", subject,
                    f"{name} has buckets {sorted(b for b in seen if b != float('inf'))}, not {list(bounds)}",
                    {"labels": dict(labels)})
            for labels, seen in found.items() if sorted(b for b in seen if b != float("inf")) != sorted(bounds)]


@reports_findings
def check_histogram(changes: Scrape, name: str, count: int, subject: str = "metrics", **labels: str) -> list[Finding]:
    """The histogram's _count grew by ``count`` and its _sum grew (a histogram that did not move is a finding)."""
    findings = []
    grown = total(changes, name + "_count", **labels)
    if grown != count:
        findings.append(Finding("metrics.histogram-count", subject, f"{name}_count grew by {grown:g}, not {count}",
                                {"labels": labels, "grown": grown, "expected": count}))
    if total(changes, name + "_sum", **labels) <= 0:
        findings.append(Finding("metrics.histogram-sum", subject, f"{name}_sum did not grow",
                                {"labels": labels}))
    return findings
