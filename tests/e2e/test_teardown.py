"""Teardown leaves nothing and touches nothing else; an interrupted `up` leaves no cluster, or one the next rebuilds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from helpers import cluster_settings, ctrl_c_as_at_a_terminal, settings_env

from pytest_nginmesh.cluster.local import lifecycle, network, system
from pytest_nginmesh.cluster.local.cgroup import Cgroup
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
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=ctrl_c_as_at_a_terminal)
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
    # The cluster's start shows its progress in the terminal, as `nginmesh local up` does.
    result.stdout.fnmatch_lines(["nginmesh: starting local cluster nmsession*",
                                 "nginmesh: installing the Istio control plane*", "nginmesh: deploying Bookinfo"])
    assert lifecycle.leftovers(settings) == []


def test_keep_cluster_leaves_it_running_for_reuse(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = cluster_settings("nmkeep", 5)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(f"""
        def test_uses_the_cluster(mesh_cluster):
            assert mesh_cluster.name == {settings.cluster_name!r}
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


def nginmesh(settings: Settings, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """The ``nginmesh local`` command for this cluster, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **settings_env(settings)})


def start_decoy(argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]


def test_down_kills_its_cgroup_and_touches_no_decoy(tmp_path: Path) -> None:
    settings = cluster_settings("nmdecoy", 1)
    other = cluster_settings("nmdecoy", 2)
    other = other.with_overrides({"cluster_name": settings.cluster_name + "-ci"})  # a name it is a prefix of
    other_hosts = network.ETC_NETNS / f"{network.netns_prefix(other.cluster_name)}default_decoy"
    decoys: list[subprocess.Popen[bytes]] = []
    try:
        assert lifecycle.up(settings) and lifecycle.up(other)
        assert lifecycle.is_complete(settings), "up of a cluster stopped the one whose name prefixes its own"
        other_hosts.mkdir(parents=True)
        (other_hosts / "hosts").write_text("127.0.0.1 localhost\n")
        state = str(settings.state_dir)
        decoys = [
            start_decoy(["tail", "-f", f"{state}/daemon.log"]),  # an operator watching the log
            start_decoy(["sleep", "300"], env={**os.environ, "OLDPWD": state, "NGINMESH_STATE": state}),
            start_decoy(["sleep", "300"], cwd=tmp_path),
        ]
        own = Cgroup.of_cluster(settings.cluster_name).child("pods", "test", "forker").create()
        forker = subprocess.Popen(own.launch_argv(["sh", "-c", "setsid sleep 300 & exec sleep 300"]))
        lifecycle.down(settings)
        forker.wait(10)
        assert lifecycle.leftovers(settings) == []
        assert [d.poll() for d in decoys] == [None, None, None], "down killed a process it did not start"
        assert lifecycle.is_complete(other), "down of a cluster stopped the one whose name it prefixes"
        assert (other_hosts / "hosts").exists(), "down removed another cluster's /etc/netns entry"
    finally:
        for decoy in decoys:
            decoy.kill()
            decoy.wait()
        lifecycle.down(settings)
        lifecycle.down(other)
    assert lifecycle.leftovers(other) == [] and not other_hosts.exists()


@pytest.mark.parametrize("gone", ["host link", "node namespace", "state dir"])
def test_down_tolerates_what_is_already_gone(gone: str) -> None:
    settings = cluster_settings("nmgone", 3)
    try:
        lifecycle.up(settings)
        if gone == "host link":
            system.run(["ip", "link", "delete", network.host_link(settings.cluster_name)])
        elif gone == "node namespace":
            system.run(["ip", "netns", "delete", network.node_netns(settings.cluster_name)])
        else:
            subprocess.run(["rm", "-rf", str(settings.state_dir)], check=True)
        result = nginmesh(settings, "down")
        assert result.returncode == 0, result.stderr
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def test_a_failing_step_of_down_is_reported_after_every_other_step_ran(tmp_path: Path) -> None:
    settings = cluster_settings("nmstuck", 4)
    pinned = settings.state_dir / "pinned"
    empty = tmp_path / "empty"
    empty.mkdir()
    try:
        lifecycle.up(settings)
        pinned.mkdir()
        system.run(["mount", "--bind", str(empty), str(pinned)])  # rmdir of a mount point fails: EBUSY
        result = nginmesh(settings, "down")
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert f"dir {settings.state_dir}" in result.stderr
        assert lifecycle.leftovers(settings) == [f"dir {settings.state_dir}"], "the other steps must have run"
    finally:
        subprocess.run(["umount", str(pinned)], check=False)
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def test_up_with_other_options_says_so_and_changes_nothing() -> None:
    settings = cluster_settings("nmopts", 1)
    try:
        assert nginmesh(settings, "up", "--bare").returncode == 0
        before = (settings.state_dir / "cluster.json").read_text()
        other_range = cluster_settings("nmopts", 2).pod_cidr
        for args, expected in ((["--pod-cidr", other_range], f"with pod_cidr {other_range}"),
                               ([], "bare (--bare), not with the mesh")):
            result = nginmesh(settings, "up", *(["--bare"] if args else []), *args)
            assert result.returncode == 2
            assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
        assert (settings.state_dir / "cluster.json").read_text() == before
        assert lifecycle.is_complete(settings)
        assert nginmesh(settings, "up", "--bare").returncode == 0, "the same options adopt it"
    finally:
        lifecycle.down(settings)


def test_state_files_are_private() -> None:
    settings = cluster_settings("nmmodes", 2)
    try:
        lifecycle.up(settings)
        for directory in (settings.state_dir.parent, settings.state_dir):
            assert directory.stat().st_mode & 0o777 == lifecycle.STATE_DIR_MODE  # nobody else may list it
        for name in ("cluster.json", "daemon.log", "objects.json", "daemon.pid", "complete", "kubeconfig",
                     "pki/apiserver.key", "pki/admin.token"):
            assert (settings.state_dir / name).stat().st_mode & 0o777 == 0o600, name
        assert (settings.state_dir / "pki").stat().st_mode & 0o777 == 0o700
    finally:
        lifecycle.down(settings)


def wait_for_line(process: subprocess.Popen[str], wanted: str, timeout: float) -> list[str]:
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    for line in process.stderr:
        seen.append(line.strip())
        if wanted in line or time.monotonic() > deadline:
            break
    assert any(wanted in line for line in seen), seen
    return seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_signalled_up_leaves_no_cluster_or_one_the_next_up_rebuilds(sig: signal.Signals) -> None:
    settings = cluster_settings("nmupsig", 3 if sig == signal.SIGTERM else 4)
    up = subprocess.Popen([sys.executable, "-m", "pytest_nginmesh.cli", "local", "up"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, **settings_env(settings)})
    try:
        wait_for_line(up, "deploying Bookinfo", 120)  # mid-way: the control plane and Bookinfo are starting
        up.send_signal(sig)
        code = up.wait(120)
        if sig == signal.SIGTERM:
            assert code == 143
            assert "interrupted" in up.communicate()[1]
            assert lifecycle.leftovers(settings) == [], "an interrupted up leaves no cluster"
        else:
            assert lifecycle.leftovers(settings), "kill -9 leaves a half-made cluster"
            assert not lifecycle.is_complete(settings)
            assert nginmesh(settings, "status").returncode == 1
        result = nginmesh(settings, "up")
        assert result.returncode == 0, result.stderr
        assert ("is half-made" in result.stderr) == (sig == signal.SIGKILL)
        ingress = result.stdout.split("ingress: ", 1)[1].strip()
        assert requests.get(ingress + "/productpage", timeout=10).status_code == 200
    finally:
        if up.poll() is None:
            up.kill()
        up.communicate()
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def test_pytest_reuses_only_a_complete_cluster(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = cluster_settings("nmhalf", 5)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile("""
        import requests

        def test_productpage(mesh_cluster):
            assert requests.get(mesh_cluster.ingress_url() + "/productpage", timeout=10).status_code == 200
    """)
    try:
        with lifecycle.building(settings, mesh=True):
            pass  # a cluster whose mesh was never installed, as a killed `up` leaves it: not complete ...
        (settings.state_dir / lifecycle.COMPLETE_MARK).unlink()
        assert lifecycle.is_running(settings) and not lifecycle.is_complete(settings)
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)  # ... so the session rebuilt it rather than adopting it
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []

