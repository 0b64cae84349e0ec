"""Teardown leaves nothing: after down, after a pytest session, after Ctrl-C or SIGTERM, after kill -9 + up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import cluster_settings, settings_env

from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.settings import Settings

WAITING_TEST = """
import pathlib, time

def test_holds_the_cluster(mesh_cluster):
    assert mesh_cluster.ingress_url().startswith("http://")
    pathlib.Path("{ready}").write_text("up")
    time.sleep(300)
"""


def start_pytest(tmp_path: Path, settings: Settings) -> tuple[subprocess.Popen[bytes], Path]:
    """A child pytest whose only test holds a mesh_cluster until it is signalled."""
    ready = tmp_path / "ready"
    (tmp_path / "test_hold.py").write_text(WAITING_TEST.format(ready=ready))
    child = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                             cwd=tmp_path, env={**os.environ, **settings_env(settings)},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not ready.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            output = child.communicate()[0].decode(errors="replace")
            pytest.fail(f"child pytest never brought the cluster up:\n{output[-2000:]}")
        time.sleep(0.2)
    return child, ready


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_signalled_pytest_tears_the_cluster_down(tmp_path: Path, sig: signal.Signals) -> None:
    settings = cluster_settings(f"nmsig{sig.value}", 1 if sig == signal.SIGINT else 2)
    child, _ = start_pytest(tmp_path, settings)
    try:
        assert lifecycle.leftovers(settings), "the cluster should exist while the test holds it"
        child.send_signal(sig)
        child.wait(120)
    finally:
        if child.poll() is None:
            child.kill()
        leftovers = lifecycle.leftovers(settings)
        lifecycle.down(settings)
    assert leftovers == []


def test_kill_9_leftovers_are_cleared_by_the_next_up(tmp_path: Path) -> None:
    settings = cluster_settings("nmkill", 3)
    child, _ = start_pytest(tmp_path, settings)
    child.kill()
    child.wait(30)
    try:
        assert lifecycle.leftovers(settings), "kill -9 leaves the cluster behind"
        # The daemon survives its parent: a new 'up' sees a running cluster and reuses it; a crashed
        # daemon is the harder case, so kill it too before the next 'up'.
        pid = lifecycle.daemon_pid(settings)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        assert lifecycle.up(settings) is True
        started = lifecycle.leftovers(settings)
        assert not any("istio" in item or "default_" in item for item in started), started
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def test_pytest_session_end_leaves_nothing(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = cluster_settings("nmsession", 4)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile("""
        def test_uses_the_cluster(mesh_cluster):
            assert len(mesh_cluster.list_pods("default")) == 6
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert lifecycle.leftovers(settings) == []


def test_keep_cluster_leaves_it_running_for_reuse(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = cluster_settings("nmkeep", 5)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile("""
        def test_uses_the_cluster(mesh_cluster):
            assert mesh_cluster.name == "nmkeep"
    """)
    try:
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nginmesh-keep-cluster").assert_outcomes(passed=1)
        assert lifecycle.is_running(settings)
        started = time.monotonic()
        pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
        assert time.monotonic() - started < 15, "a running cluster of that name is reused, not rebuilt"
        assert lifecycle.is_running(settings), "a reused cluster is not torn down by the run that reused it"
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []
