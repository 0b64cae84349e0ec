"""RouteRules are admitted as Pilot 0.2.12 admits them: invalid ones are refused at apply, with a clear one-line
reason, and nothing changes; what Pilot accepts (routes to labels no pod carries, ...) is applied."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from helpers import settings_env

from pytest_nginmesh.cluster.k8s import KubernetesCluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.mesh.manifests import FIXTURES
from pytest_nginmesh.settings import Settings


def rule(name: str, **spec: object) -> Obj:
    return {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule", "metadata": {"name": name},
            "spec": {"destination": {"name": "reviews"}, **spec}}


def apply(settings: Settings, *objects: Obj, verb: str = "apply") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", verb, "-f", "-"],
                          input=yaml.safe_dump_all(objects), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **settings_env(settings)})


@pytest.mark.parametrize(("bad", "reason"), [
    (rule("weights", route=[{"labels": {"version": "v1"}, "weight": 60},
                            {"labels": {"version": "v2"}, "weight": 30}]), "must sum to 100, not 60 + 30 = 90"),
    (rule("upper-case-header", match={"request": {"headers": {"Cookie": {"exact": "user=jason"}}}}),
     "header names must be in lower case; write cookie"),
    ({"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule", "metadata": {"name": "nowhere"},
      "spec": {"route": [{"labels": {"version": "v1"}}]}}, "spec.destination.name is required"),
    (rule("bad-regex", match={"request": {"headers": {"cookie": {"regex": "user=(jason"}}}},
          route=[{"labels": {"version": "v2"}}]), "does not compile"),
    (rule("typo", precedence=2, rout=[{"labels": {"version": "v2"}}]), "unknown field(s) rout"),
])
def test_invalid_rule_is_refused_and_nothing_changes(local_mesh: KubernetesCluster, e2e_settings: Settings, bad: Obj,
                                                    reason: str) -> None:
    good = rule("reviews-fine", route=[{"labels": {"version": "v1"}}])
    before = local_mesh.list_objects("RouteRule")
    result = apply(e2e_settings, good, bad)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0], lines
    assert local_mesh.list_objects("RouteRule") == before, "a refused file must change nothing"


def test_what_pilot_accepts_is_applied(local_mesh: KubernetesCluster, e2e_settings: Settings) -> None:
    accepted = [rule("unknown-version", route=[{"labels": {"version": "v9"}}]),
                rule("retries", precedence=3, httpReqRetries={"simpleRetry": {"attempts": 20}},
                     websocketUpgrade=True)]
    try:
        result = apply(e2e_settings, *accepted)
        assert result.returncode == 0, result.stderr
        assert {r["metadata"]["name"] for r in local_mesh.list_objects("RouteRule")} >= {"unknown-version", "retries"}
    finally:
        apply(e2e_settings, *accepted, verb="delete")


def test_istios_sample_files_apply_as_they_are_and_wait_for_the_proxies(local_mesh: KubernetesCluster,
                                                                         e2e_settings: Settings) -> None:
    files = sorted((FIXTURES / "routes").glob("*.yaml"))
    env = {**os.environ, **settings_env(e2e_settings)}
    try:
        for path in files:
            result = subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", "apply", "-f", str(path)],
                                    capture_output=True, text=True, timeout=120, env=env)
            assert result.returncode == 0, result.stderr
            assert "routerule/default/" in result.stdout
    finally:
        for path in files:
            subprocess.run([sys.executable, "-m", "pytest_nginmesh.cli", "local", "delete", "-f", str(path)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert local_mesh.list_objects("RouteRule") == []
