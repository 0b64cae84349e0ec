"""Bad input for the Kubernetes providers: each a one-line usage error, before anything is created or installed."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

USES_CLUSTER = """
def test_uses_cluster(mesh_cluster):
    pass
"""


@pytest.fixture(autouse=True)
def uses_cluster(pytester: pytest.Pytester) -> None:
    """Options are validated only when a test wants the mesh: this one does (a test may write its own)."""
    pytester.makepyfile(USES_CLUSTER)


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with no kind, docker or kubeadm on it (whatever the machine has)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return empty


def kubeconfig(path: Path, server: str, contexts: tuple[str, ...] = ("ci",), current: str = "ci") -> Path:
    entries = "\n".join(f"- name: {c}\n  context: {{cluster: c, user: u}}" for c in contexts)
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {{server: "{server}"}}
users:
- name: u
  user: {{token: t}}
contexts:
{entries}
current-context: {current}
""")
    return path


def assert_usage_error(result: pytest.RunResult, pattern: str) -> None:
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stderr.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    result.stderr.fnmatch_lines([f"ERROR: {pattern}"])


def test_kind_without_a_container_engine_says_so(pytester: pytest.Pytester, bare_path: Path) -> None:
    result = pytester.runpytest("--nginmesh-cluster=kind")
    assert_usage_error(result, "*kind needs a container engine (Docker or Podman)*--nginmesh-cluster=local*")
    assert not (pytester.path / ".pytest-kind").exists(), "validation must not create anything"


@pytest.mark.parametrize(("args", "pattern"), [
    (["--nginmesh-k8s-version=1.16"], "*profile nginmesh-0.2.12 injects through the Initializers admission plugin*"
                                      "1.14 removed*1.13 or lower*nginmesh-0.7.1*"),
    (["--nginmesh-k8s-version=1.9"], "*Kubernetes 1.9 has no kindest/node image*--nginmesh-cluster=kubeadm*"),
    (["--nginmesh-k8s-version=one.nine"], "*bad Kubernetes version 'one.nine'*1.MINOR*"),
    (["--nginmesh-profile=nginmesh-0.7.1", "--nginmesh-k8s-version=1.8"], "*MutatingAdmissionWebhook*1.9 or higher*"),
    (["--nginmesh-profile=nginmesh-9.9"], "*unknown profile 'nginmesh-9.9'*"),
])
def test_kind_version_and_profile_mismatches_are_usage_errors(pytester: pytest.Pytester, bare_path: Path,
                                                               args: list[str], pattern: str) -> None:
    assert_usage_error(pytester.runpytest("--nginmesh-cluster=kind", *args), pattern)


@pytest.mark.parametrize(("args", "pattern"), [
    (["--nginmesh-release=0.4.0"], "*unknown Nginmesh release '0.4.0': choose one of 0.2.12, 0.3.0, 0.7.1*"),
    (["--nginmesh-release=0.7.1"], "*Nginmesh 0.7.1 injects with the webhook, profile nginmesh-0.2.12 expects "
                                   "the initializer: choose a release and a profile that agree*"),
])
def test_release_must_exist_and_fit_the_profile(pytester: pytest.Pytester, tmp_path: Path, args: list[str],
                                                pattern: str) -> None:
    path = kubeconfig(tmp_path / "config", "https://127.0.0.1:1")
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={path}", *args)
    assert_usage_error(result, pattern)


def test_kind_bin_must_be_an_executable(pytester: pytest.Pytester, bare_path: Path, tmp_path: Path) -> None:
    result = pytester.runpytest("--nginmesh-cluster=kind", f"--nginmesh-kind-bin={tmp_path / 'nope'}")
    assert_usage_error(result, "*--nginmesh-kind-bin*is not an executable file*")


def test_kubeadm_missing_is_named(pytester: pytest.Pytester, bare_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  tmp_path: Path) -> None:
    monkeypatch.setattr("pytest_nginmesh.cluster.kubeadm.ADMIN_KUBECONFIG", tmp_path / "no-admin.conf")
    assert_usage_error(pytester.runpytest("--nginmesh-cluster=kubeadm"),
                       "*kubeadm is not installed*--nginmesh-kubeconfig*")


def test_missing_kubeconfig(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={tmp_path / 'none'}")
    assert_usage_error(result, "*kubeconfig*none does not exist: pass --nginmesh-kubeconfig PATH*")


def test_unreadable_kubeconfig(pytester: pytest.Pytester, tmp_path: Path) -> None:
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={tmp_path}")
    assert_usage_error(result, "*kubeconfig * is unreadable (IsADirectoryError)*")


def test_kubeconfig_that_is_not_yaml(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad = tmp_path / "config"
    bad.write_text("clusters: [\n")
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={bad}")
    assert_usage_error(result, "*is not valid YAML at line*")


def test_context_not_in_the_kubeconfig(pytester: pytest.Pytester, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", "https://127.0.0.1:1", contexts=("ci", "dev"))
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={path}",
                                "--nginmesh-context=prod")
    assert_usage_error(result, "*context 'prod' is not in kubeconfig*choose one of ci, dev*")


def test_context_not_on_the_allow_list(pytester: pytest.Pytester, tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", "https://127.0.0.1:1", contexts=("prod",), current="prod")
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={path}",
                                "--nginmesh-allowed-contexts=kind-ci,staging")
    assert_usage_error(result, "*context 'prod' is not on --nginmesh-allowed-contexts (kind-ci, staging)*")


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers: a hung API server."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_hung_api_server_is_an_error_not_a_hang(pytester: pytest.Pytester, tmp_path: Path, silent_server: int,
                                                     scheme: str) -> None:
    path = kubeconfig(tmp_path / "config", f"{scheme}://127.0.0.1:{silent_server}")
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={path}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*API server *127.0.0.1:* unreachable (ReadTimeoutError*): is the cluster running*"])


def test_a_closed_port_is_refused(pytester: pytest.Pytester, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    path = kubeconfig(tmp_path / "config", f"https://127.0.0.1:{port}")
    pytester.makepyfile(USES_CLUSTER)
    result = pytester.runpytest("--nginmesh-cluster=existing", f"--nginmesh-kubeconfig={path}")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unreachable (*Connection*refused*)*"])
