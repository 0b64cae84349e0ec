"""The plugin's conformance machinery in real pytest runs (pytester), with no cluster: markers, skips judged by the
``nginmesh_settings`` fixture, the report and its bad input, allure and JUnit, the header, pytest-kind's options,
and politeness towards unrelated test runs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import jsonschema
import pytest
import yaml

from pytest_nginmesh.report.document import schema_text

# Conformance tests that need no cluster: a weight verdict from a deterministic sampler (check_weights, the
# route suite's own judge) and a real sidecar check of the seed's recorded pod with its istio-init removed.
CLUSTER_FREE_SUITE = """
import itertools, json, pathlib
import pytest
from pytest_nginmesh.checks.findings import explain
from pytest_nginmesh.checks.routing import check_weights
from pytest_nginmesh.checks.sidecar import check_pod

POD = json.loads(pathlib.Path(r"{pod}").read_text())

@pytest.mark.conformance(name="weights-even", features=["routing-weighted"])
def test_weights():
    versions = itertools.cycle(["v1", "v3"])
    verdict = check_weights(lambda: next(versions), {{"v1": 50, "v3": 50}})
    assert verdict.passed, str(verdict)

@pytest.mark.conformance(name="sidecar-init", features=["sidecar-injection"])
def test_sidecar():
    POD["spec"]["initContainers"] = []
    findings = check_pod(POD)
    assert not findings, explain(findings)

@pytest.mark.conformance(name="delay", features=["fault-delay"])
def test_delay():
    pass
"""
SEED_POD = Path(__file__).parent / "data" / "seed-reviews-v3-pod.json"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=CLUSTER_FREE_SUITE.format(pod=SEED_POD))
    return pytester


def test_the_report_has_every_outcome_reason_finding_and_verdict(suite: pytest.Pytester) -> None:
    result = suite.runpytest("--nginmesh-profile=nginmesh-0.2.12", "--alluredir=allure")
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*nginmesh: conformance report */reports/conformance-report.yaml*"])
    report = yaml.safe_load((suite.path / "reports" / "conformance-report.yaml").read_text())
    jsonschema.validate(report, json.loads(schema_text()))
    tests = {t["name"]: t for t in report["tests"]}
    assert tests["delay"]["outcome"] == "skipped"
    assert tests["delay"]["reason"] == "feature fault-delay not claimed by profile nginmesh-0.2.12"
    assert report["features"]["fault-delay"]["supported"] is False
    assert tests["sidecar-init"]["outcome"] == "failed"
    assert {f["id"] for f in tests["sidecar-init"]["findings"]} == {"sidecar.init-missing"}
    assert tests["sidecar-init"]["diagnostics"] is None  # no cluster to gather from
    [verdict] = tests["weights-even"]["verdicts"]
    assert verdict["passed"] is True and verdict["expected"] == {"v1": 0.5, "v3": 0.5}
    assert verdict["counts"]["v1"] + verdict["counts"]["v3"] == verdict["samples"] > 0
    assert verdict["alpha"] == 1e-6 and verdict["maxSamples"] == 10000
    assert report["summary"]["result"] == "failed"
    markdown = (suite.path / "reports" / "conformance-report.md").read_text()
    assert "| fault-delay | skipped |" in markdown and "`sidecar.init-missing`" in markdown
    results = [json.loads(p.read_text()) for p in (suite.path / "allure").glob("*-result.json")]
    weights = next(r for r in results if r["name"] == "test_weights")
    assert weights["steps"][0]["name"].startswith("measure and judge: versions against weights")
    attachments = weights["steps"][0].get("attachments", []) + weights.get("attachments", [])
    assert any(a["name"] == "verdict" for a in attachments)
    assert {"name": "feature", "value": "routing-weighted"} in weights["labels"]


def test_an_overridden_settings_fixture_decides_the_skips(suite: pytest.Pytester) -> None:
    suite.makeconftest("""
        import pytest
        from pytest_nginmesh.settings import Settings

        @pytest.fixture(scope="session")
        def nginmesh_settings():
            return Settings(exempt_features=frozenset({"routing-weighted", "sidecar-injection"}))
    """)
    result = suite.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*feature routing-weighted exempted*", "*feature sidecar-injection exempted*"])


@pytest.mark.parametrize(("marker", "message"), [
    ('name="Bad Name", features=["metrics"]', "*name 'Bad Name' is not lowercase words joined by '-'*"),
    ('name="ok", features=[]', "*features must be a non-empty list*"),
    ('name="ok", features="metrics"', "*features must be a non-empty list*"),
    ('"ok", features=["metrics"]', "*keywords only*"),
    ('name="ok", features=["warp-drive"]', "*unknown feature(s) warp-drive; known:*"),
])
def test_a_malformed_marker_is_a_usage_error(pytester: pytest.Pytester, marker: str, message: str) -> None:
    pytester.makepyfile(f"import pytest\n\n@pytest.mark.conformance({marker})\ndef test_one():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_two_tests_may_not_share_a_name(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.conformance(name="same", features=["metrics"])
        def test_one():
            pass

        @pytest.mark.conformance(name="same", features=["metrics"])
        def test_two():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*conformance name 'same' is already *test_one's: give each test a name of its own"])


@pytest.mark.parametrize(("args", "message"), [
    (["--nginmesh-report-dir=afile"], "*report directory */afile is a file: give a writable directory with "
                                      "--nginmesh-report-dir"),
    (["--nginmesh-report-dir=afile/below"], "*report directory */afile/below is not writable (*): give a writable "
                                            "directory with --nginmesh-report-dir"),
    (["--nginmesh-implementation", "vendor=ACME"], "*--nginmesh-implementation: bad implementation field "
                                                   "'vendor=ACME': give KEY=VALUE with KEY one of organization, "
                                                   "project, url, version, contact"),
])
def test_bad_report_input_is_a_usage_error_before_any_test(suite: pytest.Pytester, args: list[str],
                                                           message: str) -> None:
    (suite.path / "afile").write_text("not a directory")
    suite.makeconftest("""
        import pathlib

        def pytest_runtest_setup(item):
            pathlib.Path("a-test-ran").touch()
    """)
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert not (suite.path / "a-test-ran").exists()


def test_an_unrelated_run_is_left_alone(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """No validation of nginmesh settings, no report, no signal handler, none of the heavy imports."""
    monkeypatch.setenv("PYTEST_NGINMESH_CLUSTER", "minikube")
    pytester.makepyfile("""
        import signal, sys

        def test_plain():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
            heavy = {"kubernetes", "requests", "allure", "pytest_nginmesh.cluster.provider",
                     "pytest_nginmesh.report.session"}
            assert not heavy & set(sys.modules), heavy & set(sys.modules)
    """)
    # The other plugins of this environment (pytest-kind imports requests, allure-pytest allure) are left out.
    result = pytester.runpytest_subprocess("-p", "no:allure_pytest", "-p", "no:pytest-kind")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_header_names_cluster_profile_release_and_images(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    pass\n")
    result = pytester.runpytest("--nginmesh-profile=nginmesh-0.3.0", "--nginmesh-proxy-image=acme/proxy:1")
    result.stdout.fnmatch_lines([
        "nginmesh: cluster local (nginmesh), profile nginmesh-0.3.0, Nginmesh 0.3.0, Istio 0.3.0, "
        "initializer injection",
        "nginmesh: proxy acme/proxy:1, init nginmesh/proxy_init:0.2.12"])


@pytest.mark.parametrize(("args", "message"), [
    (["--cluster-name=other"], "--cluster-name is pytest-kind's option and does nothing for --nginmesh-cluster=kind: "
                               "use --nginmesh-cluster-name"),
    (["--kind-image=kindest/node:v1.13.12"], "--kind-image is pytest-kind's option*use --nginmesh-node-image"),
    (["--keep-cluster"], "--keep-cluster is pytest-kind's option*use --nginmesh-keep-cluster"),
])
def test_pytest_kinds_options_are_refused_next_to_the_kind_cluster(pytester: pytest.Pytester, args: list[str],
                                                                    message: str) -> None:
    pytester.makepyfile("def test_uses(mesh_cluster):\n    pass\n")
    result = pytester.runpytest("--nginmesh-cluster=kind", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_pytest_kinds_fixture_is_refused_next_to_the_kind_cluster(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_uses(mesh_cluster, kind_cluster):\n    pass\n")
    result = pytester.runpytest("--nginmesh-cluster=kind")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *test_uses uses pytest-kind's kind_cluster, a second cluster beside "
                                 "--nginmesh-cluster=kind's: use the mesh_cluster fixture"])


def test_every_suite_test_declares_its_name_and_features() -> None:
    """A test merged into suites/ without its marker would be missing from the report: refuse that here."""
    import ast

    suites = Path(__file__).resolve().parents[1] / "suites"
    undeclared = [f"{path.name}::{node.name}"
                  for path in sorted(suites.glob("test_*.py"))
                  for node in ast.parse(path.read_text()).body
                  if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
                  and not any("mark.conformance" in ast.unparse(d) for d in node.decorator_list)]
    assert not undeclared, f"give these @pytest.mark.conformance(name=..., features=[...]): {undeclared}"


def test_the_report_dir_comes_from_env_ini_and_option_in_that_order(suite: pytest.Pytester,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_NGINMESH_REPORT_DIR", "from-env")
    suite.runpytest("--collect-only")
    assert not (suite.path / "from-env").exists(), "collecting writes nothing"
    suite.runpytest()
    assert (suite.path / "from-env" / "conformance-report.yaml").exists()
    suite.makeini("[pytest]\nnginmesh_report_dir = from-ini\n")
    suite.runpytest()
    assert (suite.path / "from-ini" / "conformance-report.md").exists()
    suite.runpytest("--nginmesh-report-dir=from-option")
    assert (suite.path / "from-option" / "conformance-report.yaml").exists()
