"""Scraping a mesh's request metrics through the cluster port, and waiting (bounded) until they settle."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import requests

from . import observe
from .checks.metrics import MetricNames, Scrape, delta, from_source, parse_scrape
from .cluster.base import Cluster
from .errors import ClusterError


def scrape(cluster: Cluster, names: MetricNames, timeout: float) -> Scrape:
    url = cluster.service_url(names.namespace, names.service, names.port) + names.path
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as e:
        raise ClusterError(f"metrics endpoint {url} unreachable: {e.__class__.__name__}: is the mixer up?") from e
    if response.status_code != 200:
        raise ClusterError(f"metrics endpoint {url} answered HTTP {response.status_code}")
    return parse_scrape(response.text)


def quiet_baseline(cluster: Cluster, names: MetricNames, source: Mapping[str, str], timeout: float,
                   interval: float = 0.2) -> Scrape:
    """A scrape taken once ``source``'s series stand still (two scrapes ``interval`` apart agree), so that
    late reports of requests sent earlier by the same source never count as this measurement's (bounded:
    at the deadline, the last scrape)."""
    deadline = time.monotonic() + timeout
    previous = scrape(cluster, names, timeout)
    while True:
        time.sleep(interval)
        current = scrape(cluster, names, timeout)
        if from_source(current, source) == from_source(previous, source) or time.monotonic() >= deadline:
            return current
        previous = current


def settled_changes(cluster: Cluster, names: MetricNames, baseline: Scrape, done: Callable[[Scrape], bool],
                    timeout: float, interval: float = 0.2, source: Mapping[str, str] | None = None) -> Scrape:
    """Poll until the changes since ``baseline`` satisfy ``done`` and stay the same for one more scrape;
    at the deadline, return the last changes so the caller's assertion says what is missing. With
    ``source``, only that source's series count: other traffic never holds the wait back."""
    deadline = time.monotonic() + timeout
    previous: Scrape | None = None
    while True:
        changes = delta(baseline, scrape(cluster, names, timeout))
        if source is not None:
            changes = from_source(changes, source)
        if (done(changes) and changes == previous) or time.monotonic() >= deadline:
            observe.attach("metric deltas", describe_changes(changes))
            return changes
        previous = changes
        time.sleep(interval)


def describe_changes(changes: Scrape) -> str:
    """One line per changed series, Prometheus style: ``name{label="value",…} +delta``."""
    return "\n".join(f"{key.name}{{{','.join(f'{k}={v!r}' for k, v in sorted(key.labels))}}} {value:+g}"
                     for key, value in sorted(changes.items(), key=lambda item: (item[0].name, sorted(item[0].labels))))
