"""The Kubernetes adapter of the cluster port (cluster/k8s.py, the official client) against the embedded API:
the path users run on kind, met by a real API server rather than a double."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from embedded_api import EmbeddedApi, start_container, stop_container

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.errors import ClusterError
from pytest_nginmesh.kube import read_manifest_file

BOOKINFO = Path(__file__).resolve().parents[3] / "fixtures" / "bookinfo" / "bookinfo.yaml"


def test_apply_get_list_and_delete_through_the_official_client(adapter: KubernetesCluster) -> None:
    objects = read_manifest_file(str(BOOKINFO))
    adapter.apply(objects)
    deployments = adapter.list_objects("Deployment", "default")
    assert sorted(d["metadata"]["name"] for d in deployments) == [
        "details-v1", "productpage-v1", "ratings-v1", "reviews-v1", "reviews-v2", "reviews-v3"]
    reviews = adapter.get("Service", "reviews")
    assert reviews is not None and reviews["spec"]["ports"][0]["port"] == 9080
    adapter.apply(objects)  # a second apply replaces, keeping what the server owns
    adapter.delete(objects)
    assert adapter.list_objects("Deployment", "default") == []
    assert adapter.get("Service", "reviews") is None


def test_a_refused_object_is_a_cluster_error_with_the_servers_message(adapter: KubernetesCluster) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}}
    with pytest.raises(ClusterError, match='Pod "p" is invalid'):
        adapter.apply([pod])


@pytest.mark.skipif(os.geteuid() != 0, reason="a container needs a network namespace and a cgroup: needs root")
def test_exec_and_logs_through_the_official_client(adapter: KubernetesCluster, embedded_api: EmbeddedApi) -> None:
    process, cgroup = start_container(embedded_api, "shell", [{"name": "app", "image": "a"}])
    try:
        logs = embedded_api.server.kubelet.pods_dir / "default_shell"
        logs.mkdir(parents=True)
        (logs / "app.log").write_text("ready\n")
        result = adapter.exec("default", "shell", ["sh", "-c", "echo out; echo err >&2; exit 4"], "app")
        assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
        assert adapter.logs("default", "shell", "app") == "ready\n"
    finally:
        stop_container(embedded_api, "shell", process, cgroup)
