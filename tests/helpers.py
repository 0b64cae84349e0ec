"""Helpers of the project's own tests: settings for throwaway clusters that never clash."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import ipaddress
import json
import os
import shutil
import signal
import ssl
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_nginmesh.cluster.local import system
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.workers import alive

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nginx") is None or shutil.which("iptables") is None,
    reason="the local cluster needs root, nginx and iptables (run scripts/setup-host)",
)


# Test clusters take their address ranges from this pool, a /18 block each (pod /20, service /20, link /30),
# skipping any block a host route overlaps (another cluster's, whoever runs it) or another live test process
# has reserved; the default cluster (10.212-10.214) and the benchmarks' (10.220-10.228) lie outside it.
RANGE_POOL = ipaddress.IPv4Network("10.128.0.0/10")
BLOCK_PREFIX = 18
RESERVATIONS = Path(tempfile.gettempdir()) / "pytest-nginmesh-test-ranges.json"
# Several checkouts may run their tests on one host at once: each may pick a slot (0-15) of its own; and each
# pytest-xdist worker of a run adds its own number. Either keeps their cluster names apart.
TEST_SLOT = int(os.environ.get("NGINMESH_TEST_SLOT", "0"))
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
CLUSTER_NAME_SUFFIX = (str(TEST_SLOT) if TEST_SLOT else "") + (f"w{XDIST_WORKER}" if XDIST_WORKER else "")
_chosen: dict[tuple[str, int], Settings] = {}


def routed_networks() -> list[ipaddress.IPv4Network]:
    networks = []
    for route in system.host_routes():
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("type") in ("local", "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            networks.append(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    return networks


def reserve_free_block() -> ipaddress.IPv4Network:
    """A block of the pool that no host route touches and no other live test process holds, reserved for this
    process (a reservation ends with its process)."""
    with open(RESERVATIONS.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            held = json.loads(RESERVATIONS.read_text()) if RESERVATIONS.exists() else {}
        except ValueError:
            held = {}
        held = {block: pid for block, pid in held.items() if alive(pid)}
        routed = routed_networks()
        for block in RANGE_POOL.subnets(new_prefix=BLOCK_PREFIX):
            if str(block) not in held and not any(block.overlaps(network) for network in routed):
                held[str(block)] = os.getpid()
                RESERVATIONS.write_text(json.dumps(held))
                return block
    raise RuntimeError(f"no free /{BLOCK_PREFIX} left in {RANGE_POOL} for a test cluster")


def cluster_settings(name: str, index: int) -> Settings:
    """A cluster of its own name and of address ranges free on this host (the same ones for the same name and
    index within a process), so test clusters never clash with each other or with anyone else's."""
    key = (name, index)
    if key not in _chosen:
        block = reserve_free_block()
        pod, service, link, _ = block.subnets(new_prefix=20)
        _chosen[key] = Settings(cluster_name=name + CLUSTER_NAME_SUFFIX, pod_cidr=str(pod),
                                service_cidr=str(service), link_cidr=str(next(link.subnets(new_prefix=30))))
    return _chosen[key]


def settings_env(settings: Settings) -> dict[str, str]:
    """The PYTEST_NGINMESH_* variables that select these settings in a child process."""
    return {
        "PYTEST_NGINMESH_CLUSTER_NAME": settings.cluster_name,
        "PYTEST_NGINMESH_POD_CIDR": settings.pod_cidr,
        "PYTEST_NGINMESH_SERVICE_CIDR": settings.service_cidr,
        "PYTEST_NGINMESH_LINK_CIDR": settings.link_cidr,
    }


def ctrl_c_as_at_a_terminal() -> None:
    """``preexec_fn`` of a child that a test interrupts with SIGINT: a runner started in the background (``&``
    in a non-interactive shell, as CI may be) ignores SIGINT, its children inherit that, and Python then
    installs no KeyboardInterrupt handler. The child gets Ctrl-C's usual meaning back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def raw_post(connection: ssl.SSLSocket, path: str, token: str, body: bytes, length: int | str | None = None
             ) -> tuple[int, Any]:
    """A raw POST on a TLS connection to a Kubernetes API (closed afterwards): the body exactly as given,
    Content-Length as given (its real length by default); the status and the JSON answer."""
    try:
        head = (f"POST {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n")
        connection.sendall(head.encode() + body)
        response = http.client.HTTPResponse(connection)  # type: ignore[arg-type]
        response.begin()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """``handler`` served from threads on a free port of 127.0.0.1 (yielded); shut down afterwards."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
