"""The read-only preflight against the FAKE API server: version and injection API checked, nothing written."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubefake import RecordedApiServer
from kubefake.discovery import DATA_DIR, Discovery

from pytest_nginmesh.cluster.kubeapi import KubeApi, choose_kubeconfig
from pytest_nginmesh.cluster.provider import preflight
from pytest_nginmesh.errors import ClusterError, UsageError
from pytest_nginmesh.profiles import get_profile

ALPHA = "admissionregistration.k8s.io/v1alpha1"


def connect(server: RecordedApiServer, tmp_path: Path) -> KubeApi:
    return KubeApi(choose_kubeconfig(server.write_kubeconfig(tmp_path / "kubeconfig", "ci"), None), 5.0)


def discovery_without_initializers(tmp_path: Path) -> Discovery:
    """What a server started without --runtime-config=admissionregistration.k8s.io/v1alpha1 serves (every
    server from Kubernetes 1.14 on, which removed the API)."""
    data = tmp_path / "discovery"
    shutil.copytree(DATA_DIR, data)
    (data / f"apis-{ALPHA.replace('/', '-')}.json").unlink()
    apis = json.loads((data / "apis.json").read_text())
    for group in apis["groups"]:
        group["versions"] = [v for v in group["versions"] if v["groupVersion"] != ALPHA]
    (data / "apis.json").write_text(json.dumps(apis))
    return Discovery(data)


@pytest.fixture
def without_initializers(tmp_path: Path) -> Iterator[RecordedApiServer]:
    """A 1.13 server started without the Initializer API."""
    with RecordedApiServer(discovery=discovery_without_initializers(tmp_path)) as server:
        yield server


def test_a_fitting_server_passes_and_nothing_is_written(tmp_path: Path) -> None:
    with RecordedApiServer() as server:
        facts = preflight(connect(server, tmp_path), get_profile("nginmesh-0.2.12"))
        assert (str(facts.version), facts.git_version) == ("1.13.12", "v1.13.12")
        assert preflight(connect(server, tmp_path), get_profile("nginmesh-0.7.1")).version.minor == 13
        assert {r.method for r in server.requests} == {"GET"}


def test_a_server_too_new_for_initializers(tmp_path: Path) -> None:
    with (RecordedApiServer(version={"major": "1", "minor": "16", "gitVersion": "v1.16.15"},
                            discovery=discovery_without_initializers(tmp_path)) as server,
          pytest.raises(UsageError, match=r"context 'ci' runs Kubernetes v1.16.15: profile nginmesh-0.2.12 "
                                          r"injects through the Initializers admission plugin")):
        preflight(connect(server, tmp_path), get_profile("nginmesh-0.2.12"))


def test_a_server_without_the_initializer_api(tmp_path: Path, without_initializers: RecordedApiServer) -> None:
    api = connect(without_initializers, tmp_path)
    assert not api.serves("admissionregistration.k8s.io/v1alpha1", "InitializerConfiguration")
    with pytest.raises(UsageError, match=r"does not serve admissionregistration\.k8s\.io/v1alpha1 "
                                         r"InitializerConfigurations, which profile nginmesh-0\.3\.0 needs"):
        preflight(api, get_profile("nginmesh-0.3.0"))


def test_something_that_is_not_kubernetes(tmp_path: Path) -> None:
    with (RecordedApiServer(version={"major": "", "minor": "", "gitVersion": "v0.0.0-master+$Format:%h$"}) as server,
          pytest.raises(ClusterError, match=r"not a Kubernetes 1\.x version")):
        preflight(connect(server, tmp_path), get_profile("nginmesh-0.2.12"))
