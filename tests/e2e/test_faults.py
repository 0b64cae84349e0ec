"""Faults heal and cannot be faked: a proxy whose NGINX master dies ends at once and its pod heals; the
proxy's readiness is what its agent serves; convergence waits for proxies that are not ready; config acks
count only from the pod they concern."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from proxies import Proxy, alive, find_proxy, kill_master, orphans
from seeding import pod_of

from pytest_nginmesh.cluster.base import wait_for
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.cluster.local.network import pod_netns
from pytest_nginmesh.cluster.published_versions import (
    MESH_VERSION_KEY,
    PROXY_STATUS_CONFIGMAP,
    PROXY_STATUS_NAMESPACE,
    PROXY_STATUS_OBSERVED,
)
from pytest_nginmesh.errors import WaitTimeout
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.injection import PROXY_CONTAINER
from pytest_nginmesh.mesh.manifests import load_fixture
from pytest_nginmesh.settings import Settings

HEAL_WITHIN = 30.0  # issue 10: kill -9 of a proxy's NGINX master heals within 30 s
AGENT_EXIT_WITHIN = 0.5

# Posts one ack to Pilot from wherever it runs; prints the HTTP status and the message.
FORGE = """
import json, sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST")
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    response = opener.open(request, timeout=10)
    print(response.status, json.load(response).get("message", ""))
except urllib.error.HTTPError as e:
    print(e.code, json.load(e).get("message", ""))
"""


def proxy_of(cluster: KubernetesCluster, app: str, timeout: float) -> tuple[str, Proxy]:
    pod = pod_of(cluster, app)

    def probe() -> tuple[Proxy | None, str]:
        return find_proxy(cluster.name, "default", pod), f"no NGINX master under an agent in {pod}"

    return pod, wait_for(f"the proxy of {pod}", probe, timeout)


def post_ack(cluster: KubernetesCluster, argv_prefix: list[str], ack: object) -> tuple[int, str]:
    """One ack posted to Pilot's pod from a process started with ``argv_prefix`` (e.g. in another pod)."""
    pilot = next(p for p in cluster.list_pods("istio-system") if p["metadata"]["labels"].get("istio") == "pilot")
    url = f"http://{pilot['status']['podIP']}:15003/v1/ack"
    result = subprocess.run([*argv_prefix, sys.executable, "-I", "-c", FORGE, url, json.dumps(ack)],
                            capture_output=True, text=True, timeout=30, check=True)
    status, _, message = result.stdout.strip().partition(" ")
    return int(status), message


def proxy_ready(cluster: KubernetesCluster, pod: str) -> bool:
    current = cluster.get("Pod", pod, "default") or {}
    statuses = (current.get("status") or {}).get("containerStatuses") or []
    return any(s["name"] == PROXY_CONTAINER and s.get("ready") for s in statuses)


@contextmanager
def healed_or_replaced(cluster: KubernetesCluster, settings: Settings, app: str) -> Iterator[None]:
    """After a fault test, the app's pod is healthy again: if it did not heal, it is replaced, so one
    failure does not spoil the tests after it."""
    try:
        yield
    finally:
        try:
            cluster.wait_pods_ready("default", HEAL_WITHIN, {"app": app})
            cluster.wait_converged(HEAL_WITHIN)
        except WaitTimeout:
            cluster.delete([{"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": pod_of(cluster, app), "namespace": "default"}}])
            cluster.wait_pods_ready("default", settings.timeouts.pod_ready, {"app": app}, minimum=1)


def published_status(cluster: KubernetesCluster) -> Obj:
    """The proxy status Pilot publishes (the mesh version it serves, the version each live proxy acked), read
    through the adapter as any API client reads it."""
    configmap = cluster.get("ConfigMap", PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE)
    assert configmap is not None, f"Pilot has not published {PROXY_STATUS_NAMESPACE}/{PROXY_STATUS_CONFIGMAP}"
    return configmap


def acked_versions(cluster: KubernetesCluster) -> dict[str, str]:
    """``<namespace>.<pod>`` → the version that proxy acked, as published."""
    data = published_status(cluster).get("data") or {}
    return {key: json.loads(value)["version"] for key, value in data.items() if key != MESH_VERSION_KEY}


def test_the_agent_serves_readiness_on_pilot_agents_status_port(healthy: KubernetesCluster,
                                                                 e2e_settings: Settings) -> None:
    pod = pod_of(healthy, "ratings")
    result = healthy.exec("default", pod, ["curl", "-s", "-w", " %{http_code}", "-m", "5",
                                           "http://127.0.0.1:15020/healthz/ready"], container=PROXY_CONTAINER)
    body, _, status = result.check().stdout.rpartition(" ")
    assert status == "200", result.stdout
    assert published_status(healthy)["data"][MESH_VERSION_KEY] in body


def test_a_killed_nginx_master_ends_its_agent_at_once(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    with healed_or_replaced(healthy, e2e_settings, "ratings"):
        _, proxy = proxy_of(healthy, "ratings", e2e_settings.timeouts.pod_ready)
        killed = kill_master(proxy)
        while alive(proxy.agent) and time.monotonic() - killed < 5:
            time.sleep(0.01)
        took = time.monotonic() - killed
        assert not alive(proxy.agent), "the agent outlived its NGINX master by 5 s"
        assert took <= AGENT_EXIT_WITHIN, f"the agent took {took:.2f}s to notice its NGINX master died"


def test_convergence_counts_a_proxy_that_is_not_ready_as_not_converged(healthy: KubernetesCluster,
                                                                       e2e_settings: Settings) -> None:
    with healed_or_replaced(healthy, e2e_settings, "details"):
        pod, proxy = proxy_of(healthy, "details", e2e_settings.timeouts.pod_ready)
        kill_master(proxy)
        wait_for("the agent to end", lambda: (None, "running") if alive(proxy.agent) else (True, ""), 5.0, 0.02)
        # The kubelet sees the exit at its next look at the container (every 0.2 s), as a kubelet's PLEG does, and
        # restarts it 0.5 s later at the earliest (its first back-off): the wait below ends before that.
        wait_for("the kubelet to see the proxy exit", lambda: (True, "") if not proxy_ready(healthy, pod) else
                 (None, "still ready"), 5.0, interval=0.02)
        with pytest.raises(WaitTimeout) as waited:
            healthy.wait_converged(0.4)
        assert f"{PROXY_CONTAINER} of {pod}" in str(waited.value)


def test_kill_9_of_a_sidecars_nginx_master_heals(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    """The pod is not ready until its proxy runs again, then serves within 30 s, with no worker of the killed
    master left holding the proxy port (the kubelet kills the container's whole cgroup)."""
    with healed_or_replaced(healthy, e2e_settings, "productpage"):
        pod, proxy = proxy_of(healthy, "productpage", e2e_settings.timeouts.pod_ready)
        killed = kill_master(proxy)
        wait_for("the proxy to be seen not ready", lambda: (True, "") if not proxy_ready(healthy, pod) else
                 (None, "still ready"), 5.0, interval=0.05)

        def healed() -> tuple[Proxy | None, str]:
            current = find_proxy(healthy.name, "default", pod)
            left = orphans(proxy.netns, current)
            if current is None or current.agent == proxy.agent or not proxy_ready(healthy, pod):
                return None, f"no new proxy running and ready yet; holding port 15001 outside it: {left}"
            return (None, f"processes {left} of the killed proxy still hold port 15001") if left else (current, "")

        healed_proxy = wait_for("the proxy to heal", healed, HEAL_WITHIN, interval=0.1)
        healthy.wait_converged(HEAL_WITHIN - (time.monotonic() - killed))
        response = requests.get(healthy.ingress_url() + "/productpage", timeout=10)
        assert response.status_code == 200
        assert time.monotonic() - killed <= HEAL_WITHIN
        assert orphans(healed_proxy.netns, healed_proxy) == []


def test_acks_from_another_pod_or_the_host_are_refused_and_do_not_fool_convergence(
        healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    victim, proxy = proxy_of(healthy, "ratings", e2e_settings.timeouts.pod_ready)
    other = pod_of(healthy, "details")
    before = acked_versions(healthy)
    rules = load_fixture("routes/route-rule-all-v1.yaml")
    os.kill(proxy.agent, signal.SIGSTOP)  # the victim's proxy cannot take the new config
    try:
        healthy.apply(rules)
        written = max(int(healthy.get(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace", "default"))
                          ["metadata"]["resourceVersion"]) for r in rules)

        def served() -> tuple[str | None, str]:
            configmap = published_status(healthy)
            observed = int(configmap["metadata"]["annotations"][PROXY_STATUS_OBSERVED])
            version = configmap["data"][MESH_VERSION_KEY]
            return (version, "") if observed >= written else (None, f"observed {observed}, the rules {written}")

        target = wait_for("Pilot to serve the new rules", served, e2e_settings.timeouts.convergence, interval=0.05)
        forged = {"pod": victim, "namespace": "default", "version": target}
        # Another pod's proxy (uid 1337 passes its pod's capture rules), and the host.
        from_other_pod = ["ip", "netns", "exec", pod_netns(healthy.name, "default", other),
                          "setpriv", "--reuid=1337", "--regid=1337", "--clear-groups"]
        for origin in ([], from_other_pod):
            status, message = post_ack(healthy, origin, forged)
            assert status == 403, (origin, message)
            assert message.startswith(f"config ack for pod default/{victim} refused: it must come from that pod's "
                                      "own proxy"), message
        assert acked_versions(healthy)[f"default.{victim}"] == before[f"default.{victim}"]
        with pytest.raises(WaitTimeout) as waited:
            healthy.wait_converged(3.0)
        assert f"{PROXY_CONTAINER} of {victim}" in str(waited.value)
    finally:
        os.kill(proxy.agent, signal.SIGCONT)
        healthy.delete(rules)
    healthy.wait_converged(e2e_settings.timeouts.convergence)


def test_no_clusters_state_shows_in_a_container(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    """Containers reach the cluster through the Kubernetes API only: no cluster's state directory (its kubeconfig,
    keys, objects), this one's included, is there to read."""
    assert (e2e_settings.state_dir / "kubeconfig").exists()
    result = healthy.exec("default", pod_of(healthy, "ratings"), ["ls", "-A", str(e2e_settings.state_root)],
                          container=PROXY_CONTAINER)
    assert result.check().stdout == ""
