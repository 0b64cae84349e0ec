"""Bringing a local cluster up and down, and clearing what a crashed one left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ...errors import ClusterError
from ...settings import Settings
from ..base import wait_for
from . import network, system
from .api import ApiClient

DAEMON_MODULE = "pytest_nginmesh.cluster.local.apiserver"


def addresses_of(settings: Settings) -> network.Addresses:
    return network.Addresses(settings.pod_cidr, settings.service_cidr, settings.link_cidr)


def api_client(settings: Settings) -> ApiClient:
    return ApiClient(settings.state_dir / "api.sock", settings.timeouts.api_request)


def is_running(settings: Settings) -> bool:
    if not (settings.state_dir / "api.sock").exists():
        return False
    try:
        api_client(settings).get("/healthz")
    except ClusterError:
        return False
    return True


def daemon_pid(state_dir: Path) -> int | None:
    """The daemon's pid if it is alive and really our daemon for this state dir."""
    try:
        pid = int((state_dir / "daemon.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if DAEMON_MODULE.encode() in cmdline and str(state_dir).encode() in cmdline else None


def up(settings: Settings) -> bool:
    """Start the cluster's network and daemon; False when one of that name was already running."""
    system.require_root()
    if is_running(settings):
        return False
    addresses = addresses_of(settings)
    link = network.host_link(settings.cluster_name)
    system.preflight([settings.pod_cidr, settings.service_cidr, settings.link_cidr], own_links=[link])
    down(settings)
    state = settings.state_dir
    state.mkdir(parents=True)
    info = {
        "name": settings.cluster_name,
        "addresses": {"pod_cidr": settings.pod_cidr, "service_cidr": settings.service_cidr,
                      "link_cidr": settings.link_cidr},
        "node_ip": addresses.node_ip,
        "host_ip": addresses.host_ip,
        "grace": settings.timeouts.termination_grace,
    }
    (state / "cluster.json").write_text(json.dumps(info, indent=2))
    try:
        network.NodeNetwork(settings.cluster_name, addresses, settings.timeouts.termination_grace).create(
            [settings.pod_cidr, settings.service_cidr])
        with (state / "daemon.log").open("ab") as log:
            process = subprocess.Popen([sys.executable, "-m", DAEMON_MODULE, "--state-dir", str(state)],
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        (state / "daemon.pid").write_text(str(process.pid))

        def probe() -> tuple[bool | None, str]:
            if process.poll() is not None:
                tail = (state / "daemon.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise ClusterError(f"the local cluster daemon exited at start: {' | '.join(tail)}")
            return (True, "") if is_running(settings) else (None, "API socket not answering")

        wait_for("the local cluster's API server", probe, settings.timeouts.cluster_up)
    except BaseException:
        down(settings)
        raise
    return True


def down(settings: Settings) -> list[str]:
    """Stop the daemon and remove every namespace, link, file and process of the cluster; say what went."""
    system.require_root()
    removed: list[str] = []
    state = settings.state_dir
    pid = daemon_pid(state)
    if pid is not None:
        _stop_daemon(pid, settings.timeouts.teardown)
        removed.append(f"daemon {pid}")
    removed += network.remove_leftovers(settings.cluster_name, settings.timeouts.termination_grace)
    strays = marked_processes(state)
    for stray, command in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stray, signal.SIGKILL)
        removed.append(f"process {stray} {command}")
    # SIGKILL is delivered asynchronously: a process may still finish a mkdir in the state directory after
    # kill() returned, so the directory is removed only once they are all gone.
    _wait_gone([stray for stray, _ in strays], settings.timeouts.termination_grace)
    if state.exists():
        shutil.rmtree(state)
        removed.append(f"dir {state}")
        with contextlib.suppress(OSError):
            state.parent.rmdir()
    return removed


def _stop_daemon(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid)
                                              for pid in pids):
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def leftovers(settings: Settings) -> list[str]:
    """Everything of this cluster that still exists on the host: empty after a clean teardown."""
    found = [f"netns {n}" for n in system.netns_list() if n.startswith(network.netns_prefix(settings.cluster_name))]
    link = network.host_link(settings.cluster_name)
    if system.link_exists(link):
        found.append(f"link {link}")
    if network.ETC_NETNS.is_dir():
        found += [f"dir {d}" for d in network.ETC_NETNS.glob(network.netns_prefix(settings.cluster_name) + "*")]
    if settings.state_dir.exists():
        found.append(f"dir {settings.state_dir}")
    ranges = [settings.pod_cidr, settings.service_cidr, settings.link_cidr]
    for route in system.host_routes():
        if route.get("dst") in ranges or route.get("dev") == link:
            found.append(f"route {route.get('dst')} dev {route.get('dev')}")
    found += [f"process {pid} {command}" for pid, command in marked_processes(settings.state_dir)]
    return found


def marked_processes(state_dir: Path) -> list[tuple[int, str]]:
    """Processes whose command line or environment names the state dir: the cluster's own."""
    marker = str(state_dir).encode()
    found = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (pid_dir / "cmdline").read_bytes()
            environ = (pid_dir / "environ").read_bytes()
        except OSError:
            continue
        if int(pid_dir.name) != os.getpid() and (marker in cmdline or marker in environ):
            found.append((int(pid_dir.name), cmdline.replace(b"\0", b" ").decode(errors="replace")[:80]))
    return found
