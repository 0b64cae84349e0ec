"""The container launcher builds a real filesystem view: host read-only, volumes at their mountPath, private
/tmp, state hidden, a clean env; run for real in a fresh mount namespace (``unshare -m``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_nginmesh.cluster.local.launcher import (
    NODE_PATH,
    LaunchError,
    LaunchSpec,
    VolumeMount,
    container_path,
    program_env,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mount namespaces need root")


def test_program_env_drops_what_changes_the_loaded_code_and_keeps_the_rest() -> None:
    env = program_env({"LD_PRELOAD": "/x.so", "LD_LIBRARY_PATH": "/x", "LD_AUDIT": "/a.so", "GCONV_PATH": "/g",
                       "PATH": "/evil", "POD_NAME": "details", "PYTHONPATH": "/etc/inject"})
    assert env == {"PATH": NODE_PATH, "POD_NAME": "details", "PYTHONPATH": "/etc/inject"}


@pytest.mark.parametrize("path", ["relative/dir", "", "etc"])
def test_a_container_path_must_be_absolute(path: str) -> None:
    with pytest.raises(LaunchError, match="must be absolute"):
        container_path(path)


def test_a_container_path_is_normalised_inside_the_root() -> None:
    assert container_path("/etc/../../istio//proxy/") == "/istio/proxy"


@pytest.fixture
def state() -> Iterator[Path]:
    """A state root like /run/nginmesh (not under /tmp, which the container's private /tmp hides): a cluster
    directory with a kubeconfig, and a pod with one volume."""
    root = Path("/run") / f"nmunit-{uuid.uuid4().hex[:8]}"
    pod = root / "unit" / "pods" / "default_p"
    (pod / "containers" / "c").mkdir(parents=True)
    (pod / "volumes" / "config").mkdir(parents=True)
    (pod / "volumes" / "config" / "key").write_text("from the volume\n")
    (pod / "volumes" / "config").chmod(0o1777)
    (root / "unit" / "kubeconfig").write_text("the admin's credentials\n")
    yield root
    shutil.rmtree(root)


def launch(state: Path, script: str, *, uid: int = 1337, mounts: tuple[VolumeMount, ...] | None = None,
           env: dict[str, str] | None = None, hosts_dir: str = "/nonexistent") -> subprocess.CompletedProcess[str]:
    return subprocess.run(launch_argv(state, script, uid, mounts, env, hosts_dir), capture_output=True, text=True,
                          timeout=30)


def launch_argv(state: Path, script: str, uid: int = 1337, mounts: tuple[VolumeMount, ...] | None = None,
                env: dict[str, str] | None = None, hosts_dir: str = "/nonexistent") -> list[str]:
    pod = state / "unit" / "pods" / "default_p"
    if mounts is None:
        mounts = (VolumeMount(str(pod / "volumes" / "config"), "/etc/nmunit-" + uuid.uuid4().hex[:6], False),)
    user = ["/usr/bin/setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"] if uid else []
    spec = LaunchSpec(str(pod / "containers" / "c"), str(state), hosts_dir, mounts, "/",
                      (*user, "/bin/sh", "-c", script), env or {"HOME": "/tmp"})
    spec_file = pod / "containers" / "c.json"
    spec_file.write_text(spec.to_json())
    return ["unshare", "-m", sys.executable, "-I", "-m", "pytest_nginmesh.cluster.local.launcher", str(spec_file)]


@needs_root
def test_a_volume_shows_at_a_mount_path_the_host_lacks_and_nothing_is_made_on_the_host(state: Path) -> None:
    mount_path = f"/etc/nmunit-{uuid.uuid4().hex[:8]}/proxy"
    pod = state / "unit" / "pods" / "default_p"
    mounts = (VolumeMount(str(pod / "volumes" / "config"), mount_path, False),)
    result = launch(state, f"id -u; cat {mount_path}/key; echo written > {mount_path}/out", mounts=mounts)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1337", "from the volume"]
    assert (pod / "volumes" / "config" / "out").read_text() == "written\n"
    assert not Path(mount_path).parent.exists()


@needs_root
def test_the_host_is_read_only_and_tmp_is_private(state: Path) -> None:
    marker = f"nmunit-{uuid.uuid4().hex[:8]}"
    result = launch(state, f"touch /etc/{marker} 2>&1; echo private > /tmp/{marker} && cat /tmp/{marker}", uid=0)
    assert result.returncode == 0, result.stderr
    assert "Read-only file system" in result.stdout
    assert "private" in result.stdout
    assert not Path("/etc", marker).exists()
    assert not Path("/tmp", marker).exists()


@needs_root
def test_a_read_only_volume_cannot_be_written(state: Path) -> None:
    pod = state / "unit" / "pods" / "default_p"
    mounts = (VolumeMount(str(pod / "volumes" / "config"), "/etc/certs/", True),)
    result = launch(state, "cat /etc/certs/key; touch /etc/certs/new 2>&1", uid=0, mounts=mounts)
    assert "from the volume" in result.stdout
    assert "Read-only file system" in result.stdout
    assert not (pod / "volumes" / "config" / "new").exists()


@needs_root
def test_every_clusters_state_is_hidden(state: Path) -> None:
    """Nothing of any cluster's state shows, not even root's own: a container reaches its cluster through the
    Kubernetes API with its service account's token only."""
    result = launch(state, f"find {state} | sort", uid=0)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(state)]


@needs_root
def test_a_mount_path_through_a_symlink_stays_in_the_container(state: Path) -> None:
    # A symlink to an absolute host path: the mount must land in the container's view of that path, and the
    # host directory must stay empty (resolving it on the host would make x there).
    outside = Path("/run") / f"nmunit-out-{uuid.uuid4().hex[:8]}"
    link = Path("/run") / f"nmunit-link-{uuid.uuid4().hex[:8]}"
    outside.mkdir()
    link.symlink_to(outside)
    pod = state / "unit" / "pods" / "default_p"
    try:
        mounts = (VolumeMount(str(pod / "volumes" / "config"), f"{link}/x", False),)
        result = launch(state, f"cat {outside}/x/key && echo writable > {link}/x/new", uid=0, mounts=mounts)
        assert (pod / "volumes" / "config" / "new").read_text() == "writable\n", result.stderr
        assert "from the volume" in result.stdout, result.stderr
        assert list(outside.iterdir()) == []
    finally:
        link.unlink()
        outside.rmdir()


@needs_root
def test_the_loader_and_path_variables_never_reach_the_program(state: Path) -> None:
    env = {"LD_PRELOAD": "/nonexistent/inject.so", "PATH": "/nonexistent", "KEPT": "yes"}
    result = launch(state, 'echo "preload=$LD_PRELOAD path=$PATH kept=$KEPT"', env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"preload= path={NODE_PATH} kept=yes"
    assert "cannot be preloaded" not in result.stderr


@needs_root
def test_a_mount_path_on_a_host_filesystem_is_refused(state: Path) -> None:
    pod = state / "unit" / "pods" / "default_p"
    mounts = (VolumeMount(str(pod / "volumes" / "config"), f"/proc/nmunit-{uuid.uuid4().hex[:6]}", False),)
    result = launch(state, "true", uid=0, mounts=mounts)
    assert result.returncode == 128
    assert "would be made on a host filesystem" in result.stderr


@needs_root
def test_etc_hosts_follows_the_pods_hosts_file_as_it_is_replaced(state: Path) -> None:
    hosts_dir = Path("/run") / f"nmunit-hosts-{uuid.uuid4().hex[:8]}"
    hosts_dir.mkdir()
    (hosts_dir / "hosts").write_text("10.0.0.1\tfirst\n")
    script = ("grep -q first /etc/hosts && echo first; "
              "while ! grep -q second /etc/hosts; do sleep 0.05; done; echo second")
    try:
        process = subprocess.Popen(launch_argv(state, script, hosts_dir=str(hosts_dir)), stdout=subprocess.PIPE,
                                   text=True)
        assert process.stdout is not None
        assert process.stdout.readline() == "first\n"
        (hosts_dir / "hosts.tmp").write_text("10.0.0.2\tsecond\n")
        (hosts_dir / "hosts.tmp").replace(hosts_dir / "hosts")  # as the network controller writes it
        assert process.communicate(timeout=10)[0] == "second\n"
    finally:
        shutil.rmtree(hosts_dir)


@needs_root
def test_a_hosts_file_replaced_after_ip_netns_exec_bound_it_does_not_fail_the_launch(state: Path) -> None:
    # The kubelet starts the launcher through ``ip netns exec``, which binds the pod's hosts file on /etc/hosts;
    # when the network controller replaces that file before the launcher runs, the bind is of an unlinked file.
    hosts_dir = Path("/run") / f"nmunit-hosts-{uuid.uuid4().hex[:8]}"
    hosts_dir.mkdir()
    (hosts_dir / "hosts").write_text("10.0.0.1\tfirst\n")
    (hosts_dir / "hosts.tmp").write_text("10.0.0.2\tsecond\n")
    launcher = launch_argv(state, "cat /etc/hosts", hosts_dir=str(hosts_dir))[2:]
    as_ip_netns_exec = (f"mount --bind {hosts_dir}/hosts /etc/hosts && mv {hosts_dir}/hosts.tmp {hosts_dir}/hosts"
                        ' && exec "$@"')
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c", as_ip_netns_exec, "sh", *launcher],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == "10.0.0.2\tsecond\n"
    finally:
        shutil.rmtree(hosts_dir)


@needs_root
def test_a_bare_command_is_found_on_the_containers_path_and_a_missing_one_exits_127(state: Path) -> None:
    pod = state / "unit" / "pods" / "default_p"
    for command, code in (("true", 0), ("nmunit-no-such-command", 127)):
        spec = LaunchSpec(str(pod / "containers" / "c"), str(state), "/nonexistent", (), "/", (command,), {})
        spec_file = pod / "containers" / "c.json"
        spec_file.write_text(spec.to_json())
        result = subprocess.run(["unshare", "-m", sys.executable, "-I", "-m", "pytest_nginmesh.cluster.local.launcher",
                                 str(spec_file)], capture_output=True, text=True, timeout=30)
        assert result.returncode == code, result.stderr
    assert result.stderr.strip() == 'launcher: exec: "nmunit-no-such-command": executable file not found in $PATH'


def test_a_launch_spec_survives_its_file() -> None:
    spec = LaunchSpec("/s", "/run/nginmesh", "/etc/netns/p",
                      (VolumeMount("/v", "/etc/x", True),), "/", ("/usr/bin/true",), {"A": "1"})
    assert LaunchSpec.from_json(spec.to_json()) == spec
    assert replace(spec, argv=("x",)) != spec
