"""pytest -n 2: one cluster for both workers, torn down once after the last; each worker tests a Bookinfo of its
own, so one worker's rules never meet another's traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import cluster_settings, settings_env

from pytest_nginmesh.cluster.local import lifecycle

# The worker of test_quick.py asks for the cluster first and is done before the other, so it owns the cluster and
# must outlive the worker of test_slow.py (--dist loadscope: one module, one worker), which keeps using it. While
# the slow worker's all-v1 rule is in force, the quick worker samples its own Bookinfo and still sees every version.
# Each test writes down which worker saw which cluster daemon and Bookinfo namespace.
SEEN = """
import json, os, pathlib, time

LOG = pathlib.Path({log!r})


def seen(request, **extra):
    cluster = request.getfixturevalue("mesh_cluster")
    daemon = (pathlib.Path({state_dir!r}) / "daemon.pid").read_text().strip()
    with LOG.open("a") as log:
        log.write(json.dumps({{"worker": os.environ["PYTEST_XDIST_WORKER"], "test": request.node.name,
                              "daemon": daemon, **extra}}) + "\\n")
    return cluster


def wait_for_file(name, seconds=120):
    deadline = time.monotonic() + seconds
    while not (LOG.parent / name).exists():
        assert time.monotonic() < deadline, f"the other worker never wrote {{name}}"
        time.sleep(0.1)
"""
QUICK = """
import pytest
import requests

from pytest_nginmesh.bookinfo import reviews_version
from seen import LOG, seen, wait_for_file


@pytest.mark.conformance(name="xdist-quick", features=["routing-default"])
def test_quick(request):
    seen(request)
    bookinfo = request.getfixturevalue("bookinfo")
    wait_for_file("rule-applied")  # the other worker's all-v1 rule is in force now, for its own Bookinfo
    with requests.Session() as session:
        versions = {reviews_version(session.get(bookinfo.url("/productpage"), headers=bookinfo.headers,
                                                timeout=10).text) for _ in range(30)}
    (LOG.parent / "sampled").touch()
    seen(request, namespace=bookinfo.namespace, versions=sorted(versions))
    assert len(versions) > 1, "another worker's rule reached this worker's Bookinfo"
"""
SLOW = """
import time

import pytest
import requests

from pytest_nginmesh.bookinfo import reviews_version
from seen import LOG, seen, wait_for_file


@pytest.mark.conformance(name="xdist-slow-rules", features=["routing-version"])
def test_slow_applies_a_rule(request):
    time.sleep(3)  # after worker "quick" owns the cluster
    cluster = seen(request)
    bookinfo = request.getfixturevalue("bookinfo")
    request.getfixturevalue("mesh_rules").apply("routes/route-rule-all-v1.yaml")
    (LOG.parent / "rule-applied").touch()
    wait_for_file("sampled")
    seen(request, namespace=bookinfo.namespace)
    page = requests.get(bookinfo.url("/productpage"), headers=bookinfo.headers, timeout=10)
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
    namespaces = {s["test"]: s["namespace"] for s in seen if "namespace" in s}
    assert namespaces["test_quick"] != namespaces["test_slow_applies_a_rule"], "each worker has a Bookinfo of its own"
    assert "default" in namespaces.values(), "the first worker tests the Bookinfo installed with the mesh"
    assert leftovers == [], "torn down after the last worker"
    report = yaml.safe_load((tmp_path / "reports" / "conformance-report.yaml").read_text())
    assert sorted(t["name"] for t in report["tests"]) == ["xdist-quick", "xdist-slow-late", "xdist-slow-rules"]
    assert report["summary"]["passed"] == 3, report["summary"]
