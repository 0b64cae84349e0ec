"""The kind provider from pytest's side: a session with ``--nginmesh-cluster=kind`` passes exactly the rendered
config to ``kind create cluster``, reuses a cluster of its name without deleting it, and deletes only what
it created. kind and Docker cannot run here, so a recording stand-in for the ``kind`` binary (and a
``docker`` that exits 0) sit at that boundary; the cluster it "creates" is the FAKE API server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubefake import RecordedApiServer, bookinfo_objects

from pytest_nginmesh.cluster.render import kind_config, to_yaml
from pytest_nginmesh.cluster.versions import CURRENT_K8S, KubeVersion, node_image
from pytest_nginmesh.profiles import get_profile

RECORDING_KIND = """#!{python}
import json, os, pathlib, sys
state = pathlib.Path(os.environ["FAKE_KIND_STATE"])
clusters = state / "clusters"
names = clusters.read_text().split() if clusters.exists() else []
args = sys.argv[1:]
entry = {{"argv": args}}
options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
if "--config" in args:
    entry["config"] = pathlib.Path(args[args.index("--config") + 1]).read_text()
kubeconfig = pathlib.Path(os.environ["FAKE_KIND_KUBECONFIG"]).read_text()
if args[:1] == ["version"]:
    print("kind " + os.environ.get("FAKE_KIND_VERSION", "v0.9.0") + " go1.15.2 linux/amd64")
elif args[:2] == ["get", "clusters"]:
    print("\\n".join(names))
elif args[:2] == ["get", "kubeconfig"]:
    print(kubeconfig)
elif args[:2] == ["create", "cluster"]:
    pathlib.Path(options["kubeconfig"]).write_text(kubeconfig)
    names.append(options["name"])
elif args[:2] == ["delete", "cluster"]:
    names.remove(options["name"])
clusters.write_text("\\n".join(names))
with (state / "log.jsonl").open("a") as log:
    log.write(json.dumps(entry) + "\\n")
"""
USES_CLUSTER = """
def test_bookinfo_is_there(mesh_cluster):
    assert len(mesh_cluster.list_pods("default")) == 6
"""
NAME = "nginmesh"


@pytest.fixture
def fake_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A kind stand-in whose clusters are the FAKE API server; returns its state directory."""
    state, bin_dir = tmp_path / "kind-state", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    kind = bin_dir / "kind"
    kind.write_text(RECORDING_KIND.format(python=sys.executable))
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\nexit 0\n")
    for tool in (kind, docker):
        tool.chmod(0o755)
    with RecordedApiServer() as server:
        server.load(bookinfo_objects())
        monkeypatch.setenv("FAKE_KIND_STATE", str(state))
        monkeypatch.setenv("FAKE_KIND_KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kc", f"kind-{NAME}")))
        monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        yield state


def calls(state: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (state / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("profile", "version"), [("nginmesh-0.2.12", KubeVersion(1, 13)),
                                                  ("nginmesh-0.3.0", KubeVersion(1, 12)),
                                                  ("nginmesh-0.7.1", CURRENT_K8S)])
def test_the_rendered_config_is_what_kind_creates_the_cluster_with(pytester: pytest.Pytester, fake_kind: Path,
                                                                    monkeypatch: pytest.MonkeyPatch, profile: str,
                                                                    version: KubeVersion) -> None:
    monkeypatch.setenv("FAKE_KIND_VERSION", node_image(version).kind_release)
    pytester.makepyfile(USES_CLUSTER)
    args = ["--nginmesh-cluster=kind", f"--nginmesh-profile={profile}", f"--nginmesh-k8s-version={version}"]
    expected = to_yaml(kind_config(version, get_profile(profile), node_image(version).image))
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1)
    assert calls(fake_kind)[0]["argv"] == ["version"]
    create = next(c for c in calls(fake_kind) if c["argv"][:2] == ["create", "cluster"])  # type: ignore[index]
    assert create["argv"] == ["create", "cluster", f"--name={NAME}", f"--kubeconfig=.pytest-kind/{NAME}/kubeconfig",
                              "--config", f".pytest-kind/{NAME}/kind-config.yaml"]
    assert create["config"] == expected
    assert calls(fake_kind)[-1]["argv"] == ["delete", "cluster", f"--name={NAME}",
                                            f"--kubeconfig=.pytest-kind/{NAME}/kubeconfig"], "created, so deleted"


def test_a_cluster_of_that_name_is_reused_and_never_deleted(pytester: pytest.Pytester, fake_kind: Path) -> None:
    (fake_kind / "clusters").write_text(NAME)
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=kind")
    result.assert_outcomes(passed=1)
    verbs = [c["argv"][:2] for c in calls(fake_kind)]  # type: ignore[index]
    assert ["create", "cluster"] not in verbs and ["delete", "cluster"] not in verbs
    assert ["get", "kubeconfig"] in verbs
    result.stdout.fnmatch_lines([f"*nginmesh: reusing kind cluster {NAME} (it will be left running)*"])


def test_keep_cluster_leaves_the_created_cluster(pytester: pytest.Pytester, fake_kind: Path) -> None:
    pytester.makepyfile(USES_CLUSTER)
    pytester.runpytest("--nginmesh-cluster=kind", "--nginmesh-keep-cluster").assert_outcomes(passed=1)
    assert (fake_kind / "clusters").read_text().split() == [NAME]


def test_a_failing_test_session_still_deletes_the_created_cluster(pytester: pytest.Pytester, fake_kind: Path) -> None:
    pytester.makepyfile("def test_fails(mesh_cluster):\n    assert False\n")
    pytester.runpytest("--nginmesh-cluster=kind").assert_outcomes(failed=1)
    assert (fake_kind / "clusters").read_text().split() == []


def test_a_kind_older_than_the_node_image_is_refused_before_creating(pytester: pytest.Pytester, fake_kind: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KIND_VERSION", "v0.5.1")
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=kind", "--nginmesh-k8s-version=1.13")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*kind v0.5.1 is older than v0.9.0, the oldest kind that runs kindest/node:v1.13*"
                                 "pass a newer kind with --nginmesh-kind-bin*"])
    assert [c["argv"] for c in calls(fake_kind)] == [["version"]]


def test_another_kind_release_is_warned_about(pytester: pytest.Pytester, fake_kind: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KIND_VERSION", "v0.11.1")
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=kind", "--nginmesh-k8s-version=1.13")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*nginmesh: kind v0.11.1 runs kindest/node:v1.13.12* on a best-effort basis*"])


def test_an_overridden_settings_fixture_chooses_the_provider(pytester: pytest.Pytester, fake_kind: Path) -> None:
    """No --nginmesh-cluster option: the conftest's nginmesh_settings alone makes it a kind cluster."""
    pytester.makeconftest("""
        import pytest
        from pytest_nginmesh.settings import Settings

        @pytest.fixture(scope="session")
        def nginmesh_settings():
            return Settings(cluster="kind")
    """)
    pytester.makepyfile(USES_CLUSTER)
    pytester.runpytest().assert_outcomes(passed=1)
    assert ["create", "cluster"] in [c["argv"][:2] for c in calls(fake_kind)]  # type: ignore[index]
