"""A seeded defect on the real local cluster, seen in what the run hands over: with the PREROUTING capture rule
removed in one pod, the capture suite's report fails naming the finding, the diagnostics bundle holds that
pod's iptables dump (and its proxy's NGINX config), and the allure result has the dump attached."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from seeding import PREROUTING_RULE, REPO, nat, pod_of, run_suites

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.settings import Settings

CAPTURE_TEST = f"{REPO}/suites/test_iptables.py::test_capture_rules_of_every_injected_pod"


def test_prerouting_removed_gives_a_failing_report_a_bundle_and_an_attachment(
        healthy: KubernetesCluster, e2e_settings: Settings, tmp_path: Path) -> None:
    pod = pod_of(healthy, "ratings")
    nat(healthy, "ratings", "-D", *PREROUTING_RULE)
    try:
        result = run_suites(e2e_settings, CAPTURE_TEST, f"--nginmesh-report-dir={tmp_path / 'reports'}",
                            f"--alluredir={tmp_path / 'allure'}")
    finally:
        nat(healthy, "ratings", "-I", PREROUTING_RULE[0], "1", *PREROUTING_RULE[1:])
    assert result.returncode == 1, result.stdout[-3000:]

    report = yaml.safe_load((tmp_path / "reports" / "conformance-report.yaml").read_text())
    assert report["summary"]["result"] == "failed"
    [test] = report["tests"]
    assert test["name"] == "capture-rules-in-every-injected-pod" and test["outcome"] == "failed"
    assert {"id": "iptables.inbound-not-captured", "subject": f"pod default/{pod}"} in [
        {"id": f["id"], "subject": f["subject"]} for f in test["findings"]]

    bundle = Path(test["diagnostics"])
    dump = (bundle / "iptables" / "default" / f"{pod}.txt").read_text()
    assert "*nat" in dump and "ISTIO_REDIRECT" in dump
    assert "istio/install-istio-prerouting" not in dump, "the dump is the broken pod's, taken before the repair"
    assert "listen" in (bundle / "proxy-config" / "default" / f"{pod}.conf").read_text()
    assert (bundle / "logs" / "default" / pod / "istio-proxy.log").exists()
    assert "istio_request_count" in (bundle / "metrics.txt").read_text()
    assert f"bundle: {bundle}" in result.stdout

    results = [json.loads(p.read_text()) for p in (tmp_path / "allure").glob("*-result.json")]
    [capture] = [r for r in results if r["name"] == "test_capture_rules_of_every_injected_pod"]
    attachment = next(a for a in capture["attachments"] if a["name"] == f"iptables/default/{pod}.txt")
    assert (tmp_path / "allure" / attachment["source"]).read_text() == dump
