"""Bad input to 'nginmesh local': one line naming the fix, exit status 2, and nothing half-made."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cluster_settings, settings_env

from pytest_nginmesh.cluster.local import lifecycle


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
    taken = next((r["dst"] for r in routes if r.get("dst") not in (None, "default")), None)
    if taken is None:
        pytest.skip("this host has no non-default IPv4 route to clash with")
    network = ipaddress.IPv4Network(taken if "/" in taken else taken + "/32", strict=False)
    settings = cluster_settings("nmclash", 5)
    before = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    result = run_cli("up", "--pod-cidr", str(network.supernet(new_prefix=min(network.prefixlen, 16))),
                     env=settings_env(settings))
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
