"""The agent's flag handling (pytest_nginmesh.workloads.agent): Go durations and Envoy-compatible args."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nginmesh.kube import read_manifest_file
from pytest_nginmesh.routerules import parse_duration
from pytest_nginmesh.workloads.agent import parse_args

REPO = Path(__file__).resolve().parents[2]
SEED_POD = REPO / "tests" / "data" / "seed-reviews-v3-pod.yaml"
ISTIO_MANIFEST = REPO / "fixtures" / "istio" / "istio-0.2.12.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("500ms", 0.5), ("1m0s", 60.0), ("45s", 45.0), ("10s", 10.0), ("1m30s", 90.0),
     ("1h2m3s", 3723.0), ("1.5s", 1.5), ("2m", 120.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def seed_proxy_args() -> list[str]:
    (pod,) = read_manifest_file(str(SEED_POD))
    (proxy,) = [c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"]
    return [str(a) for a in proxy["args"]]


def test_parse_args_accepts_the_injected_args_of_the_seed_pod() -> None:
    args = parse_args(seed_proxy_args())
    assert (args.command, args.mode) == ("proxy", "sidecar")
    assert args.verbosity == "2"
    assert args.configPath == "/etc/istio/proxy"
    assert args.serviceCluster == "reviews"
    assert args.discoveryAddress == "istio-pilot.istio-system:15003"
    assert parse_duration(args.discoveryRefreshDelay) == 1.0
    assert args.ingressPort == 80


def test_parse_args_ignores_envoy_only_flags() -> None:
    args = parse_args(seed_proxy_args())
    assert not {"binaryPath", "drainDuration", "zipkinAddress", "proxyAdminPort"} & set(vars(args))


def test_parse_args_accepts_the_ingress_args_of_the_istio_manifest() -> None:
    deployment = next(o for o in read_manifest_file(str(ISTIO_MANIFEST))
                      if o["kind"] == "Deployment" and o["metadata"]["name"] == "istio-ingress")
    args = parse_args(deployment["spec"]["template"]["spec"]["containers"][0]["args"])
    assert (args.command, args.mode) == ("proxy", "ingress")
    assert args.discoveryAddress == "istio-pilot:15003"
    assert args.serviceCluster == "istio-ingress"


def test_parse_args_reads_the_ingress_port() -> None:
    assert parse_args(["proxy", "ingress", "--ingressPort", "8080"]).ingressPort == 8080


@pytest.mark.parametrize("argv", [["proxy", "router"], ["serve", "sidecar"], ["proxy"]])
def test_parse_args_rejects_unknown_commands_and_modes(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
