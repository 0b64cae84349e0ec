"""Running host commands, and the preflight that says whether this host can run a local cluster."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence

from ...errors import ClusterError, PreflightError

REQUIRED_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-save": "iptables",
    "iptables-restore": "iptables",
    "nginx": "nginx",
    "setpriv": "util-linux",
    "nsenter": "util-linux",
}


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0, input: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run a host command; a failure raises ClusterError with the command and its stderr."""
    try:
        result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise ClusterError(f"{' '.join(argv)}: no answer within {timeout:g}s") from e
    except FileNotFoundError as e:
        raise PreflightError(f"{argv[0]} is not installed: run scripts/setup-host") from e
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise ClusterError(f"{' '.join(argv)} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result


def require_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError("the local cluster needs root (network namespaces, iptables): run as root or with sudo")


def preflight(ranges: Iterable[str], own_links: Iterable[str] = ()) -> None:
    """Refuse to start unless we are root, every tool is there and no host route overlaps our ranges."""
    require_root()
    missing = sorted({package for tool, package in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise PreflightError(
            f"missing host packages: {', '.join(missing)}; install them with scripts/setup-host "
            f"(apt-get install {' '.join(missing)})"
        )
    clash = find_route_clash(ranges, host_routes(), set(own_links))
    if clash:
        raise PreflightError(clash)


def host_routes() -> list[dict[str, str]]:
    output = run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout
    return list(json.loads(output or "[]"))


def find_route_clash(ranges: Iterable[str], routes: list[dict[str, str]], own_links: set[str]) -> str | None:
    """The first host route overlapping one of our ranges, as a message naming the fix; None when clear."""
    networks = [ipaddress.IPv4Network(r) for r in ranges]
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") in own_links or route.get("type") in ("local", "broadcast"):
            continue
        try:
            routed = ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        for network in networks:
            if network.overlaps(routed):
                return (
                    f"range {network} clashes with the host route {dst} dev {route.get('dev', '?')}: "
                    "choose other ranges (--pod-cidr/--service-cidr/--link-cidr or PYTEST_NGINMESH_POD_CIDR, ...)"
                )
    return None


def netns_list() -> list[str]:
    output = run(["ip", "-j", "netns", "list"]).stdout.strip()
    return [entry["name"] for entry in json.loads(output or "[]")]


def netns_pids(name: str) -> list[int]:
    result = run(["ip", "netns", "pids", name], check=False)
    return [int(pid) for pid in result.stdout.split()]


def kill_netns_processes(name: str, grace: float) -> None:
    """SIGTERM every process in the namespace, then SIGKILL what is left after the grace period."""
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    while True:
        pids = netns_pids(name)
        if not pids:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.1)
        if sig == signal.SIGKILL and time.monotonic() > deadline + 5:
            raise ClusterError(f"processes {pids} in network namespace {name} do not die")


def delete_netns(name: str, grace: float) -> None:
    kill_netns_processes(name, grace)
    run(["ip", "netns", "delete", name], check=False)


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0
