"""From the wheel, as a vendor would run it: the sdist and wheel are built, the wheel is installed into a fresh
virtual environment, and the README's two quickstart paths run in an empty directory outside the checkout:
the conformance suites on the local cluster (smoke and sidecar), and the kind path against the kind stand-in
(its cluster the FAKE API server). The sdist's own tests collect."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import NEEDS_ROOT, cluster_settings, settings_env
from kubefake import bookinfo_objects
from test_kind_provider import RECORDING_KIND
from test_suites_on_kubernetes import serve

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 900
CLUSTER_FREE = "every_bookinfo_deployment or conformant_sidecar or control_plane or capture_rules"


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def checked(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{' '.join(result.args)} exited {result.returncode}:\n" \
                                   f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it (``python -m build``)."""
    out = tmp_path_factory.mktemp("dist")
    checked(run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out))
    return out


@pytest.fixture(scope="module")
def venv(dist: Path) -> Iterator[Path]:
    """A fresh virtual environment with only the wheel (and its dependencies, and the dev extra) installed.

    Not below pytest's temporary directories: those are private to root (0700), and the local cluster runs
    the sidecar's programs with this Python as uid 1337."""
    root = Path(tempfile.mkdtemp(prefix="nginmesh-wheel-venv-"))
    try:
        root.chmod(0o755)
        checked(run([sys.executable, "-m", "venv", str(root)], cwd=root))
        wheel = next(dist.glob("pytest_nginmesh-*.whl"))
        checked(run([str(root / "bin" / "pip"), "install", "-q", f"{wheel}[dev]"], cwd=root))
        yield root
    finally:
        shutil.rmtree(root)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    directory = tmp_path / "empty"
    directory.mkdir()
    return directory


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without this checkout's Python paths or settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith(("PYTEST_NGINMESH_", "PYTEST_ADDOPTS"))}
    return {**env, **extra}


def test_the_wheel_holds_the_suites_and_manifests(dist: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    assert "pytest_nginmesh/suites/test_sidecar.py" in names
    assert "pytest_nginmesh/fixtures/istio/istio-0.2.12.yaml" in names
    assert "pytest_nginmesh/report/conformance-report.schema.json" in names
    assert len([n for n in names if n.endswith(".yaml")]) >= 20
    assert any(n.endswith("/licenses/LICENSE") for n in names)


def test_the_sdists_tests_collect(dist: Path, venv: Path, tmp_path: Path) -> None:
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        sdist.extractall(tmp_path, filter="data")
    tree = next(tmp_path.glob("pytest_nginmesh-*"))
    result = checked(run([str(venv / "bin" / "pytest"), "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=tree, env=clean_env()))
    assert " tests collected" in result.stdout.splitlines()[-1]
    assert int(result.stdout.splitlines()[-1].split()[0]) > 300


@pytest.fixture
def kind_stand_in(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The kind stand-in of tests/test_kind_provider.py, whose cluster is the FAKE API server (the seed's
    recorded pods, node helper pods answering iptables-save); returns the environment that puts it on PATH."""
    state, bin_dir = tmp_path / "kind-state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    (bin_dir / "kind").write_text(RECORDING_KIND.format(python=sys.executable))
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    for kubeconfig in serve(bookinfo_objects(), {}, tmp_path, context="kind-nginmesh"):
        yield clean_env(FAKE_KIND_STATE=str(state), FAKE_KIND_KUBECONFIG=str(kubeconfig),
                        PATH=f"{bin_dir}:/usr/bin:/bin")


def test_the_kind_path_runs_from_the_wheel(venv: Path, empty: Path, kind_stand_in: dict[str, str]) -> None:
    result = run([str(venv / "bin" / "pytest"), "--pyargs", "pytest_nginmesh.suites", "-p", "no:cacheprovider",
                  "--nginmesh-cluster=kind", "-k", CLUSTER_FREE], cwd=empty, env=kind_stand_in, timeout=RUN_TIMEOUT)
    checked(result)
    assert "4 passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
    where = checked(run([str(venv / "bin" / "python"), "-c", "import pytest_nginmesh.suites as s; print(s.__file__)"],
                        cwd=empty, env=kind_stand_in)).stdout
    assert where.startswith(str(venv)), f"the suites must come from the wheel's installation, not {where}"
    report = yaml.safe_load((empty / "reports" / "conformance-report.yaml").read_text())
    assert report["summary"]["result"] == "passed" and report["cluster"]["kind"] == "kind"


@NEEDS_ROOT
def test_the_local_quickstart_runs_from_the_wheel(venv: Path, empty: Path) -> None:
    settings = cluster_settings("nmwheel", 4)  # clusters of index 4 run one at a time
    env = clean_env(**settings_env(settings), PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    result = run([str(venv / "bin" / "nginmesh"), "conformance", "-p", "no:cacheprovider",
                  "pytest_nginmesh.suites.test_smoke", "pytest_nginmesh.suites.test_sidecar"],
                 cwd=empty, env=env, timeout=RUN_TIMEOUT)
    checked(result)
    assert "5 passed" in result.stdout.splitlines()[-1], result.stdout[-2000:]
    report = yaml.safe_load((empty / "reports" / "conformance-report.yaml").read_text())
    assert report["summary"]["result"] == "passed" and report["cluster"]["kind"] == "local"
    assert report["features"]["sidecar-injection"]["passed"] == 4 and report["features"]["ingress"]["passed"] == 1
