"""Readiness probes as a kubelet runs them, from inside a real network namespace of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from pytest_nginmesh.cluster.local.probes import Probe, ProbeError, Prober, resolve_port, run_handler

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
CONTAINER = {"name": "app", "ports": [{"name": "http", "containerPort": 18080}]}
PORT = 18080


def test_defaults_are_kubernetes_own() -> None:
    probe = Probe.from_spec({"httpGet": {"port": 80}})
    assert (probe.kind, probe.initial_delay, probe.period, probe.timeout) == ("httpGet", 0.0, 10.0, 1.0)
    assert (probe.success_threshold, probe.failure_threshold) == (1, 3)


def test_timing_is_taken_from_the_spec() -> None:
    probe = Probe.from_spec({"tcpSocket": {"port": 1}, "initialDelaySeconds": 2, "periodSeconds": 3,
                             "timeoutSeconds": 4, "successThreshold": 2, "failureThreshold": 5})
    assert (probe.initial_delay, probe.period, probe.timeout, probe.success_threshold, probe.failure_threshold) \
        == (2.0, 3.0, 4.0, 2, 5)


@pytest.mark.parametrize("spec", [{}, {"periodSeconds": 1}, {"httpGet": {"port": 1}, "exec": {"command": ["true"]}}])
def test_a_probe_needs_exactly_one_handler(spec: dict[str, object]) -> None:
    with pytest.raises(ProbeError, match="exactly one"):
        Probe.from_spec(spec)


def test_a_named_port_is_the_containers_port_of_that_name() -> None:
    assert resolve_port("http", CONTAINER) == PORT
    assert resolve_port("8080", CONTAINER) == 8080
    with pytest.raises(ProbeError, match="neither a number"):
        resolve_port("grpc", CONTAINER)


def test_an_exec_probe_succeeds_on_exit_zero_only() -> None:
    def enter(command: object) -> list[str]:  # the command as the container would run it: here, as is
        return list(command)  # type: ignore[call-overload]

    assert run_handler(Probe.from_spec({"exec": {"command": ["true"]}}), CONTAINER, enter)
    assert not run_handler(Probe.from_spec({"exec": {"command": ["false"]}}), CONTAINER, enter)
    assert not run_handler(Probe.from_spec({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 0.2}),
                           CONTAINER, enter)


@pytest.fixture
def netns(make_netns: Callable[[], str]) -> str:
    name = make_netns()
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
    return name


@pytest.fixture
def server(netns: str) -> Iterator[subprocess.Popen[bytes]]:
    """An HTTP server on 127.0.0.1:18080 inside the namespace: / answers 200, /missing 404."""
    process = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", str(PORT),
                                "--bind", "127.0.0.1", "--directory", "/"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while "127.0.0.1:" not in subprocess.run(["ip", "netns", "exec", netns, "ss", "-ltn"], capture_output=True,
                                             text=True).stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    yield process
    process.terminate()
    process.wait(5)


def ready_within(prober: Prober, wanted: bool, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while prober.ready != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return prober.ready == wanted


def start(spec: dict[str, object], netns: str) -> Prober:
    prober = Prober(Probe.from_spec(spec), CONTAINER, f"/run/netns/{netns}", list, "unit")
    prober.start()
    return prober


@needs_root
@pytest.mark.usefixtures("server")
def test_http_and_tcp_probes_reach_the_program_inside_the_pod_namespace(netns: str) -> None:
    # Nothing listens on the host's port: success can only come from inside the namespace.
    with socket.socket() as host_side:
        assert host_side.connect_ex(("127.0.0.1", PORT)) != 0
    probers = [start({"httpGet": {"port": "http", "path": "/"}, "periodSeconds": 0.1}, netns),
               start({"tcpSocket": {"port": PORT}, "periodSeconds": 0.1}, netns)]
    try:
        assert all(ready_within(p, True, 5) for p in probers)
    finally:
        for prober in probers:
            prober.stop()
    assert not any(p.ready for p in probers)


@needs_root
@pytest.mark.usefixtures("server")
def test_an_http_error_status_or_a_closed_port_is_not_ready(netns: str) -> None:
    probers = [start({"httpGet": {"port": PORT, "path": "/missing"}, "periodSeconds": 0.1}, netns),
               start({"tcpSocket": {"port": PORT + 1}, "periodSeconds": 0.1}, netns)]
    try:
        time.sleep(1)
        assert not any(p.ready for p in probers)
    finally:
        for prober in probers:
            prober.stop()


@needs_root
def test_readiness_goes_only_after_failure_threshold_failures(netns: str, server: subprocess.Popen[bytes]) -> None:
    prober = start({"tcpSocket": {"port": PORT}, "periodSeconds": 0.3, "failureThreshold": 3}, netns)
    try:
        assert ready_within(prober, True, 5)
        server.terminate()
        server.wait(5)
        stopped = time.monotonic()
        assert ready_within(prober, False, 5)
        # three failures a period apart: not before two periods have passed
        assert time.monotonic() - stopped >= 0.5
    finally:
        prober.stop()


@needs_root
def test_initial_delay_holds_the_first_probe(netns: str, server: subprocess.Popen[bytes]) -> None:
    began = time.monotonic()
    prober = start({"tcpSocket": {"port": PORT}, "periodSeconds": 0.1, "initialDelaySeconds": 1}, netns)
    try:
        assert ready_within(prober, True, 5)
        assert time.monotonic() - began >= 1
    finally:
        prober.stop()
