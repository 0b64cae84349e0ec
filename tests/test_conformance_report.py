"""What a conformance run hands over, seen from real pytest runs of the suites' own files on the FAKE API server
(the seed's recorded pods): a seeded defect (the PREROUTING capture rule gone from one pod's iptables) makes a
failing report naming the finding, a diagnostics bundle holding that pod's iptables dump, an allure result
with it attached, and JUnit properties; the report validates against its schema."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubefake import bookinfo_objects
from test_suites_on_kubernetes import BROKEN_POD, DUMP, STATIC_TESTS, serve

from pytest_nginmesh.report.document import schema_text

BROKEN_DUMP = "\n".join(line for line in DUMP.splitlines() if not line.startswith("-A PREROUTING")) + "\n"
SECRET = "s3cr3t-value-never-written"


def validate(report: dict[str, object]) -> None:
    jsonschema.validate(report, json.loads(schema_text()))


@pytest.fixture
def prerouting_removed(tmp_path: Path) -> Iterator[Path]:
    """The recorded cluster; the broken pod's proxy iptables lack PREROUTING, and its app carries a secret env."""
    objects = copy.deepcopy(bookinfo_objects())
    pod = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == BROKEN_POD)
    pod["spec"]["containers"][0].setdefault("env", []).append({"name": "API_TOKEN", "value": SECRET})
    proxy_id = next(s["containerID"].split("://")[-1] for s in pod["status"]["containerStatuses"]
                    if s["name"] == "istio-proxy")
    yield from serve(objects, {proxy_id: BROKEN_DUMP}, tmp_path)


def run(pytester: pytest.Pytester, kubeconfig: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*STATIC_TESTS, "--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={kubeconfig}",
                              "-p", "no:cacheprovider", *args)


def test_a_seeded_defect_gives_a_failing_report_a_bundle_and_an_allure_attachment(
        pytester: pytest.Pytester, prerouting_removed: Path) -> None:
    reports, allure_dir = pytester.path / "out", pytester.path / "allure"
    result = run(pytester, prerouting_removed, f"--nginmesh-report-dir={reports}", f"--alluredir={allure_dir}",
                 f"--junitxml={reports}/junit.xml", "--nginmesh-implementation", "organization=NGINX",
                 "--nginmesh-implementation", "version=0.2.12")
    result.assert_outcomes(passed=3, failed=1)

    report = yaml.safe_load((reports / "conformance-report.yaml").read_text())
    validate(report)
    assert report["summary"]["result"] == "failed"
    assert report["implementation"]["organization"] == "NGINX" and report["implementation"]["version"] == "0.2.12"
    assert report["dataPlane"]["proxyImage"] == "nginmesh/proxy_debug:0.2.12"
    assert report["cluster"]["kind"] == "existing" and report["profile"]["name"] == "nginmesh-0.2.12"
    assert report["features"]["traffic-capture"]["result"] == "failed"
    assert report["features"]["sidecar-injection"]["result"] == "passed"
    assert report["features"]["metrics"]["result"] == "not-tested"
    failed = next(t for t in report["tests"] if t["outcome"] == "failed")
    assert failed["name"] == "capture-rules-in-every-injected-pod"
    assert "iptables.inbound-not-captured" in {f["id"] for f in failed["findings"]}
    assert "iptables.inbound-not-captured" in failed["reason"]
    assert "iptables.inbound-not-captured" in (reports / "conformance-report.md").read_text()

    bundle = Path(failed["diagnostics"])
    assert bundle.parent == reports / "diagnostics"
    dump = bundle / "iptables" / "default" / f"{BROKEN_POD}.txt"
    assert dump.read_text() == BROKEN_DUMP
    assert "istio/install-istio-prerouting" not in dump.read_text()
    assert {"pods.yaml", "index.yaml", "route-rules.yaml"} <= {p.name for p in bundle.iterdir()}
    assert not [p for p in bundle.rglob("*") if p.is_file() and SECRET in p.read_text()], "a secret was written"
    result.stdout.fnmatch_lines(["*nginmesh diagnostics*", f"bundle: {bundle}"])

    results = [json.loads(p.read_text()) for p in allure_dir.glob("*-result.json")]
    capture = next(r for r in results if r["name"] == "test_capture_rules_of_every_injected_pod")
    assert capture["status"] == "failed"
    assert {"name": "feature", "value": "traffic-capture"} in capture["labels"]
    assert {"name": "story", "value": "capture-rules-in-every-injected-pod"} in capture["labels"]
    attachment = next(a for a in capture["attachments"] if a["name"] == f"iptables/default/{BROKEN_POD}.txt")
    assert (allure_dir / attachment["source"]).read_text() == BROKEN_DUMP
    assert "profile=nginmesh-0.2.12" in (allure_dir / "environment.properties").read_text()
    assert "Product defects" in (allure_dir / "categories.json").read_text()

    junit = ET.parse(reports / "junit.xml").getroot()
    suite_properties = {p.get("name"): p.get("value") for p in junit.iter("testsuite").__next__().find("properties")}
    assert suite_properties["nginmesh.profile"] == "nginmesh-0.2.12"
    assert suite_properties["nginmesh.dataPlane.initImage"] == "nginmesh/proxy_init:0.2.12"
    case = next(c for c in junit.iter("testcase") if c.get("name") == "test_capture_rules_of_every_injected_pod")
    case_properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert case_properties["conformance.name"] == "capture-rules-in-every-injected-pod"
    assert "iptables.inbound-not-captured" in case_properties["conformance.findings"]
    assert case_properties["conformance.diagnostics"] == str(bundle)


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Path]:
    yield from serve(bookinfo_objects(), {}, tmp_path)


def test_a_passing_run_reports_passed_and_keeps_no_bundle(pytester: pytest.Pytester, recorded: Path) -> None:
    reports = pytester.path / "reports"
    run(pytester, recorded, "--nginmesh-exempt-features=traffic-capture").assert_outcomes(passed=3, skipped=1)
    report = yaml.safe_load((reports / "conformance-report.yaml").read_text())
    validate(report)
    assert report["summary"]["result"] == "passed"
    assert report["features"]["traffic-capture"] == {
        "result": "skipped", "supported": True, "passed": 0, "failed": 0, "skipped": 1, "error": 0,
        "reasons": ["feature traffic-capture exempted (--nginmesh-exempt-features)"]}
    assert report["profile"]["exemptFeatures"] == ["traffic-capture"]
    assert not (reports / "diagnostics").exists()
