"""A stopped agent goes at once, even while a request to Pilot hangs: the kubelet's grace period is not waited out
(the release's agent, a Go program, dies on SIGTERM)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers import loopback_server


class HangingPilot(BaseHTTPRequestHandler):
    """A Pilot that has no agent config and answers no poll for the mesh snapshot."""

    polled = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/v1/mesh"):
            HangingPilot.polled.set()
            time.sleep(30)
        self.send_error(404)


@pytest.fixture
def pilot() -> Iterator[str]:
    with loopback_server(HangingPilot) as port:
        yield f"127.0.0.1:{port}"


def test_sigterm_ends_the_agent_while_its_poll_of_pilot_hangs(pilot: str, tmp_path: Path) -> None:
    HangingPilot.polled.clear()
    agent = subprocess.Popen([sys.executable, "-m", "pytest_nginmesh.workloads.agent", "proxy", "sidecar",
                              "--configPath", str(tmp_path), "--discoveryAddress", pilot,
                              "--discoveryRefreshDelay", "1s", "--statsdUdpAddress", "127.0.0.1:9"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert HangingPilot.polled.wait(20), "the agent never polled Pilot"
        time.sleep(0.2)
        stopped = time.monotonic()
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        assert time.monotonic() - stopped < 1.5, "the agent waited for its poll to end"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        assert agent.stdout is not None
        agent.stdout.close()
