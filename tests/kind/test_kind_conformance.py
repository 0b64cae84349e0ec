"""The whole conformance suite on a real kind cluster: runs where kind and a container engine exist,
and is skipped with that reason everywhere else (no machine of this project's CI has Docker)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLUSTER_NAME = "nginmesh-kind-e2e"
SUITE_TIMEOUT = 3600


def kind_missing() -> str | None:
    """Why kind cannot run here, or None when it can."""
    if shutil.which("kind") is None:
        return "kind is not on PATH"
    if shutil.which("docker") is None:
        return "no docker command (kind needs a container engine)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        lines = info.stderr.strip().splitlines()
        return f"docker info failed: {lines[-1] if lines else 'no output'}"
    return None


MISSING = kind_missing()
pytestmark = [pytest.mark.kind, pytest.mark.skipif(MISSING is not None, reason=f"needs kind and Docker: {MISSING}")]


@pytest.mark.parametrize("profile", ["nginmesh-0.2.12"])
def test_the_conformance_suite_on_kind(tmp_path: Path, profile: str) -> None:
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "suites"), "-p", "no:cacheprovider", "-q",
         "--nginmesh-cluster=kind", f"--nginmesh-cluster-name={CLUSTER_NAME}", f"--nginmesh-profile={profile}",
         f"--junitxml={report}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=SUITE_TIMEOUT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", 0)) > int(suite.get("skipped", 0)), "every test was skipped"
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, timeout=60).stdout.split()
    assert CLUSTER_NAME not in clusters, "the cluster the run created must be deleted afterwards"
