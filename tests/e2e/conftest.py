"""One local cluster with the whole mesh, shared by the end-to-end tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import NEEDS_ROOT, cluster_settings
from seeding import settle

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.node import local_cluster
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.settings import Settings


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
            item.add_marker(NEEDS_ROOT)


@pytest.fixture(scope="session")
def e2e_settings() -> Settings:
    return cluster_settings("nmtest", 0)


@pytest.fixture(scope="session")
def local_mesh(e2e_settings: Settings) -> Iterator[KubernetesCluster]:
    """A local cluster with Istio, Nginmesh and Bookinfo; torn down, and checked clean, at the end."""
    # Recorded as a mesh cluster, so the suites' pytest runs in these tests adopt it rather than refuse it.
    with lifecycle.building(e2e_settings, mesh=True) as started:
        assert started, f"cluster {e2e_settings.cluster_name} was already running: remove it first"
        installing = local_cluster(e2e_settings)
        install_mesh(installing, e2e_settings.timeouts)
        installing.close()
    cluster = local_cluster(e2e_settings)
    try:
        yield cluster
    finally:
        cluster.close()
        lifecycle.down(e2e_settings)
    assert lifecycle.leftovers(e2e_settings) == []


@pytest.fixture
def healthy(local_mesh: KubernetesCluster, e2e_settings: Settings) -> Iterator[KubernetesCluster]:
    """The shared cluster, settled (every pod ready, every proxy converged) before and after the test."""
    settle(local_mesh, e2e_settings)
    yield local_mesh
    settle(local_mesh, e2e_settings)
