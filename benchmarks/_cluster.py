"""The local cluster a benchmark measures: the one the PYTEST_NGINMESH_* environment names, reused when it
runs (and left running), otherwise started with the mesh and torn down at the end."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.node import local_cluster
from pytest_nginmesh.mesh.install import install_mesh
from pytest_nginmesh.settings import Settings, settings_from_env


@contextmanager
def mesh_cluster() -> Iterator[KubernetesCluster]:
    settings = Settings(**settings_from_env())  # type: ignore[arg-type]
    started = not lifecycle.is_running(settings)
    try:
        if started:
            lifecycle.up(settings)
            install_mesh(local_cluster(settings), settings.timeouts)
        yield local_cluster(settings)
    finally:
        if started:
            lifecycle.down(settings)
