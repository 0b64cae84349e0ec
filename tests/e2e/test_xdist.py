"""pytest -n 2: one cluster for both workers, torn down once after the last; rules never meet another's traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import cluster_settings, settings_env

from pytest_nginmesh.cluster.local import lifecycle

# The worker of test_quick.py asks for the cluster first and is done at once, so it owns the cluster and must
# outlive the worker of test_slow.py (--dist loadscope: one module, one worker), which keeps using it. Each
# test writes down which worker saw which cluster daemon.
SEEN = """
import json, os, pathlib

LOG = pathlib.Path({log!r})


def seen(request, **extra):
    cluster = request.getfixturevalue("mesh_cluster")
    daemon = (pathlib.Path({state_dir!r}) / "daemon.pid").read_text().strip()
    with LOG.open("a") as log:
        log.write(json.dumps({{"worker": os.environ["PYTEST_XDIST_WORKER"], "test": request.node.name,
                              "daemon": daemon, **extra}}) + "\\n")
    return cluster
"""
QUICK = """
import pytest

from seen import seen


@pytest.mark.conformance(name="xdist-quick", features=["ingress"])
def test_quick(request):
    seen(request)
"""
SLOW = """
import time

import pytest
import requests

from pytest_nginmesh.bookinfo import reviews_version
from seen import seen


@pytest.mark.conformance(name="xdist-slow-rules", features=["routing-version"])
def test_slow_applies_a_rule(request):
    time.sleep(3)  # after worker "quick" owns the cluster
    cluster = seen(request)
    request.getfixturevalue("mesh_rules").apply("routes/route-rule-all-v1.yaml")
    page = requests.get(cluster.ingress_url() + "/productpage", timeout=10)
    assert reviews_version(page.text) == "v1"


@pytest.mark.conformance(name="xdist-slow-late", features=["ingress"])
def test_slow_uses_the_cluster_after_the_owner_is_done(request):
    time.sleep(5)
    cluster = seen(request)
    assert requests.get(cluster.ingress_url() + "/productpage", timeout=10).status_code == 200
"""


def test_two_workers_share_one_cluster_torn_down_once_after_the_last(pytester: pytest.Pytester,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    settings = cluster_settings("nmxdist", 3)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    log = tmp_path / "seen.jsonl"
    pytester.makepyfile(seen=SEEN.format(log=str(log), state_dir=str(settings.state_dir)), test_quick=QUICK,
                        test_slow=SLOW)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--dist", "loadscope",
                                               "--nginmesh-report-dir", str(tmp_path / "reports"), timeout=600)
        leftovers = lifecycle.leftovers(settings)
    finally:
        lifecycle.down(settings)
    result.assert_outcomes(passed=3)
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    workers = {s["test"]: s["worker"] for s in seen}
    assert workers["test_quick"] != workers["test_slow_applies_a_rule"] == workers[
        "test_slow_uses_the_cluster_after_the_owner_is_done"], seen
    assert len({s["daemon"] for s in seen}) == 1, f"one cluster for every test of both workers: {seen}"
    assert leftovers == [], "torn down after the last worker"
    report = yaml.safe_load((tmp_path / "reports" / "conformance-report.yaml").read_text())
    assert sorted(t["name"] for t in report["tests"]) == ["xdist-quick", "xdist-slow-late", "xdist-slow-rules"]
    assert report["summary"]["passed"] == 3, report["summary"]
