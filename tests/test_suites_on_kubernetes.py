"""The conformance suites' own files, unchanged, on the Kubernetes adapter: the sidecar and capture checks
of ``suites/`` give their verdicts on the seed's recorded real pods, served by the FAKE API server to a
``--nginmesh-cluster=existing`` session, and fail (naming the finding) when a pod is broken.

Only the suite tests that read the cluster run here: the others need traffic through real pods."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubefake import RecordedApiServer, bookinfo_objects

from pytest_nginmesh.cluster.k8s import DEBUG_NAMESPACE
from pytest_nginmesh.kube import Obj

REPO = Path(__file__).resolve().parents[1]
DUMP = (REPO / "tests" / "data" / "iptables" / "prepare-proxy-plain.nft.txt").read_text()
STATIC_TESTS = [
    f"{REPO}/suites/test_sidecar.py::test_every_bookinfo_deployment_has_a_pod",
    f"{REPO}/suites/test_sidecar.py::test_every_workload_pod_carries_a_conformant_sidecar",
    f"{REPO}/suites/test_sidecar.py::test_control_plane_pods_carry_no_sidecar",
    f"{REPO}/suites/test_iptables.py::test_capture_rules_of_every_injected_pod",
]
BROKEN_POD = "details-v1-rrpbx28dz7-x6ptj"


def serve(objects: list[Obj], dump_for: dict[str, str], tmp_path: Path, context: str = "recorded") -> Iterator[Path]:
    """The fake cluster with node helper pods that run, and answer iptables-save per container ID."""
    with RecordedApiServer() as server:
        server.load(objects)
        server.run_pods_in(DEBUG_NAMESPACE)
        server.load([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": DEBUG_NAMESPACE}}])
        for node in ("kube-1", "kube-2"):
            helper = "netdebug-" + hashlib.sha256(node.encode()).hexdigest()[:10]
            server.on_exec(DEBUG_NAMESPACE, helper, "debug",
                           lambda argv: (0, dump_for.get(argv[-1], DUMP).encode(), b""))
        yield server.write_kubeconfig(tmp_path / "kubeconfig", context)


def run_suites(pytester: pytest.Pytester, kubeconfig: Path) -> pytest.RunResult:
    return pytester.runpytest(*STATIC_TESTS, "--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={kubeconfig}",
                              "-p", "no:cacheprovider")


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Path]:
    yield from serve(bookinfo_objects(), {}, tmp_path)


def test_the_suites_pass_on_the_recorded_cluster(pytester: pytest.Pytester, recorded: Path) -> None:
    run_suites(pytester, recorded).assert_outcomes(passed=4)


@pytest.fixture
def pod_without_init(tmp_path: Path) -> Iterator[Path]:
    objects = copy.deepcopy(bookinfo_objects())
    pod = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == BROKEN_POD)
    pod["spec"]["initContainers"] = []
    yield from serve(objects, {}, tmp_path)


def test_a_pod_without_istio_init_fails_the_sidecar_suite(pytester: pytest.Pytester, pod_without_init: Path) -> None:
    result = run_suites(pytester, pod_without_init)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*sidecar.init-missing*{BROKEN_POD}*"])


@pytest.fixture
def rules_without_uid_bypass(tmp_path: Path) -> Iterator[Path]:
    objects = bookinfo_objects()
    pod = next(o for o in objects if o["kind"] == "Pod" and o["metadata"]["name"] == BROKEN_POD)
    proxy_id = next(s["containerID"].split("://")[-1] for s in pod["status"]["containerStatuses"]
                    if s["name"] == "istio-proxy")
    broken = "\n".join(line for line in DUMP.splitlines() if "--uid-owner" not in line) + "\n"
    yield from serve(objects, {proxy_id: broken}, tmp_path)


def test_rules_without_the_uid_bypass_fail_the_capture_suite(pytester: pytest.Pytester,
                                                             rules_without_uid_bypass: Path) -> None:
    result = run_suites(pytester, rules_without_uid_bypass)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([f"*iptables.*pod default/{BROKEN_POD}*"])
