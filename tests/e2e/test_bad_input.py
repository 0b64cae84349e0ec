"""Bad input to 'nginmesh local': one line naming the fix, exit status 2, and nothing half-made."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers import cluster_settings, raw_post, settings_env

from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.cluster.local.node import local_cluster
from pytest_nginmesh.kube import Obj
from pytest_nginmesh.settings import Settings


def run_cli(*args: str, env: dict[str, str] | None = None, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    return subprocess.run([*prefix, sys.executable, "-m", "pytest_nginmesh.cli", "local", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0]


def test_not_root(tmp_path: Path) -> None:
    settings = cluster_settings("nmnoroot", 5)
    result = run_cli("up", env={**settings_env(settings), "PYTEST_NGINMESH_STATE_ROOT": str(tmp_path)}, user=1337)
    assert_one_line_error(result, "needs root", "sudo")


def test_missing_nginx_names_the_package(tmp_path: Path) -> None:
    settings = cluster_settings("nmnonginx", 5)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "iptables", "iptables-save", "iptables-restore", "setpriv", "nsenter"):
        (bin_dir / tool).symlink_to(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip())
    result = run_cli("up", env={**settings_env(settings), "PATH": str(bin_dir)})
    assert_one_line_error(result, "missing host packages: nginx", "scripts/setup-host")
    assert lifecycle.leftovers(settings) == []


def test_range_clash_with_a_host_route_changes_nothing() -> None:
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout)
    settings = cluster_settings("nmclash", 5)
    own = [ipaddress.IPv4Network(settings.service_cidr), ipaddress.IPv4Network(settings.link_cidr)]
    # A pod range over a host route (another cluster's, maybe) that overlaps none of this cluster's other ranges,
    # so the clash with the route is what is refused.
    candidates = (ipaddress.IPv4Network(r["dst"] if "/" in r["dst"] else r["dst"] + "/32", strict=False)
                  for r in routes if r.get("dst") not in (None, "default"))
    clashing = next((n.supernet(new_prefix=min(n.prefixlen, 16)) for n in candidates
                     if not any(n.supernet(new_prefix=min(n.prefixlen, 16)).overlaps(o) for o in own)), None)
    if clashing is None:
        pytest.skip("this host has no non-default IPv4 route to clash with")
    before = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    result = run_cli("up", "--pod-cidr", str(clashing), env=settings_env(settings))
    assert_one_line_error(result, "clashes with the host route", "choose other ranges")
    assert lifecycle.leftovers(settings) == []
    assert subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout == before


def test_unreadable_manifest_file() -> None:
    result = run_cli("apply", "-f", "/nonexistent/rules.yaml")
    assert_one_line_error(result, "no such file")


def test_commands_on_a_cluster_that_is_not_running() -> None:
    settings = cluster_settings("nmabsent", 5)
    result = run_cli("get", "pods", env=settings_env(settings))
    assert result.returncode == 1
    assert "nginmesh local up --name nmabsent" in result.stderr


# -- manifests refused by admission, on a running (bare) cluster ---------------------------------------------------
MIB = 1024 * 1024
LABEL_RULE = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"
SUBDOMAIN_RULE = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
CONFIG_KEY_RULE = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
# "Billion laughs": nine levels of nine aliases each, 9**9 strings once expanded.
ALIAS_BOMB = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a: &a [" + ",".join(["lol"] * 9) + "]\n"
              + "".join(f"  {level}: &{level} [{','.join(['*' + below] * 9)}]\n"
                        for below, level in zip("abcdefgh", "bcdefghi", strict=True)))


@pytest.fixture(scope="module")
def bare_cluster() -> Iterator[Settings]:
    """A cluster of this slot with nothing installed: admission needs no mesh."""
    settings = cluster_settings("nmbadin", 5)
    lifecycle.up(settings)
    try:
        yield settings
    finally:
        lifecycle.down(settings)
    assert lifecycle.leftovers(settings) == []


def pod(name: str = "web", namespace: str = "default", container: str = "app",
        volume: str = "data", mount: str = "data") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": container, "image": "nginx",
                                     "volumeMounts": [{"name": mount, "mountPath": "/data"}]}],
                     "volumes": [{"name": volume, "emptyDir": {}}]}}


def apply_objects(settings: Settings, *objects: Obj, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    return run_cli("apply", "-f", str(manifest), "--no-wait", env=settings_env(settings))


STORED_KINDS = ("Namespace", "Pod", "ConfigMap", "Secret", "Deployment", "Service")


def stored(settings: Settings) -> list[tuple[str, str, str]]:
    cluster = local_cluster(settings)
    try:
        objects = [o for kind in STORED_KINDS for o in cluster.list_objects(kind)]
    finally:
        cluster.close()
    return sorted((o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objects)


@pytest.mark.parametrize(("bad", "message"), [
    (pod(name="../../../../tmp/nm-escape"),
     f'Pod "../../../../tmp/nm-escape" is invalid: metadata.name: Invalid value: "../../../../tmp/nm-escape": '
     f"{SUBDOMAIN_RULE}"),
    (pod(name="web/../../x"), f'metadata.name: Invalid value: "web/../../x": {SUBDOMAIN_RULE}'),
    (pod(name="p" * 300), f'metadata.name: Invalid value: "{"p" * 300}": must be no more than 253 characters'),
    (pod(name="Web"), f'metadata.name: Invalid value: "Web": {SUBDOMAIN_RULE}'),
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Rel Bad_NS"}},
     f'Namespace "Rel Bad_NS" is invalid: metadata.name: Invalid value: "Rel Bad_NS": {LABEL_RULE}'),
    (pod(namespace="Rel Bad_NS"), 'namespaces "Rel Bad_NS" not found'),  # kube-apiserver's NamespaceLifecycle
    (pod(container="../../../log"), f'spec.containers[0].name: Invalid value: "../../../log": {LABEL_RULE}'),
    (pod(volume="../../../etc", mount="../../../etc"), f'spec.volumes[0].name: Invalid value: "../../../etc": '
                                                       f"{LABEL_RULE}"),
    (pod(mount="../../x"), 'spec.containers[0].volumeMounts[0].name: Not found: "../../x"'),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"},
      "data": {"../../sitecustomize.py": "import os"}},
     f'ConfigMap "code" is invalid: [data[../../sitecustomize.py]: Invalid value: "../../sitecustomize.py": '
     f"{CONFIG_KEY_RULE}"),
    ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "stringData": {"a/b": "x"}},
     f'Secret "keys" is invalid: data[a/b]: Invalid value: "a/b": {CONFIG_KEY_RULE}'),
    ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": "x" * (MIB + 1)}},
     'ConfigMap "big" is invalid: : Too long: must have at most 1048576 bytes'),
], ids=["pod-traversal", "pod-slash", "pod-300", "pod-upper", "namespace-space", "pod-namespace", "container",
        "volume", "mount", "configmap-key", "secret-key", "configmap-1mib"])
def test_a_name_that_would_reach_a_path_is_refused_and_nothing_is_stored(
        bare_cluster: Settings, tmp_path: Path, bad: Obj, message: str) -> None:
    before = stored(bare_cluster)
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine"}, "data": {"a": "b"}}
    result = apply_objects(bare_cluster, good, bad, tmp_path=tmp_path)
    assert_one_line_error(result, message)
    assert stored(bare_cluster) == before, "a refused file must store nothing"
    assert not (bare_cluster.state_dir / "pods").exists() or not any((bare_cluster.state_dir / "pods").iterdir())


def test_a_valid_manifest_still_applies(bare_cluster: Settings, tmp_path: Path) -> None:
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"nginx.conf": "x" * (MIB - 1000), "app.properties": "y"}}
    result = apply_objects(bare_cluster, good, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configmap/default/settings created" in result.stdout
    assert run_cli("delete", "-f", str(tmp_path / "manifest.yaml"), "--no-wait",
                   env=settings_env(bare_cluster)).returncode == 0


@pytest.mark.parametrize(("text", "message"), [
    (ALIAS_BOMB, "aliases expand to more than 100000 extra nodes (an alias bomb?)"),
    ("[" * 100_000 + "]" * 100_000, "nests deeper than 100 levels"),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: huge}\ndata:\n  a: " + "x" * (50 * MIB) + "\n",
     "holds more than 3145728 bytes"),
], ids=["alias-bomb", "deep", "50mb-configmap"])
def test_bombs_are_one_line_and_exit_2_before_the_cluster_sees_them(bare_cluster: Settings, tmp_path: Path,
                                                                   text: str, message: str) -> None:
    manifest = tmp_path / "bomb.yaml"
    manifest.write_text(text)
    before = daemon_peak_rss_kib(bare_cluster)
    result = run_cli("apply", "-f", str(manifest), env=settings_env(bare_cluster))
    assert_one_line_error(result, message)
    assert daemon_peak_rss_kib(bare_cluster) == before


def daemon_peak_rss_kib(settings: Settings) -> int:
    pid = lifecycle.daemon_pid(settings)
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def post_raw(settings: Settings, body: bytes) -> tuple[int, Obj]:
    """A raw POST to the cluster's Kubernetes API, with the server, CA and token of its kubeconfig."""
    config = yaml.safe_load((settings.state_dir / "kubeconfig").read_text())
    server = urllib.parse.urlsplit(config["clusters"][0]["cluster"]["server"])
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cadata=ca)
    assert server.hostname is not None and server.port is not None
    connection = context.wrap_socket(socket.create_connection((server.hostname, server.port), timeout=60),
                                     server_hostname=server.hostname)
    return raw_post(connection, "/api/v1/namespaces/default/configmaps", token, body)


def test_the_daemon_refuses_oversize_and_deep_bodies_and_its_memory_stays_bounded(bare_cluster: Settings) -> None:
    before = daemon_peak_rss_kib(bare_cluster)
    huge = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"}, "data": {"a": "x" * (50 * MIB)}}
    status, answer = post_raw(bare_cluster, json.dumps(huge).encode())
    assert (status, answer["reason"]) == (413, "RequestEntityTooLarge")
    assert answer["message"] == "Request entity too large: limit is 3145728"
    deep = {**huge, "metadata": {"name": "deep"}, "data": "DEEP"}
    status, answer = post_raw(bare_cluster, json.dumps(deep).encode().replace(b'"DEEP"', b"[" * 500 + b"]" * 500))
    assert (status, answer["reason"]) == (422, "Invalid") and "nests deeper than 100 levels" in answer["message"]
    status, answer = post_raw(bare_cluster, b"[" * 100_000 + b"]" * 100_000)
    assert (status, answer["reason"]) == (400, "BadRequest") and len(answer["message"].splitlines()) == 1
    grown_mib = (daemon_peak_rss_kib(bare_cluster) - before) / 1024
    assert grown_mib < 32, f"the daemon's peak RSS grew by {grown_mib:.0f} MiB"
    cluster = local_cluster(bare_cluster)
    try:
        assert [cluster.get("ConfigMap", name, "default") for name in ("huge", "deep")] == [None, None]
    finally:
        cluster.close()
    assert lifecycle.is_running(bare_cluster)
