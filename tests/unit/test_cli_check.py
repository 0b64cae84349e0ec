"""``nginmesh check pod`` and ``nginmesh check iptables``, run in-process through pytest_nginmesh.cli.main."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_nginmesh.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
POD_YAML = DATA / "seed-reviews-v3-pod.yaml"
POD_JSON = DATA / "seed-reviews-v3-pod.json"
PLAIN_DUMP = DATA / "iptables" / "prepare-proxy-plain.nft.txt"
INCLUDE_DUMP = DATA / "iptables" / "prepare-proxy-include.nft.txt"
FULL_DUMP = DATA / "iptables" / "full-tables.nft.txt"
SUBJECT = "pod default/reviews-v3-5fff595d9b-zsb2q"


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(word) for word in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def seed_pod() -> dict[str, Any]:
    pod: dict[str, Any] = json.loads(POD_JSON.read_text(encoding="utf-8"))
    return pod


def without_proxy(pod: dict[str, Any]) -> dict[str, Any]:
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "istio-proxy"]
    return pod


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


# -- check pod: conformant input -------------------------------------------------------------------

@pytest.mark.parametrize("path", [POD_YAML, POD_JSON], ids=["yaml", "json"])
def test_check_pod_seed_is_conformant(capsys: pytest.CaptureFixture[str], path: Path) -> None:
    code, out, err = run(capsys, "check", "pod", path)
    assert (code, out, err) == (0, f"{SUBJECT}: conformant\n", "")


def test_check_pod_list_of_two_pods(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pod_list = {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                "items": [seed_pod(), seed_pod()]}
    code, out, _ = run(capsys, "check", "pod", write_json(tmp_path / "pods.json", pod_list))
    assert code == 0
    assert out.splitlines() == [f"{SUBJECT}: conformant"] * 2


def test_check_pod_several_files(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "pod", POD_YAML, POD_JSON)
    assert code == 0
    assert out.count(f"{SUBJECT}: conformant") == 2


def test_check_pod_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(POD_YAML.read_text(encoding="utf-8")))
    code, out, _ = run(capsys, "check", "pod", "-")
    assert (code, out) == (0, f"{SUBJECT}: conformant\n")


def test_check_pod_with_its_images_expected(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "check", "pod", POD_YAML, "--proxy-image", "nginmesh/proxy_debug:0.2.12",
                     "--init-image", "nginmesh/proxy_init:0.2.12")
    assert code == 0


# -- check pod: findings ---------------------------------------------------------------------------

def test_check_pod_broken_pod_exits_1_with_the_finding(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "check", "pod", write_json(tmp_path / "pod.json", without_proxy(seed_pod())))
    assert code == 1
    assert err == ""
    assert out.splitlines()[0] == f"{SUBJECT}: 1 finding"
    assert "[sidecar.proxy-missing]" in out


def test_check_pod_one_broken_pod_among_good_ones_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "check", "pod", POD_YAML, write_json(tmp_path / "pod.json", without_proxy(seed_pod())))
    assert code == 1
    assert "conformant" in out.splitlines()[0]


def test_check_pod_other_image_expected(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "pod", POD_JSON, "--proxy-image", "nginmesh/proxy_debug:0.2.13")
    assert code == 1
    assert "[sidecar.proxy-image]" in out


def test_check_pod_other_proxy_port_expected(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "pod", POD_JSON, "--proxy-port", "15002")
    assert code == 1
    assert "[sidecar.init-args]" in out


def test_check_pod_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = write_json(tmp_path / "pod.json", without_proxy(seed_pod()))
    code, out, _ = run(capsys, "check", "pod", POD_JSON, broken, "--output", "json")
    assert code == 1
    report = json.loads(out)
    assert report["conformant"] is False
    good, bad = report["results"]
    assert (good["subject"], good["conformant"], good["findings"]) == (SUBJECT, True, [])
    assert (bad["subject"], bad["conformant"]) == (SUBJECT, False)
    assert [f["id"] for f in bad["findings"]] == ["sidecar.proxy-missing"]
    assert bad["findings"][0]["subject"] == SUBJECT
    assert bad["findings"][0]["evidence"]["containers"] == ["reviews"]


def test_check_pod_json_output_conformant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "pod", POD_JSON, "--output", "json")
    assert code == 0
    assert json.loads(out) == {"conformant": True,
                               "results": [{"subject": SUBJECT, "conformant": True, "findings": []}]}


def test_check_pod_json_output_with_status_evidence_from_yaml(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    broken = POD_YAML.read_text(encoding="utf-8").replace("exitCode: 0", "exitCode: 1")
    path = tmp_path / "pod.yaml"
    path.write_text(broken, encoding="utf-8")
    code, out, _ = run(capsys, "check", "pod", path, "--output", "json")
    assert code == 1
    assert [f["id"] for f in json.loads(out)["results"][0]["findings"]] == ["sidecar.init-not-completed"]


# -- usage errors: exit 2, one line on stderr ------------------------------------------------------

SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews"}, "spec": {"ports": [{"port": 9080}]}}


@pytest.mark.parametrize(("argv", "contents", "words"), [
    (["check", "pod", "{missing}"], None, "no such file"),
    (["check", "pod", "{file}"], "a: [1, 2\nb: c\n", "not valid YAML"),
    (["check", "pod", "{file}"], json.dumps(SERVICE), "Service reviews is not a Pod"),
    (["check", "iptables", "{file}"], "apiVersion: v1\nkind: Pod\n", "iptables-save"),
    (["check", "iptables", "{missing}"], None, "no such file"),
    (["check", "iptables", str(PLAIN_DUMP), "--include-ranges", "10.0.0.0/8,nonsense"], None, "nonsense"),
    (["check", "iptables", str(PLAIN_DUMP), "--include-ranges", "10.0.0.0/33"], None, "10.0.0.0/33"),
    (["check", "iptables", str(PLAIN_DUMP), "--pod-ip", "pod"], None, "pod/32"),
], ids=["pod-missing-file", "pod-invalid-yaml", "pod-service", "iptables-not-a-dump", "iptables-missing-file",
        "bad-include-range", "include-range-prefix-too-long", "bad-pod-ip"])
def test_usage_error_exits_2_with_one_stderr_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                  argv: list[str], contents: str | None, words: str) -> None:
    file = tmp_path / "input.txt"
    if contents is not None:
        file.write_text(contents, encoding="utf-8")
    words_in = [word.format(missing=tmp_path / "missing.yaml", file=file) for word in argv]
    code, out, err = run(capsys, *words_in)
    assert code == 2
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("nginmesh: error: ")
    assert words in line


@pytest.mark.parametrize("argv", [
    ["check", "pod", str(POD_YAML), "--proxy-port", "abc"],
    ["check", "iptables", str(PLAIN_DUMP), "--proxy-uid", "root"],
    ["check", "pod", str(POD_YAML), "--output", "xml"],
    ["check", "pod"],
    ["check"],
], ids=["pod-proxy-port", "iptables-proxy-uid", "output-xml", "no-file", "no-kind"])
def test_argparse_error_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines()[-1].startswith("nginmesh check")
    assert ": error: " in captured.err.splitlines()[-1]


def test_argparse_error_is_one_stderr_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "pod", str(POD_YAML), "--proxy-port", "abc"])
    (line,) = capsys.readouterr().err.splitlines()
    assert "--proxy-port" in line


# -- check iptables --------------------------------------------------------------------------------

def test_check_iptables_plain_dump_is_conformant(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "iptables", PLAIN_DUMP)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{PLAIN_DUMP}: conformant"
    assert "  probe inbound:9080: redirected to port 15001" in lines
    assert "  probe loopback: not redirected" in lines


def test_check_iptables_full_dump_is_conformant(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "check", "iptables", FULL_DUMP)
    assert code == 0


def test_check_iptables_include_dump_with_its_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "iptables", INCLUDE_DUMP, "--include-ranges", "10.0.0.0/8,172.16.0.0/12")
    assert code == 0
    assert "  probe outbound:outside-ranges: not redirected" in out.splitlines()


def test_check_iptables_include_dump_without_its_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "iptables", INCLUDE_DUMP)
    assert code == 1
    assert "[iptables.outbound-not-captured]" in out


def test_check_iptables_other_proxy_port(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "iptables", PLAIN_DUMP, "--proxy-port", "15002")
    assert code == 1
    assert "[iptables.inbound-wrong-port]" in out
    assert "[iptables.outbound-wrong-port]" in out


def test_check_iptables_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PLAIN_DUMP.read_text(encoding="utf-8")))
    code, out, _ = run(capsys, "check", "iptables", "-")
    assert code == 0
    assert out.splitlines()[0] == "<stdin>: conformant"


def test_check_iptables_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "iptables", PLAIN_DUMP, "--proxy-port", "15002", "--output", "json")
    assert code == 1
    report = json.loads(out)
    assert report["conformant"] is False
    (result,) = report["results"]
    assert (result["subject"], result["conformant"]) == (str(PLAIN_DUMP), False)
    assert {f["id"] for f in result["findings"]} == {"iptables.inbound-wrong-port", "iptables.outbound-wrong-port"}
    assert all(f["subject"] == str(PLAIN_DUMP) for f in result["findings"])
    probes = {p["probe"]: p["landing"] for p in result["probes"]}
    assert probes["inbound:80"] == "redirected to port 15001"
    assert probes["proxy-outbound"] == "not redirected"


# -- check pod --profile: the release's verdict ------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
BOOKINFO = REPO / "fixtures" / "bookinfo" / "bookinfo.yaml"
ROUTES = REPO / "fixtures" / "routes"


def reviews_v3_deployment(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The Deployment of the recorded pod (its selector picks the pod's labels)."""
    return {"apiVersion": "extensions/v1beta1", "kind": "Deployment",
            "metadata": {"name": "reviews-v3", "namespace": "default", "annotations": annotations or {}},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "reviews", "version": "v3"}},
                                                 "spec": {"containers": [{"name": "reviews", "image": "x"}]}}}}


def test_check_pod_profile_sets_the_expected_images(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", "pod", POD_YAML, "--profile", "nginmesh-0.2.12")
    assert (code, out) == (0, f"{SUBJECT}: conformant\n")
    code, out, _ = run(capsys, "check", "pod", POD_YAML, "--profile", "nginmesh-0.7.1")
    assert code == 1 and "nginxinc/nginmesh_proxy_debug:0.7.1" in out
    code, out, _ = run(capsys, "check", "pod", POD_YAML, "--profile", "nginmesh-0.7.1",
                       "--proxy-image", "nginmesh/proxy_debug:0.2.12", "--init-image", "nginmesh/proxy_init:0.2.12")
    assert code == 0, "explicit images replace the profile's"


def test_check_pod_profile_judges_ignored_namespaces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pod = seed_pod()
    pod["metadata"]["namespace"] = "kube-system"
    path = write_json(tmp_path / "pod.json", pod)
    code, out, _ = run(capsys, "check", "pod", path, "--profile", "nginmesh-0.2.12")
    assert code == 1 and "[sidecar.injected-in-ignored-namespace] namespace kube-system" in out
    code, out, _ = run(capsys, "check", "pod", write_json(tmp_path / "bare.json", without_proxy(pod)),
                       "--profile", "nginmesh-0.3.0")
    assert code == 0, out


def test_check_pod_profile_reads_the_opt_out_from_the_workload_in_the_listing(capsys: pytest.CaptureFixture[str],
                                                                              tmp_path: Path) -> None:
    listing = {"apiVersion": "v1", "kind": "List",
               "items": [reviews_v3_deployment({"sidecar.istio.io/inject": "false"}), seed_pod()]}
    code, out, _ = run(capsys, "check", "pod", write_json(tmp_path / "all.json", listing),
                       "--profile", "nginmesh-0.2.12")
    assert code == 1 and '[sidecar.opted-out-but-injected] its workload opted out' in out
    code, out, _ = run(capsys, "check", "pod", write_json(tmp_path / "pod.json", seed_pod()),
                       "--profile", "nginmesh-0.2.12")
    assert code == 0, "without the workload, the pod's annotations cannot decide"


def test_check_pod_profile_ignores_a_pod_template_only_opt_out(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    pod = seed_pod()
    pod["metadata"]["annotations"]["sidecar.istio.io/inject"] = "false"
    listing = {"apiVersion": "v1", "kind": "List", "items": [reviews_v3_deployment(), pod]}
    path = write_json(tmp_path / "all.json", listing)
    assert run(capsys, "check", "pod", path, "--profile", "nginmesh-0.2.12")[0] == 0
    code, out, _ = run(capsys, "check", "pod", path)
    assert code == 1 and "opted-out-but-injected" in out, "without a profile, the pod's own annotation counts"


def test_check_pod_unknown_profile_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["check", "pod", str(POD_YAML), "--profile", "nginmesh-9"])
    assert exited.value.code == 2
    assert "--profile" in capsys.readouterr().err


# -- check rules --------------------------------------------------------------------------------------

def rule_file(tmp_path: Path, name: str, **spec: object) -> Path:
    rule = {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"destination": {"name": "reviews"}, "precedence": 3, **spec}}
    return write_json(tmp_path / f"{name}.json", rule)


def test_check_rules_istios_samples_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", "rules", ROUTES / "route-rule-all-v1.yaml",
                         ROUTES / "route-rule-reviews-test-v2.yaml", ROUTES / "route-rule-ratings-test-abort.yaml",
                         "--workloads", BOOKINFO)
    assert (code, out, err) == (0, "0 errors, 0 warnings\n", "")


def test_check_rules_warns_of_labels_no_pod_carries_and_exits_0(capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    path = rule_file(tmp_path, "reviews-v9", route=[{"labels": {"version": "v9"}}])
    code, out, _ = run(capsys, "check", "rules", path, "--workloads", BOOKINFO)
    assert code == 0
    assert out.splitlines() == [
        "Warning [rules.unknown-labels] routerule/default/reviews-v9: no pod of service reviews in default has "
        "labels version=v9: requests routed there fail", "0 errors, 1 warning"]
    assert run(capsys, "check", "rules", path)[1] == "0 errors, 0 warnings\n", "label checks need --workloads"


def test_check_rules_warns_of_a_version_left_unreachable(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = rule_file(tmp_path, "reviews-split", route=[{"labels": {"version": "v1"}, "weight": 100},
                                                       {"labels": {"version": "v2"}, "weight": 0}])
    code, out, _ = run(capsys, "check", "rules", path, "--output", "json")
    report = json.loads(out)
    assert code == 0 and (report["errors"], report["warnings"]) == (0, 1)
    (finding,) = report["findings"]
    assert (finding["severity"], finding["id"]) == ("warning", "rules.unreachable-version")
    assert "version=v2 has weight 0" in finding["message"]


def test_check_rules_warns_of_rules_with_the_same_precedence(capsys: pytest.CaptureFixture[str],
                                                            tmp_path: Path) -> None:
    code, out, _ = run(capsys, "check", "rules", rule_file(tmp_path, "a", route=[{"labels": {"version": "v1"}}]),
                       rule_file(tmp_path, "b", route=[{"labels": {"version": "v2"}}]))
    assert code == 0 and "[rules.same-precedence] routerule/default/a: 2 rules for reviews in default" in out


def test_check_rules_errors_where_pilot_refuses_and_exits_1(capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    path = rule_file(tmp_path, "bad", route=[{"labels": {"version": "v1"}, "weight": 60},
                                             {"labels": {"version": "v2"}, "weight": 30}],
                     match={"request": {"headers": {"Cookie": {"exact": "x"}}}})
    code, out, _ = run(capsys, "check", "rules", path)
    assert code == 1
    assert out.splitlines() == [
        "Error [rules.invalid] routerule/default/bad: spec.match.request.headers.Cookie: header names must be in "
        "lower case; write cookie", "1 error, 0 warnings"]


def test_check_rules_destination_policy_is_served_as_v1alpha2_only(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    policy = {"apiVersion": "config.istio.io/v1beta1", "kind": "DestinationPolicy",
              "metadata": {"name": "reviews-cb"}, "spec": {"destination": {"name": "reviews"}}}
    code, out, _ = run(capsys, "check", "rules", rule_file(tmp_path, "ok"), write_json(tmp_path / "dp.json", policy))
    assert code == 1 and "[rules.api-version] destinationpolicy/default/reviews-cb" in out


@pytest.mark.parametrize(("contents", "words"), [("a: [1, 2\n", "not valid YAML"),
                                                 (json.dumps(SERVICE), "no RouteRule found")])
def test_check_rules_unreadable_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, contents: str,
                                              words: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(contents, encoding="utf-8")
    code, out, err = run(capsys, "check", "rules", path)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert words in line
