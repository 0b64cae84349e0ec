"""A seeded slow proxy makes the proxy-overhead test fail, naming the budget; healthy sidecars pass the same budget."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seeding import REPO, assert_fails_with, assert_passes

from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.cluster.local.cgroup import Cgroup
from pytest_nginmesh.injection_policy import PROXY_CONTAINER
from pytest_nginmesh.settings import Settings

OVERHEAD_SUITE = str(REPO / "suites" / "test_overhead.py")
TEST = "test_the_sidecars_add_no_more_latency_than_the_budget"
# Healthy sidecars add about half a millisecond at the median (benchmarks/conformance.py).
BUDGET = "--nginmesh-overhead-budget=p50=3ms,p99=200ms"


def proxy_freezers(cluster: str) -> list[Path]:
    return list((Cgroup.of_cluster(cluster).path / "pods").glob(f"*/{PROXY_CONTAINER}/cgroup.freeze"))


def freeze(freezers: list[Path], state: str) -> None:
    for freezer in freezers:
        with contextlib.suppress(FileNotFoundError):  # the pod is gone
            freezer.write_text(state)


@contextmanager
def slow_proxies(cluster: str, frozen: float = 0.020, period: float = 0.025) -> Iterator[None]:
    """Every sidecar of the cluster (new ones too) frozen for ``frozen`` of every ``period`` seconds, through its
    container's cgroup: a proxy that is slow from the outside, whatever it runs."""
    stop = threading.Event()

    def cycle() -> None:
        while not stop.is_set():
            freezers = proxy_freezers(cluster)
            freeze(freezers, "1")
            stop.wait(frozen)
            freeze(freezers, "0")
            stop.wait(period - frozen)

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        freeze(proxy_freezers(cluster), "0")


def test_overhead_test_catches_a_slow_sidecar(healthy: Cluster, e2e_settings: Settings) -> None:
    assert_passes(e2e_settings, OVERHEAD_SUITE, BUDGET)
    with slow_proxies(e2e_settings.cluster_name):
        assert_fails_with(e2e_settings, "over budget: p50 overhead", TEST, OVERHEAD_SUITE, BUDGET)
