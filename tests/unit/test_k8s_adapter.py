"""The Kubernetes adapter against the FAKE API server (tests/kubefake), for what no real part here can show: the
seed's recorded pods of a real cluster, an exec that never ends, a service proxy in front of a recorded mixer
scrape, node helper pods on a multi-node cluster, and Nginmesh agents that publish no config version and pick
a change up only at their next poll. Everything a real API server can show runs against the embedded one
(tests/unit/rest/test_k8s_on_the_embedded_api.py, test_rest_adapter.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from kubefake import RecordedApiServer

from pytest_nginmesh.checks.iptables import CaptureExpectations, check_rules
from pytest_nginmesh.checks.metrics import ISTIO_0_3
from pytest_nginmesh.checks.sidecar import SidecarExpectations, check_pod
from pytest_nginmesh.cluster.k8s import DEBUG_NAMESPACE, KubernetesCluster
from pytest_nginmesh.cluster.kubeapi import KubeApi, choose_kubeconfig
from pytest_nginmesh.errors import ClusterError, NotFoundError, WaitTimeout
from pytest_nginmesh.profiles import get_profile
from pytest_nginmesh.settings import Timeouts
from pytest_nginmesh.telemetry import scrape

DATA = Path(__file__).resolve().parents[1] / "data"
SEED_POD = "reviews-v3-5fff595d9b-zsb2q"
SEED_PROXY_ID = "5d0c189b9dde8e14af4c8065ee5cf007508c0bb2b3c9535598d99dc49f531370"


@pytest.fixture
def probes() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def cluster(server: RecordedApiServer, tmp_path: Path, probes: list[tuple[str, int]]) -> Iterator[KubernetesCluster]:
    api = KubeApi(choose_kubeconfig(server.write_kubeconfig(tmp_path / "kubeconfig"), None), 10.0)

    def unreachable(host: str, port: int) -> bool:  # stands for TCP reachability: no traffic leaves loopback
        probes.append((host, port))
        return False

    adapter = KubernetesCluster(api, "fake", Timeouts(pod_ready=5, api_request=5), "nginmesh/proxy_init:0.2.12",
                                probe=unreachable)
    yield adapter
    adapter.close()


def test_pods_are_the_recorded_objects_and_pass_the_sidecar_checks(cluster: KubernetesCluster) -> None:
    pods = cluster.list_pods("default")
    assert len(pods) == 6
    assert {p["kind"] for p in pods} == {"Pod"}
    seed = next(p for p in pods if p["metadata"]["name"] == SEED_POD)
    assert seed["metadata"]["creationTimestamp"] == "2018-01-02T02:33:36Z", "timestamps stay strings"
    profile = get_profile("nginmesh-0.2.12")
    expect = SidecarExpectations(proxy_image=profile.proxy_image, init_image=profile.init_image)
    assert [f for p in pods for f in check_pod(p, expect)] == []
    assert len(cluster.list_pods()) == 11


def test_exec_returns_output_and_exit_code(cluster: KubernetesCluster, server: RecordedApiServer) -> None:
    server.on_exec("default", SEED_POD, "reviews", lambda argv: (0, b"hello " + argv[-1].encode(), b"warn"))
    result = cluster.exec("default", SEED_POD, ["echo", "world"], container="reviews")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello world", "warn")
    server.on_exec("default", SEED_POD, "istio-proxy", lambda argv: (3, b"", b"no such file\n"))
    failed = cluster.exec("default", SEED_POD, ["cat", "/nope"], container="istio-proxy")
    assert failed.returncode == 3
    with pytest.raises(ClusterError, match="cat /nope exited 3: no such file"):
        failed.check()


def test_exec_that_hangs_is_bounded(cluster: KubernetesCluster, server: RecordedApiServer) -> None:
    release = threading.Event()
    server.on_exec("default", SEED_POD, "reviews", lambda argv: (release.wait(5), (0, b"", b""))[1])
    with pytest.raises(ClusterError, match=r"sleep 60 in default/.* did not finish within 0.5s"):
        cluster.exec("default", SEED_POD, ["sleep", "60"], container="reviews", timeout=0.5)
    release.set()


def test_metrics_are_scraped_through_the_service_proxy(cluster: KubernetesCluster, server: RecordedApiServer) -> None:
    text = (DATA / "metrics" / "istio-0.3-after.txt").read_bytes()
    server.on_service_proxy("istio-system", "istio-mixer:42422",
                            lambda req: (200, {"Content-Type": "text/plain"}, text) if req.path == "/metrics"
                            else (404, {}, b""))
    url = cluster.service_url("istio-system", "istio-mixer", 42422)
    assert url.startswith("http://127.0.0.1:")
    assert scrape(cluster, ISTIO_0_3, 5.0), "the scrape parses into samples"
    assert requests.get(url + "/nope", timeout=5).status_code == 404
    forbidden = url.split("/api/")[0] + "/api/v1/namespaces/default/secrets"
    assert requests.get(forbidden, timeout=5).status_code == 403, "only service proxy paths are forwarded"
    with pytest.raises(NotFoundError, match=r"service istio-mixer has no port 1; its ports"):
        cluster.service_url("istio-system", "istio-mixer", 1)


def test_iptables_are_read_by_a_node_helper_pod(cluster: KubernetesCluster, server: RecordedApiServer) -> None:
    dump = (DATA / "iptables" / "prepare-proxy-plain.nft.txt").read_text()
    seen: list[list[str]] = []
    auth = {"Authorization": f"Bearer {server.token}"}

    def helper_ready() -> None:  # the fake runs no kubelet: mark the helper pod running, as one would
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            listing = requests.get(f"{server.url}/api/v1/namespaces/{DEBUG_NAMESPACE}/pods", headers=auth, timeout=5)
            for pod in listing.json()["items"] if listing.status_code == 200 else []:
                name = pod["metadata"]["name"]
                server.on_exec(DEBUG_NAMESPACE, name, "debug", lambda argv: (seen.append(argv), (0, dump.encode(),
                                                                                                  b""))[1])
                requests.put(f"{server.url}/api/v1/namespaces/{DEBUG_NAMESPACE}/pods/{name}/status",
                             headers=auth, timeout=5,
                             json={**pod, "status": {"phase": "Running",
                                                     "conditions": [{"type": "Ready", "status": "True"}]}})
                return
            time.sleep(0.05)

    marker = threading.Thread(target=helper_ready)
    marker.start()
    text = cluster.pod_iptables("default", SEED_POD)
    marker.join()
    assert text == dump
    assert seen[0][-1] == SEED_PROXY_ID, "the helper looks the pod up by its container's ID"
    assert check_rules(text, CaptureExpectations(15001, 1337, (), "192.168.79.138"), subject="seed")[0] == []
    [helper] = requests.get(f"{server.url}/api/v1/namespaces/{DEBUG_NAMESPACE}/pods", headers=auth,
                            timeout=5).json()["items"]
    assert helper["spec"]["nodeName"] == "kube-2" and helper["spec"]["hostPID"] is True
    assert helper["spec"]["containers"][0]["securityContext"] == {"privileged": True}
    assert cluster.pod_iptables("default", SEED_POD) == dump, "the helper pod is reused"
    cluster.close()
    assert server.stored("v1", "Namespace", DEBUG_NAMESPACE) is None, "close removes what the adapter created"


def agents_picking_up_a_rule(cluster: KubernetesCluster, server: RecordedApiServer,
                             period: float) -> tuple[dict[str, float], Callable[[], dict[str, str]]]:
    """Proxies whose agents poll Pilot every ``period`` seconds, each at its own phase: from now on, each one's
    NGINX config becomes the new rule's only at its next poll. Most poll soon; the last one polls just before
    a whole period has passed. Returns when each picks the rule up, and a function reading every config."""
    applied = time.monotonic()
    pods = [p["metadata"]["name"] for p in cluster.list_pods("default")]
    pick_up = {name: applied + period * 0.05 * (index + 1) for index, name in enumerate(pods[:-1])}
    pick_up[pods[-1]] = applied + period * 0.9

    def config_of(name: str) -> Callable[[list[str]], tuple[int, bytes, bytes]]:
        return lambda argv: (0, b"new 2\n" if time.monotonic() >= pick_up[name] else b"old 1\n", b"")

    for name in pods:
        server.on_exec("default", name, "istio-proxy", config_of(name))

    def configs() -> dict[str, str]:
        return {name: cluster.exec("default", name, ["cat"], container="istio-proxy").stdout.strip()
                for name in pods}

    return pick_up, configs


def test_convergence_spans_the_agents_refresh_period_so_no_proxy_is_stale(cluster: KubernetesCluster,
                                                                          server: RecordedApiServer) -> None:
    period = get_profile("nginmesh-0.2.12").agent_refresh_period
    assert period == 5.0 and cluster.refresh_period == period, "the real agent polls Pilot every 5 s (main.go)"
    pick_up, configs = agents_picking_up_a_rule(cluster, server, period)
    cluster.wait_converged(30)
    assert time.monotonic() >= max(pick_up.values()) + period, "unchanged for a whole period after the last change"
    assert set(configs().values()) == {"new 2"}, "every proxy runs the rule once the wait returns"


def test_a_wait_shorter_than_the_refresh_period_measures_stale_routes(cluster: KubernetesCluster,
                                                                     server: RecordedApiServer) -> None:
    # What the adapter did before: trusting --discoveryRefreshDelay 1s, which the agent ignores.
    cluster.refresh_period = 1.0
    _, configs = agents_picking_up_a_rule(cluster, server, 5.0)
    cluster.wait_converged(30)
    assert "old 1" in configs().values(), "a one-second wait returns before the slow agents polled"


def test_convergence_times_out_while_configs_keep_changing(cluster: KubernetesCluster,
                                                           server: RecordedApiServer) -> None:
    counter = iter(range(10_000))
    for pod in cluster.list_pods("default"):
        server.on_exec("default", pod["metadata"]["name"], "istio-proxy",
                       lambda argv: (0, f"{next(counter)} 99\n".encode(), b""))
    with pytest.raises(WaitTimeout, match="every proxy's configuration to stop changing"):
        cluster.wait_converged(1.5)
