"""Readiness probes as a kubelet runs them (httpGet, tcpSocket, exec), from inside the pod's network namespace.

A prober is a thread that enters the pod's network namespace (setns, which Python 3.11 lacks, through libc),
so its sockets are the pod's: it connects to 127.0.0.1, which the sidecar's capture rules never redirect.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...kube import Obj

CLONE_NEWNET = 0x40000000
# Kubernetes core/v1 Probe defaults (kubernetes/website docs/user-guide/kubectl/v1.5/documents/
# _generated_probe_v1_definition.md): period 10 s, timeout 1 s, success threshold 1, failure threshold 3.
DEFAULT_PERIOD, DEFAULT_TIMEOUT, DEFAULT_SUCCESS, DEFAULT_FAILURE = 10.0, 1.0, 1, 3
LOOPBACK = "127.0.0.1"

_libc = ctypes.CDLL(None, use_errno=True)


class ProbeError(Exception):
    """A probe spec the kubelet cannot run (no handler, an unknown named port)."""


@dataclass(frozen=True)
class Probe:
    """One readinessProbe: its handler (the ``httpGet``/``tcpSocket``/``exec`` dict) and its timing."""

    kind: str
    handler: Obj
    initial_delay: float
    period: float
    timeout: float
    success_threshold: int
    failure_threshold: int

    @classmethod
    def from_spec(cls, spec: Obj) -> Probe:
        kinds = [k for k in ("httpGet", "tcpSocket", "exec") if k in spec]
        if len(kinds) != 1:
            raise ProbeError("a readinessProbe needs exactly one of httpGet, tcpSocket, exec")
        return cls(kinds[0], dict(spec[kinds[0]] or {}),
                   float(spec.get("initialDelaySeconds") or 0),
                   float(spec.get("periodSeconds") or DEFAULT_PERIOD),
                   float(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT),
                   int(spec.get("successThreshold") or DEFAULT_SUCCESS),
                   int(spec.get("failureThreshold") or DEFAULT_FAILURE))


def resolve_port(port: object, container: Obj) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ProbeError(f"probe port {port!r} is neither a number nor the name of a port of the container")


def enter_netns(netns_path: str) -> None:
    """Move the calling thread (only it) into the network namespace at ``netns_path``."""
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns_path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def run_handler(probe: Probe, container: Obj, enter: Callable[[Sequence[str]], list[str]]) -> bool:
    """One probe attempt, from the calling thread's network namespace; True on success."""
    handler = probe.handler
    try:
        if probe.kind == "tcpSocket":
            port = resolve_port(handler.get("port"), container)
            with socket.create_connection((handler.get("host") or LOOPBACK, port), timeout=probe.timeout):
                return True
        if probe.kind == "httpGet":
            return _http_get(probe, container)
        command = [str(c) for c in handler.get("command") or []]
        if not command:
            return False
        result = subprocess.run(enter(command), capture_output=True, timeout=probe.timeout,
                                stdin=subprocess.DEVNULL)
        return result.returncode == 0
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired, ProbeError):
        return False


def _http_get(probe: Probe, container: Obj) -> bool:
    handler = probe.handler
    host = handler.get("host") or LOOPBACK
    port = resolve_port(handler.get("port"), container)
    connection: http.client.HTTPConnection
    if str(handler.get("scheme", "HTTP")).upper() == "HTTPS":  # a kubelet does not verify a probe's certificate
        connection = http.client.HTTPSConnection(host, port, timeout=probe.timeout,
                                                 context=ssl._create_unverified_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=probe.timeout)
    headers = {"User-Agent": "kube-probe/nginmesh-local"}
    headers.update({h["name"]: str(h.get("value", "")) for h in handler.get("httpHeaders") or []})
    try:
        connection.request("GET", str(handler.get("path") or "/"), headers=headers)
        status = connection.getresponse().status
    finally:
        connection.close()
    # kubernetes pkg/probe/http/http.go: success is a status in [200, 400)
    return 200 <= status < 400


class Prober(threading.Thread):
    """Probes one container instance until stopped; ``ready`` follows the thresholds as a kubelet's does."""

    def __init__(self, probe: Probe, container: Obj, netns_path: str,
                 enter: Callable[[Sequence[str]], list[str]], name: str) -> None:
        super().__init__(name=f"probe-{name}", daemon=True)
        self.probe = probe
        self.container = container
        self.netns_path = netns_path
        self.enter = enter
        self.ready = False
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            enter_netns(self.netns_path)
        except OSError:
            return  # the pod's namespace is gone: the pod is going, and never ready again
        if self.stopped.wait(self.probe.initial_delay):
            return
        successes = failures = 0
        while not self.stopped.is_set():
            if run_handler(self.probe, self.container, self.enter):
                successes, failures = successes + 1, 0
                if successes >= self.probe.success_threshold:
                    self.ready = True
            else:
                successes, failures = 0, failures + 1
                if failures >= self.probe.failure_threshold:
                    self.ready = False
            self.stopped.wait(self.probe.period)

    def stop(self) -> None:
        self.stopped.set()
        self.ready = False
        with contextlib.suppress(RuntimeError):
            self.join(self.probe.timeout + 1)
