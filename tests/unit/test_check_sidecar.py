"""check_pod (pytest_nginmesh.checks.sidecar): the recorded injected pod, and hand-broken copies of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_nginmesh.checks.findings import Finding, explain, ids
from pytest_nginmesh.checks.sidecar import SidecarExpectations, check_pod, namespace_object, owning_workload
from pytest_nginmesh.kube import Obj, parse_manifests, read_manifest_file
from pytest_nginmesh.profiles import get_profile

DATA = Path(__file__).resolve().parents[1] / "data"
BOOKINFO = Path(__file__).resolve().parents[2] / "fixtures" / "bookinfo" / "bookinfo.yaml"
SEED_FILES = [DATA / "seed-reviews-v3-pod.yaml", DATA / "seed-reviews-v3-pod.json"]
SUBJECT = "pod default/reviews-v3-5fff595d9b-zsb2q"
SEED_IMAGES = SidecarExpectations(proxy_image="nginmesh/proxy_debug:0.2.12", init_image="nginmesh/proxy_init:0.2.12")

Mutation = Callable[[Obj], None]


def load_pod(path: Path) -> Obj:
    (pod,) = parse_manifests(path.read_text(encoding="utf-8"), str(path))
    return pod


@pytest.fixture
def pod() -> Obj:
    """A fresh copy of the recorded pod, free to be broken."""
    return load_pod(SEED_FILES[0])


def named(items: list[Obj], name: str) -> Obj:
    return next(item for item in items if item["name"] == name)


def proxy_of(pod: Obj) -> Obj:
    return named(pod["spec"]["containers"], "istio-proxy")


def init_of(pod: Obj) -> Obj:
    return named(pod["spec"]["initContainers"], "istio-init")


def init_status_of(pod: Obj) -> Obj:
    return named(pod["status"]["initContainerStatuses"], "istio-init")


def annotate(pod: Obj, key: str, value: Any) -> None:
    pod["metadata"].setdefault("annotations", {})[key] = value


def remove_sidecar(pod: Obj) -> None:
    """The pod as it was before injection: no proxy, no init container, no status annotation."""
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "istio-proxy"]
    del pod["spec"]["initContainers"]
    del pod["metadata"]["annotations"]
    pod["status"]["containerStatuses"] = [s for s in pod["status"]["containerStatuses"] if s["name"] != "istio-proxy"]
    del pod["status"]["initContainerStatuses"]


def checked(pod: Obj, expect: SidecarExpectations | None = None) -> list[Finding]:
    return check_pod(pod, expect)


# -- the recorded pod ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.suffix[1:])
def test_seed_pod_is_conformant_with_default_expectations(path: Path) -> None:
    findings = checked(load_pod(path))
    assert findings == [], explain(findings)


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.suffix[1:])
def test_seed_pod_is_conformant_with_its_images_expected(path: Path) -> None:
    findings = checked(load_pod(path), SEED_IMAGES)
    assert findings == [], explain(findings)


# -- hand-broken variants: each yields its own finding and nothing else ----------------------------

def drop_proxy(pod: Obj) -> None:
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "istio-proxy"]


def drop_init(pod: Obj) -> None:
    del pod["spec"]["initContainers"]


def set_init_args(*args: str) -> Mutation:
    def mutate(pod: Obj) -> None:
        init_of(pod)["args"] = list(args)
    return mutate


def set_init_security(security: Obj) -> Mutation:
    def mutate(pod: Obj) -> None:
        init_of(pod)["securityContext"] = security
    return mutate


def drop_proxy_uid(pod: Obj) -> None:
    del proxy_of(pod)["securityContext"]["runAsUser"]


def set_proxy_uid(uid: int) -> Mutation:
    def mutate(pod: Obj) -> None:
        proxy_of(pod)["securityContext"]["runAsUser"] = uid
    return mutate


def drop_status_annotation(pod: Obj) -> None:
    del pod["metadata"]["annotations"]["sidecar.istio.io/status"]


def proxy_not_ready(pod: Obj) -> None:
    named(pod["status"]["containerStatuses"], "istio-proxy")["ready"] = False


def drop_container_statuses(pod: Obj) -> None:
    del pod["status"]["containerStatuses"]


def init_exit_code(code: int) -> Mutation:
    def mutate(pod: Obj) -> None:
        init_status_of(pod)["state"]["terminated"]["exitCode"] = code
    return mutate


def init_running(pod: Obj) -> None:
    init_status_of(pod)["state"] = {"running": {"startedAt": "2018-01-02T02:33:53Z"}}


def opt_out(pod: Obj) -> None:
    annotate(pod, "sidecar.istio.io/inject", "false")


def host_network(pod: Obj) -> None:
    pod["spec"]["hostNetwork"] = True


BROKEN = [
    pytest.param(drop_proxy, None, "sidecar.proxy-missing", id="proxy-removed"),
    pytest.param(drop_init, None, "sidecar.init-missing", id="init-removed"),
    pytest.param(set_init_args("-u", "1337"), None, "sidecar.init-args", id="args-without-p"),
    pytest.param(set_init_args("-p", "15002", "-u", "1337"), None, "sidecar.init-args", id="args-p-15002"),
    pytest.param(set_init_args("-p", "15001"), None, "sidecar.init-args", id="args-without-u"),
    pytest.param(set_init_args("-p", "15001", "-u", "1337"), SidecarExpectations(proxy_port=15002),
                 "sidecar.init-args", id="args-other-port-expected"),
    pytest.param(set_init_security({}), None, "sidecar.init-capabilities", id="init-no-security-context"),
    pytest.param(set_init_security({"capabilities": {"add": ["NET_RAW"]}, "privileged": False}), None,
                 "sidecar.init-capabilities", id="init-other-capability"),
    pytest.param(drop_proxy_uid, None, "sidecar.proxy-uid", id="proxy-runAsUser-removed"),
    pytest.param(set_proxy_uid(0), None, "sidecar.proxy-uid", id="proxy-runAsUser-0"),
    pytest.param(lambda pod: None, SidecarExpectations(proxy_image="nginmesh/proxy_debug:0.2.13"),
                 "sidecar.proxy-image", id="other-proxy-image-expected"),
    pytest.param(lambda pod: None, SidecarExpectations(init_image="nginmesh/proxy_init:0.2.13"),
                 "sidecar.init-image", id="other-init-image-expected"),
    pytest.param(drop_status_annotation, None, "sidecar.status-annotation-missing", id="status-annotation-removed"),
    pytest.param(proxy_not_ready, None, "sidecar.proxy-not-ready", id="proxy-ready-false"),
    pytest.param(drop_container_statuses, None, "sidecar.proxy-not-ready", id="containerStatuses-removed"),
    pytest.param(init_exit_code(1), None, "sidecar.init-not-completed", id="init-exit-1"),
    pytest.param(init_running, None, "sidecar.init-not-completed", id="init-running"),
    pytest.param(opt_out, None, "sidecar.opted-out-but-injected", id="opted-out-but-injected"),
    pytest.param(host_network, None, "sidecar.injected-host-network", id="host-network"),
    pytest.param(lambda pod: None, SidecarExpectations(policy="disabled"), "sidecar.injected-without-opt-in",
                 id="policy-disabled-no-opt-in"),
]


@pytest.mark.parametrize(("mutate", "expect", "finding_id"), BROKEN)
def test_broken_pod_yields_only_its_finding(pod: Obj, mutate: Mutation, expect: SidecarExpectations | None,
                                            finding_id: str) -> None:
    mutate(pod)
    findings = checked(pod, expect)
    assert ids(findings) == {finding_id}, explain(findings)
    assert len(findings) == 1, explain(findings)


@pytest.mark.parametrize(("mutate", "expect", "finding_id"), BROKEN)
def test_every_finding_names_the_pod_in_one_line_with_evidence(pod: Obj, mutate: Mutation,
                                                              expect: SidecarExpectations | None,
                                                              finding_id: str) -> None:
    mutate(pod)
    (finding,) = checked(pod, expect)
    assert finding.id == finding_id
    assert finding.subject == SUBJECT
    assert finding.message.strip() and "\n" not in finding.message
    assert finding.evidence, f"{finding} has no evidence"
    assert str(finding) == f"[{finding_id}] {SUBJECT}: {finding.message}"


# -- details of single checks ----------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-p15001", "-u1337"],
    ["-p=15001", "-u=1337"],
    ["-u", "1337", "-p15001"],
    ["-p=15001", "-u", "1337", "-i", "10.0.0.0/8,172.16.0.0/12"],
], ids=["joined", "equals", "reordered", "with-include-ranges"])
def test_init_args_spellings_are_accepted(pod: Obj, args: list[str]) -> None:
    init_of(pod)["args"] = args
    findings = checked(pod)
    assert findings == [], explain(findings)


def test_init_args_may_come_from_command_and_args_together(pod: Obj) -> None:
    init_of(pod)["command"] = ["/usr/local/bin/prepare_proxy.sh", "-p", "15001"]
    init_of(pod)["args"] = ["-u", "1337"]
    findings = checked(pod)
    assert findings == [], explain(findings)


def test_init_args_finding_shows_the_args(pod: Obj) -> None:
    init_of(pod)["args"] = ["-p", "15002", "-u", "1337"]
    (finding,) = checked(pod)
    assert finding.evidence["args"] == ["-p", "15002", "-u", "1337"]
    assert "15001" in finding.message and "1337" in finding.message


@pytest.mark.parametrize("security", [
    {"capabilities": {"add": ["NET_ADMIN"]}},
    {"privileged": True},
], ids=["net-admin-alone", "privileged-alone"])
def test_init_needs_net_admin_or_privileged_not_both(pod: Obj, security: Obj) -> None:
    init_of(pod)["securityContext"] = security
    findings = checked(pod)
    assert findings == [], explain(findings)


def test_proxy_without_run_as_user_is_reported_as_root(pod: Obj) -> None:
    del proxy_of(pod)["securityContext"]["runAsUser"]
    (finding,) = checked(pod)
    assert "root" in finding.message
    assert finding.evidence["runAsUser"] is None


def test_proxy_running_as_uid_0_names_the_uid(pod: Obj) -> None:
    proxy_of(pod)["securityContext"]["runAsUser"] = 0
    (finding,) = checked(pod)
    assert "uid 0" in finding.message and "1337" in finding.message
    assert finding.evidence["runAsUser"] == 0


def test_pod_level_run_as_user_counts_when_the_proxy_sets_none(pod: Obj) -> None:
    del proxy_of(pod)["securityContext"]["runAsUser"]
    pod["spec"]["securityContext"] = {"runAsUser": 1337}
    findings = checked(pod)
    assert findings == [], explain(findings)


def test_proxy_run_as_user_wins_over_the_pod_level_one(pod: Obj) -> None:
    proxy_of(pod)["securityContext"]["runAsUser"] = 0
    pod["spec"]["securityContext"] = {"runAsUser": 1337}
    assert ids(checked(pod)) == {"sidecar.proxy-uid"}


def test_images_are_not_judged_without_an_expectation(pod: Obj) -> None:
    proxy_of(pod)["image"] = "example/other-proxy:1.0"
    init_of(pod)["image"] = "example/other-init:1.0"
    findings = checked(pod)
    assert findings == [], explain(findings)
    assert ids(checked(pod, SEED_IMAGES)) == {"sidecar.proxy-image", "sidecar.init-image"}


def test_missing_container_status_is_named_in_the_evidence(pod: Obj) -> None:
    del pod["status"]["containerStatuses"]
    (finding,) = checked(pod)
    assert finding.evidence["status"] == "no container status"


@pytest.mark.parametrize("value", ["false", "False", "no", "off", False], ids=repr)
def test_opt_out_spellings_are_recognised(pod: Obj, value: Any) -> None:
    annotate(pod, "sidecar.istio.io/inject", value)
    assert ids(checked(pod)) == {"sidecar.opted-out-but-injected"}


def test_opted_out_message_names_the_annotation(pod: Obj) -> None:
    opt_out(pod)
    (finding,) = checked(pod)
    assert 'sidecar.istio.io/inject: "false"' in finding.message
    assert finding.evidence["annotation"] == "false"


def test_opted_out_pod_without_sidecar_has_no_findings(pod: Obj) -> None:
    remove_sidecar(pod)
    opt_out(pod)
    findings = checked(pod)
    assert findings == [], explain(findings)


def test_pod_without_sidecar_that_did_not_opt_out_is_reported(pod: Obj) -> None:
    remove_sidecar(pod)
    assert ids(checked(pod)) == {"sidecar.status-annotation-missing", "sidecar.proxy-missing", "sidecar.init-missing"}


def test_host_network_pod_without_sidecar_has_no_findings(pod: Obj) -> None:
    remove_sidecar(pod)
    host_network(pod)
    findings = checked(pod)
    assert findings == [], explain(findings)


def test_host_network_evidence_lists_the_containers(pod: Obj) -> None:
    host_network(pod)
    (finding,) = checked(pod)
    assert finding.evidence["containers"] == ["reviews", "istio-proxy"]


# -- injection policy disabled ---------------------------------------------------------------------

DISABLED = SidecarExpectations(policy="disabled")


def test_disabled_policy_pod_without_opt_in_and_without_sidecar_has_no_findings(pod: Obj) -> None:
    remove_sidecar(pod)
    findings = checked(pod, DISABLED)
    assert findings == [], explain(findings)


@pytest.mark.parametrize("value", ["true", "yes", "on", True], ids=repr)
def test_disabled_policy_opted_in_pod_is_conformant(pod: Obj, value: Any) -> None:
    annotate(pod, "sidecar.istio.io/inject", value)
    findings = checked(pod, DISABLED)
    assert findings == [], explain(findings)


def test_disabled_policy_opted_in_pod_gets_the_full_checks(pod: Obj) -> None:
    annotate(pod, "sidecar.istio.io/inject", "true")
    proxy_not_ready(pod)
    drop_init(pod)
    assert ids(checked(pod, DISABLED)) == {"sidecar.proxy-not-ready", "sidecar.init-missing"}


def test_disabled_policy_opted_in_pod_without_sidecar_is_reported(pod: Obj) -> None:
    remove_sidecar(pod)
    annotate(pod, "sidecar.istio.io/inject", "true")
    assert "sidecar.proxy-missing" in ids(checked(pod, DISABLED))


# -- the verdict of each release: ignored namespaces and where the opt-out is read ------------------

RELEASE_0_2_12 = SidecarExpectations.for_profile(get_profile("nginmesh-0.2.12"))
RELEASE_0_7_1 = SidecarExpectations.for_profile(get_profile("nginmesh-0.7.1"))


@pytest.fixture
def workload() -> Obj:
    """The Deployment the recorded pod belongs to, as Bookinfo ships it."""
    return next(o for o in read_manifest_file(str(BOOKINFO)) if o["kind"] == "Deployment"
                and o["metadata"]["name"] == "reviews-v3")


def test_the_recorded_pod_belongs_to_its_deployment(pod: Obj, workload: Obj) -> None:
    other = {**workload, "metadata": {**workload["metadata"], "namespace": "shop"}}
    assert owning_workload(pod, [other, workload]) is workload
    assert owning_workload(pod, [other]) is None


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "istio-system"])
def test_initializer_release_never_injects_its_ignored_namespaces(pod: Obj, namespace: str) -> None:
    pod["metadata"]["namespace"] = namespace
    (finding,) = checked(pod, RELEASE_0_2_12)
    assert finding.id == "sidecar.injected-in-ignored-namespace" and namespace in finding.message
    remove_sidecar(pod)
    assert checked(pod, RELEASE_0_2_12) == []


def test_without_a_release_named_kube_system_is_judged_like_any_namespace(pod: Obj) -> None:
    pod["metadata"]["namespace"] = "kube-system"
    remove_sidecar(pod)
    assert "sidecar.proxy-missing" in ids(checked(pod))


def test_initializer_release_ignores_a_pod_template_only_opt_out(pod: Obj, workload: Obj) -> None:
    opt_out(pod)  # what the pod carries when only the pod template was annotated
    findings = check_pod(pod, RELEASE_0_2_12, workload=workload)
    assert findings == [], explain(findings)
    assert ids(checked(pod)) == {"sidecar.opted-out-but-injected"}, "a reader of the pod's annotation disagrees"


def test_initializer_release_expects_a_sidecar_despite_a_pod_template_only_opt_out(pod: Obj, workload: Obj) -> None:
    remove_sidecar(pod)
    opt_out(pod)
    assert "sidecar.proxy-missing" in ids(check_pod(pod, RELEASE_0_2_12, workload=workload))


@pytest.mark.parametrize("value", ["false", "no", "maybe"])
def test_initializer_release_reads_the_workloads_opt_out(pod: Obj, workload: Obj, value: str) -> None:
    annotate(workload, "sidecar.istio.io/inject", value)
    (finding,) = check_pod(pod, RELEASE_0_2_12, workload=workload)
    assert finding.id == "sidecar.opted-out-but-injected"
    assert finding.message.startswith(f'its workload opted out (sidecar.istio.io/inject: "{value}")')
    remove_sidecar(pod)
    assert check_pod(pod, RELEASE_0_2_12, workload=workload) == []


def test_initializer_release_without_the_workload_lets_the_pods_copy_excuse_a_missing_sidecar_only(pod: Obj) -> None:
    opt_out(pod)
    findings = checked(pod, RELEASE_0_2_12)
    assert findings == [], "with the sidecar, the pod's annotation proves nothing: the release did not read it"
    remove_sidecar(pod)
    opt_out(pod)
    assert checked(pod, RELEASE_0_2_12) == []
    del pod["metadata"]["annotations"]
    assert "sidecar.proxy-missing" in ids(checked(pod, RELEASE_0_2_12))


def test_webhook_release_reads_the_pods_own_annotation(pod: Obj) -> None:
    opt_out(pod)
    assert ids(checked(pod, RELEASE_0_7_1)) == {"sidecar.opted-out-but-injected"}


def test_webhook_release_skips_namespaces_without_the_injection_label(pod: Obj) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
    assert "sidecar.injected-in-ignored-namespace" in ids(check_pod(pod, RELEASE_0_7_1, namespace=namespace))
    namespace["metadata"]["labels"] = {"istio-injection": "enabled"}
    assert "sidecar.injected-in-ignored-namespace" not in ids(check_pod(pod, RELEASE_0_7_1, namespace=namespace))
    assert namespace_object(pod, [namespace]) is namespace


def test_0_7_1_expects_the_nginxinc_hub() -> None:
    assert RELEASE_0_7_1.proxy_image == "nginxinc/nginmesh_proxy_debug:0.7.1"
    assert RELEASE_0_7_1.init_image == "docker.io/istio/proxy_init:0.7.1"
