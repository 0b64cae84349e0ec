"""An embedded API server in-process (no root, no network namespaces): the REST layer over a real store and
the real admission, on a loopback HTTPS port with a kubeconfig for real clients."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded_api import EmbeddedApi

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.kubeapi import KubeApi, choose_kubeconfig
from pytest_nginmesh.cluster.local.apiserver import ApiServer
from pytest_nginmesh.cluster.local.rest.server import RestApi, serve
from pytest_nginmesh.settings import Timeouts


@pytest.fixture
def embedded_api(tmp_path: Path) -> Iterator[EmbeddedApi]:
    """An API server over a fresh store, listening on a free loopback port; stopped at teardown."""
    # A name of its own: parallel workers' pods would otherwise meet in one network namespace and cgroup.
    name = f"unit-{secrets.token_hex(3)}"
    info = {"name": name, "addresses": {"pod_cidr": "10.1.0.0/16", "service_cidr": "10.2.0.0/16",
                                          "link_cidr": "10.3.0.0/30"}, "grace": 1}
    server = ApiServer(tmp_path, info)
    credentials = server.credentials  # made for 127.0.0.1 and the link address
    stopping = threading.Event()
    rest = RestApi(server, credentials, stopping)
    threads: list[threading.Thread] = []

    def start(target: object) -> None:
        thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
        thread.start()
        threads.append(thread)

    servers = serve(rest, credentials, ["127.0.0.1"], 0, start)
    url = f"https://127.0.0.1:{servers[0].server_address[1]}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(credentials.kubeconfig(name, url))
    try:
        yield EmbeddedApi(server, rest, credentials, url, kubeconfig)
    finally:
        stopping.set()
        with server.store.changed:
            server.store.changed.notify_all()
        for https in servers:
            https.shutdown()
            https.server_close()


@pytest.fixture
def adapter(embedded_api: EmbeddedApi) -> Iterator[KubernetesCluster]:
    """The Kubernetes adapter on the embedded API, through its kubeconfig, as every cluster is driven."""
    api = KubeApi(choose_kubeconfig(embedded_api.kubeconfig, None), 10.0)
    cluster = KubernetesCluster(api, embedded_api.server.info["name"], Timeouts(pod_ready=5, api_request=5),
                                "nginmesh/proxy_init:0.2.12")
    yield cluster
    cluster.close()
