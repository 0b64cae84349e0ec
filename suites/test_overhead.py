"""Proxy overhead: the latency the sidecars add to a request, judged against a budget with a stated error rate.

The module deploys, in a namespace of its own, a server (Bookinfo's details) and a client (a Python image)
twice: once injected (through both sidecars, the client's outbound and the server's inbound) and once
opted out (around the mesh). With ``--nginmesh-baseline-proxy-image`` the second pair carries the sidecars
the injector gave the first, with the baseline proxy image instead of the candidate's: the release
qualification question. The same requests go both ways at once, on one fixed schedule (a stall delays what
queues behind it), so that the machine's stalls and drift hit both alike, and checks.overhead bounds the
difference of each quantile.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import pytest

from pytest_nginmesh.checks.overhead import check_overhead
from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.injection_policy import PROXY_CONTAINER
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.traffic import ScheduleMissed, new_marker, requests_with_python

SERVER_IMAGE = "istio/examples-bookinfo-details-v1:0.2.3"
CLIENT_IMAGE = "istio/examples-bookinfo-productpage-v1:0.2.3"
OPT_OUT = {"sidecar.istio.io/inject": "false"}
# One request due every 5 ms each way (the mesh's median is about 1.5 ms here): latency counts from when a
# request was due, so a stalling proxy delays the requests queued behind the stall as well. Both ways run at once
# on one schedule, so a stall of the machine (which delays what queues behind it just the same) hits both alike
# instead of deciding a quantile of one; a batch is what one client sends per exec, started SCHEDULE_LEAD ahead.
INTERVAL = 0.005
BATCH = 250
SCHEDULE_LEAD, MAX_SCHEDULE_LEAD = 0.5, 4.0
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


@dataclass(frozen=True)
class Arm:
    """One way through: a client pod and the URL of its server."""

    client: str
    url: str


@dataclass(frozen=True)
class Arms:
    namespace: str
    mesh: Arm
    baseline: Arm


def deployment(name: str, namespace: str, image: str, container: str, opt_out: bool) -> Obj:
    annotations = dict(OPT_OUT) if opt_out else {}
    return {"apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"replicas": 1, "template": {
                "metadata": {"labels": {"app": name, "version": "v1"}, "annotations": annotations},
                "spec": {"containers": [{"name": container, "image": image, "ports": [{"containerPort": 9080}]}]}}}}


def service(name: str, namespace: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 9080}], "selector": {"app": name}}}


def with_baseline_sidecar(opted_out: Obj, injected_pod: Obj, image: str) -> Obj:
    """``opted_out`` (a Deployment the injector skips) given the sidecar the injector gave ``injected_pod``,
    with the baseline proxy image: whatever the injection mode, the same sidecar but for its image."""
    result = copy.deepcopy(opted_out)
    spec = result["spec"]["template"]["spec"]
    own = {c["name"] for c in spec["containers"]}
    injected = injected_pod["spec"]
    token_volumes = {v["name"] for v in injected.get("volumes") or [] if "-token-" in v["name"]}

    def portable(container: Obj) -> Obj:
        copied = copy.deepcopy(container)
        copied["volumeMounts"] = [m for m in copied.get("volumeMounts") or []
                                  if m["name"] not in token_volumes and m.get("mountPath") != SERVICE_ACCOUNT_MOUNT]
        if copied["name"] == PROXY_CONTAINER:
            copied["image"] = image
        return copied

    spec["containers"] += [portable(c) for c in injected["containers"] if c["name"] not in own]
    spec["initContainers"] = [portable(c) for c in injected.get("initContainers") or []]
    spec["volumes"] = [v for v in injected.get("volumes") or [] if v["name"] not in token_volumes]
    return result


@pytest.fixture(scope="module")
def arms(mesh_cluster: Cluster, module_namespace: str, nginmesh_settings: Settings) -> Arms:
    """The two client/server pairs, ready and converged."""
    ns, timeouts = module_namespace, nginmesh_settings.timeouts
    mesh = [deployment("server-mesh", ns, SERVER_IMAGE, "server", False),
            deployment("client-mesh", ns, CLIENT_IMAGE, "client", False)]
    baseline = [deployment("server-baseline", ns, SERVER_IMAGE, "server", True),
                deployment("client-baseline", ns, CLIENT_IMAGE, "client", True)]
    services = [service("server-mesh", ns), service("server-baseline", ns)]
    if nginmesh_settings.baseline_proxy_image:  # the baseline pair copies the sidecars the injector gave
        mesh_cluster.apply([*services, *mesh])
        by_app = {p["metadata"]["labels"]["app"]: p
                  for p in mesh_cluster.wait_pods_ready(ns, timeouts.pod_ready, minimum=2)}
        baseline = [with_baseline_sidecar(baseline[0], by_app["server-mesh"], nginmesh_settings.baseline_proxy_image),
                    with_baseline_sidecar(baseline[1], by_app["client-mesh"], nginmesh_settings.baseline_proxy_image)]
        mesh_cluster.apply(baseline)
    else:
        mesh_cluster.apply([*services, *mesh, *baseline])
    pods = mesh_cluster.wait_pods_ready(ns, timeouts.pod_ready, minimum=4)
    mesh_cluster.wait_converged(timeouts.convergence)
    client = {p["metadata"]["labels"]["app"]: str(p["metadata"]["name"]) for p in pods}
    return Arms(ns, Arm(client["client-mesh"], f"http://server-mesh.{ns}:9080/details/0"),
                Arm(client["client-baseline"], f"http://server-baseline.{ns}:9080/details/0"))


def latencies(cluster: Cluster, namespace: str, arm: Arm, count: int, start_at: float) -> list[float]:
    results = requests_with_python(cluster, namespace, arm.client, "client", arm.url, new_marker(), count,
                                   interval=INTERVAL, start_at=start_at)
    failed = [status for status, _ in results if status != 200]
    assert not failed, f"{arm.url} from {arm.client} answered {failed[:5]} ({len(failed)} of {count} failed)"
    return [seconds for _, seconds in results]


def side_by_side(cluster: Cluster, arms: Arms, count: int) -> tuple[list[float], list[float]]:
    """``count`` latencies each way, both clients on one schedule, half an interval apart."""
    lead = SCHEDULE_LEAD
    with ThreadPoolExecutor(2) as pool:
        while True:
            start = time.time() + lead
            mesh = pool.submit(latencies, cluster, arms.namespace, arms.mesh, count, start)
            baseline = pool.submit(latencies, cluster, arms.namespace, arms.baseline, count, start + INTERVAL / 2)
            wait((mesh, baseline))
            try:
                return mesh.result(), baseline.result()
            except ScheduleMissed:
                if lead >= MAX_SCHEDULE_LEAD:
                    raise
                lead *= 2


@pytest.mark.conformance(name="proxy-overhead-within-budget", features=["proxy-overhead"])
@pytest.mark.mesh_exclusive
def test_the_sidecars_add_no_more_latency_than_the_budget(mesh_cluster: Cluster, arms: Arms,
                                                          nginmesh_settings: Settings) -> None:
    def sample(count: int) -> tuple[list[float], list[float]]:
        mesh: list[float] = []
        baseline: list[float] = []
        while len(mesh) < count:
            more_mesh, more_baseline = side_by_side(mesh_cluster, arms, min(BATCH, count - len(mesh)))
            mesh += more_mesh
            baseline += more_baseline
        return mesh, baseline

    verdict = check_overhead(sample, nginmesh_settings.budget)
    assert verdict.passed, str(verdict)
