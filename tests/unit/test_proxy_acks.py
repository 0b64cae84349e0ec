"""Who may ack a proxy config, and for how long the ack counts (pytest_nginmesh.mesh.proxy_status.AckBook, and
Pilot's ack endpoint on a real loopback socket): only from the pod's own address, only while the same proxy
container runs, so a crashed proxy's ack never vouches for its successor."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_nginmesh.cluster.local.rest.pki import Credentials
from pytest_nginmesh.errors import ForbiddenError
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.proxy_status import ACK_PATH, AckBook, ProxyAck, proxy_identity
from pytest_nginmesh.mesh.snapshot import WATCHED
from pytest_nginmesh.workloads._common import NO_PROXY_OPENER, HttpServer
from pytest_nginmesh.workloads._kubeclient import KubeClient
from pytest_nginmesh.workloads.pilot import Pilot, discovery_handler

POD_IP = "10.1.0.7"


def pod(ip: str = POD_IP, container_id: str = "nginmesh-local://100", restarts: int = 0, running: bool = True,
        image: str = "docker.io/nginmesh/proxy_debug:0.2.12") -> Obj:
    state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if running else {"waiting": {"reason": "CrashLoop"}}
    return {"metadata": {"name": "ratings-v1-x", "namespace": "default"},
            "spec": {"containers": [{"name": "ratings", "image": "istio/examples-bookinfo-ratings-v1"},
                                    {"name": "istio-proxy", "image": image}]},
            "status": {"podIP": ip, "containerStatuses": [
                {"name": "ratings", "containerID": "nginmesh-local://99", "restartCount": 0, "state": state},
                {"name": "istio-proxy", "containerID": container_id if running else "", "restartCount": restarts,
                 "state": state}]}}


ACK = ProxyAck("default", "ratings-v1-x", "v2")
KEY = ("default", "ratings-v1-x")


def test_the_proxy_identity_is_its_running_containers_id_and_restart_count() -> None:
    assert proxy_identity(pod()) == ("nginmesh-local://100", 0)
    assert proxy_identity(pod(running=False)) is None
    assert proxy_identity(pod(image="docker.io/library/busybox")) is None  # no proxy in the pod


def test_an_ack_from_the_pods_own_address_counts_while_its_proxy_runs() -> None:
    book = AckBook()
    assert book.record(ACK, pod(), POD_IP)
    assert not book.record(ACK, pod(), POD_IP)  # the same ack again changes nothing
    assert book.live({KEY: pod()}) == [ACK]


@pytest.mark.parametrize("peer", ["10.1.0.8", "10.12.0.1", "127.0.0.1"])
def test_an_ack_from_another_address_is_refused(peer: str) -> None:
    book = AckBook()
    with pytest.raises(ForbiddenError, match=f"config ack for pod default/ratings-v1-x refused: it must come from "
                                             f"that pod's own proxy \\(it came from {peer}\\)"):
        book.record(ACK, pod(), peer)
    assert book.live({KEY: pod()}) == []


def test_an_ack_for_a_pod_pilot_does_not_know_or_without_a_running_proxy_is_refused() -> None:
    book = AckBook()
    with pytest.raises(ForbiddenError, match="must come from that pod's own proxy"):
        book.record(ACK, None, POD_IP)
    with pytest.raises(ForbiddenError, match="no proxy container runs there"):
        book.record(ACK, pod(running=False), POD_IP)


@pytest.mark.parametrize("successor", [pod(container_id="nginmesh-local://200", restarts=1), pod(running=False),
                                       pod(container_id="nginmesh-local://200")])
def test_a_crashed_proxys_ack_never_counts_for_its_successor(successor: Obj) -> None:
    book = AckBook()
    book.record(ACK, pod(), POD_IP)
    assert book.live({KEY: successor}) == []
    assert book.live({KEY: pod()}) == []  # dropped for good: only a new ack counts again


def test_an_ack_taken_before_pilot_saw_the_restart_is_replaced_by_the_next_one() -> None:
    """The restarted agent acks while Pilot still sees the old container; once Pilot sees the new one that ack
    is dropped, and the agent's ack at its next poll counts."""
    book = AckBook()
    book.record(ACK, pod(), POD_IP)
    restarted = pod(container_id="nginmesh-local://200", restarts=1)
    assert book.live({KEY: restarted}) == []
    assert book.record(ACK, restarted, POD_IP)
    assert book.live({KEY: restarted}) == [ACK]


def test_the_ack_of_a_deleted_pod_is_dropped() -> None:
    book = AckBook()
    book.record(ACK, pod(), POD_IP)
    assert book.live({}) == []


@pytest.fixture
def pilot_url(tmp_path: Path) -> Iterator[tuple[Pilot, str]]:
    """Pilot's discovery server on loopback over caches filled by hand (no publisher and no watches run, so its
    API client, pointed at a closed port, is never used)."""
    stop = threading.Event()
    ca = Credentials(tmp_path / "pki").create("unit", ["127.0.0.1"]).ca_cert
    pilot = Pilot(KubeClient("127.0.0.1", 1, "unused", ca), stop)
    server = HttpServer(("127.0.0.1", 0), discovery_handler(pilot))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield pilot, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def post(url: str, body: object) -> tuple[int, Obj]:
    request = urllib.request.Request(url + ACK_PATH, data=json.dumps(body).encode(), method="POST")
    try:
        with NO_PROXY_OPENER.open(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_pilot_takes_an_ack_only_from_the_address_of_the_pod_it_names(pilot_url: tuple[Pilot, str]) -> None:
    pilot, url = pilot_url
    ack = {"namespace": "default", "pod": "ratings-v1-x", "version": "v2"}
    pilot.cache.replace("Pod", [pod(ip="10.1.0.7")], "5")
    status, body = post(url, ack)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert "it came from 127.0.0.1" in body["message"]
    pilot.cache.replace("Pod", [pod(ip="127.0.0.1")], "6")  # now the pod's address is the caller's
    assert post(url, ack) == (200, {"status": "accepted"})
    assert pilot.dirty.is_set()
    assert pilot.acks.live({KEY: pod(ip="127.0.0.1")}) == [ACK]


@pytest.mark.parametrize("body", ["not json", {"pod": "x"}, [1, 2]])
def test_a_malformed_ack_is_a_400(pilot_url: tuple[Pilot, str], body: object) -> None:
    _, url = pilot_url
    request = urllib.request.Request(url + ACK_PATH, data=(body if isinstance(body, str) else json.dumps(body))
                                     .encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        NO_PROXY_OPENER.open(request, timeout=5)
    assert refused.value.code == 400


def test_pilot_serves_no_mesh_before_it_has_listed_every_kind(pilot_url: tuple[Pilot, str]) -> None:
    _, url = pilot_url
    with pytest.raises(urllib.error.HTTPError) as refused:
        NO_PROXY_OPENER.open(url + "/v1/mesh", timeout=5)
    assert refused.value.code == 503


@pytest.mark.parametrize("versioned_push", [False, True])
def test_a_release_twins_pilot_takes_no_acks_and_publishes_no_status(pilot_url: tuple[Pilot, str],
                                                                     versioned_push: bool) -> None:
    """As the release's Pilot (Envoy v1 REST): it serves the mesh, and nothing says which config a proxy runs;
    the local reference's takes the ack and publishes it."""
    pilot, url = pilot_url
    pilot.versioned_push = versioned_push
    pilot.cache.replace("Pod", [pod(ip="127.0.0.1")], "6")
    ack = {"namespace": "default", "pod": "ratings-v1-x", "version": "v2"}
    assert post(url, ack)[0] == (200 if versioned_push else 404)
    writes: list[Obj] = []
    pilot._write_status = writes.append  # type: ignore[method-assign]  # records instead of calling the API
    for kind in WATCHED:
        pilot.cache.replace(kind, [pod(ip="127.0.0.1")] if kind == "Pod" else [], "7")
    pilot.dirty.set()
    publisher = threading.Thread(target=pilot.publish, daemon=True)
    publisher.start()
    with pilot.changed:
        assert pilot.changed.wait_for(lambda: pilot.current is not None, timeout=5)
    pilot.stop.set()
    publisher.join(5)
    assert [w["data"].get("default.ratings-v1-x") for w in writes] == (['{"version": "v2"}'] if versioned_push else [])
