"""The conformance suites pass on a cluster in use: other clients keep calling Bookinfo through the ingress
while the metrics and routing suites run, and neither suite counts their requests as its own. And a suite
interrupted while it sets up leaves nothing of its own behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import requests
from helpers import ctrl_c_as_at_a_terminal, settings_env
from seeding import REPO

from pytest_nginmesh.cluster.base import wait_for
from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.settings import Settings

SUITES = [str(REPO / "suites" / "test_metrics.py"), str(REPO / "suites" / "test_routing.py")]
PAUSE = 0.05  # between background requests: up to ~20 a second from one client
MAX_REQUESTS = 30_000  # a bound even if the suites hang until their own timeout
SUITES_TIMEOUT = 1500


class BackgroundTraffic(threading.Thread):
    """One client calling /productpage through the ingress until stopped, as another user of the mesh."""

    def __init__(self, url: str) -> None:
        super().__init__(name="background-traffic", daemon=True)
        self.url = url
        self.stopping = threading.Event()
        self.outcomes: Counter[str] = Counter()

    def run(self) -> None:
        with requests.Session() as session:
            for _ in range(MAX_REQUESTS):
                if self.stopping.is_set():
                    return
                try:
                    self.outcomes[str(session.get(self.url, timeout=10).status_code)] += 1
                except requests.RequestException as e:
                    self.outcomes[type(e).__name__] += 1
                time.sleep(PAUSE)

    def stop(self) -> Counter[str]:
        self.stopping.set()
        self.join(15)
        return self.outcomes


def test_metrics_and_routing_suites_pass_with_background_traffic(healthy: KubernetesCluster,
                                                                 e2e_settings: Settings) -> None:
    traffic = BackgroundTraffic(healthy.ingress_url() + "/productpage")
    traffic.start()
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider", *SUITES],
                                cwd=REPO, capture_output=True, text=True, timeout=SUITES_TIMEOUT,
                                env={**os.environ, **settings_env(e2e_settings)})
    finally:
        outcomes = traffic.stop()
    seconds = time.monotonic() - started
    output = (result.stdout + result.stderr)[-10000:]
    assert result.returncode == 0, f"with background traffic {dict(outcomes)}:\n{output}"
    # The traffic really ran beside the suites: most of the time, not a few requests at the start.
    assert outcomes["200"] >= seconds, f"background traffic too thin over {seconds:.0f}s: {dict(outcomes)}"


def test_an_interrupted_httpbin_setup_leaves_no_httpbin(healthy: KubernetesCluster, e2e_settings: Settings) -> None:
    assert not healthy.pods("default", {"app": "httpbin"})
    child = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", SUITES[1], "-k",
                              "test_retries"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, **settings_env(e2e_settings)}, preexec_fn=ctrl_c_as_at_a_terminal)
    try:
        wait_for("the suite to create httpbin", lambda: (True, "") if healthy.pods("default", {"app": "httpbin"})
                 else (None, "no httpbin pod yet"), e2e_settings.timeouts.pod_ready, interval=0.05)
        child.send_signal(signal.SIGINT)  # as Ctrl-C, while the fixture waits for httpbin to be ready
        output, _ = child.communicate(timeout=e2e_settings.timeouts.pod_ready + 60)
    finally:
        if child.poll() is None:
            child.kill()
    assert "KeyboardInterrupt" in output, output[-2000:]
    assert healthy.get("Deployment", "httpbin") is None, output[-2000:]
    assert healthy.get("Service", "httpbin") is None, output[-2000:]
    assert not healthy.pods("default", {"app": "httpbin"})
