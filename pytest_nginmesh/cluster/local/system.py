"""Running host commands, private state files, and the preflight that says whether this host can run a local cluster."""

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
from pathlib import Path

from ...errors import ClusterError, PreflightError

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
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
    """Kill the namespace's processes and delete it; one already gone is fine, one that stays is an error."""
    kill_netns_processes(name, grace)
    result = run(["ip", "netns", "delete", name], check=False)
    if result.returncode != 0 and name in netns_list():
        raise ClusterError(f"ip netns delete {name} failed: {result.stderr.strip()}")


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def delete_link(name: str) -> bool:
    """Delete a link; False when it was already gone (deleting a namespace takes its veth peer with it,
    asynchronously, so "Cannot find device" is an expected answer, not a failure)."""
    result = run(["ip", "link", "delete", name], check=False)
    if result.returncode == 0:
        return True
    if link_exists(name):
        raise ClusterError(f"ip link delete {name} failed: {result.stderr.strip()}")
    return False


def make_private_dir(path: Path, mode: int = PRIVATE_DIR_MODE) -> None:
    """Create a directory (and its missing parents) that only root may list; an existing one is made so."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    path.chmod(mode)


def write_private(path: Path, data: str | bytes) -> None:
    """Replace a file atomically with one readable by root only: the mode is set before any content lands."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, PRIVATE_FILE_MODE)  # O_CREAT's mode is masked by the umask, ignored for an old file
            out.write(data.encode() if isinstance(data, str) else data)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
