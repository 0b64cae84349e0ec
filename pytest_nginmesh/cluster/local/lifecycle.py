"""Bringing a local cluster up (all or nothing) and down (exactly what it made), and saying what is left.

A cluster is what it recorded: its state directory (``cluster.json`` with the options it was started with,
``daemon.pid``, ``complete`` once it is whole), its cgroup (every process it started, forks included), the
network namespaces and ``/etc/netns`` entries named with its prefix, and its host link with the routes on it.
Teardown touches those and nothing else: never a process found by matching strings.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from ...errors import ClusterError, NginmeshError, UsageError
from ...settings import Settings
from ..base import wait_for
from ..kubeapi import KubeApi, choose_kubeconfig
from . import network, system
from .apiserver import KUBECONFIG
from .cgroup import Cgroup

DAEMON_MODULE = "pytest_nginmesh.cluster.local.apiserver"
# 0711, not 0700, while containers still reach their volumes by host paths below the state directory (the
# sidecar's NGINX runs as uid 1337): others may pass through but not list, and every file here is 0600.
STATE_DIR_MODE = 0o711
COMPLETE_MARK = "complete"
START_LOCK = "up.lock"

Progress = Callable[[str], None]


class StartConflict(UsageError):
    """Another process is starting a cluster of this name right now."""

    def __init__(self, cluster: str) -> None:
        super().__init__(f"cluster {cluster} is being started by another process: wait for it, "
                         f"or remove it with 'nginmesh local down --name {cluster}'")


def addresses_of(settings: Settings) -> network.Addresses:
    return network.Addresses(settings.pod_cidr, settings.service_cidr, settings.link_cidr)


def cluster_cgroup(settings: Settings) -> Cgroup:
    return Cgroup.of_cluster(settings.cluster_name)


def is_running(settings: Settings) -> bool:
    """The cluster's Kubernetes API answers /healthz through the kubeconfig it wrote (its own CA: another
    cluster's server on a reused port fails verification)."""
    kubeconfig = settings.state_dir / KUBECONFIG
    if not kubeconfig.exists():
        return False
    try:
        KubeApi(choose_kubeconfig(kubeconfig, None), settings.timeouts.api_request).request(
            "GET", "/healthz", raw=True)
    except NginmeshError:
        return False
    return True


def is_complete(settings: Settings) -> bool:
    """The cluster was finished (mesh installed and serving, or a bare cluster up) and its daemon answers."""
    return (settings.state_dir / COMPLETE_MARK).exists() and is_running(settings)


def recorded_options(settings: Settings, mesh: bool) -> dict[str, object]:
    """What ``cluster.json`` records of how a cluster was asked for; another ``up`` must ask the same."""
    return {"pod_cidr": settings.pod_cidr, "service_cidr": settings.service_cidr,
            "link_cidr": settings.link_cidr, "mesh": mesh}


def daemon_pid(settings: Settings) -> int | None:
    """The daemon's recorded pid, if that process is alive in the cluster's daemon cgroup."""
    try:
        pid = int((settings.state_dir / "daemon.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid in cluster_cgroup(settings).child("daemon").pids() else None


@contextlib.contextmanager
def building(settings: Settings, *, mesh: bool, progress: Progress = lambda line: None) -> Iterator[bool]:
    """A cluster, all or nothing. Yields False when a complete cluster of that name runs with the same options
    (it is adopted as it is); otherwise removes whatever a half-made one left, starts a new one and yields True,
    and the body finishes it (installs the mesh). Only when the body returns is the cluster marked complete;
    if anything raises or interrupts (Ctrl-C, or SIGTERM made an exception), everything is removed again."""
    system.require_root()
    if _adoptable(settings, mesh):
        yield False
        return
    if settings.state_dir.exists():
        progress(f"cluster {settings.cluster_name} is half-made (interrupted, or its daemon died): rebuilding it")
    system.preflight([settings.pod_cidr, settings.service_cidr, settings.link_cidr],
                     own_links=[network.host_link(settings.cluster_name)])
    lock: int | None = None
    try:
        lock = _claim(settings)
        progress(f"starting local cluster {settings.cluster_name}")
        _start(settings, mesh)
        yield True
        system.write_private(settings.state_dir / COMPLETE_MARK, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    except StartConflict:
        raise
    except BaseException:
        progress(f"removing the half-made cluster {settings.cluster_name}")
        with signals_held():
            down(settings)
        raise
    finally:
        if lock is not None:
            os.close(lock)


def up(settings: Settings) -> bool:
    """Start a bare cluster (network and daemon); False when a complete one of that name already runs."""
    with building(settings, mesh=False) as started:
        return started


def _adoptable(settings: Settings, mesh: bool) -> bool:
    name = settings.cluster_name
    if not settings.state_dir.exists():
        return False
    if _start_lock_held(settings.state_dir):
        raise StartConflict(name)
    if not is_complete(settings):
        return False  # half-made (interrupted, killed, or its daemon died): rebuilt, never adopted
    try:
        recorded = json.loads((settings.state_dir / "cluster.json").read_text()).get("options", {})
    except (OSError, ValueError):
        return False
    wanted = recorded_options(settings, mesh)
    differences = [f"{_shown(key, recorded.get(key))}, not {_shown(key, value)}"
                   for key, value in wanted.items() if recorded.get(key) != value]
    if differences:
        raise UsageError(f"cluster {name} already runs {'; '.join(differences)}: remove it first with "
                         f"'nginmesh local down --name {name}', or ask for it as it is")
    return True


def _shown(key: str, value: object) -> str:
    if key == "mesh":
        return "with the mesh" if value else "bare (--bare)"
    return f"with {key} {value}"


def _start_lock_held(state: Path) -> bool:
    try:
        fd = os.open(state / START_LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _claim(settings: Settings) -> int:
    """Clear what a cluster of this name left, then make its state dir holding the start lock; return the lock."""
    down(settings)
    state = settings.state_dir
    for attempt in range(3):  # the last cluster's teardown elsewhere may remove the shared root meanwhile
        system.make_private_dir(state.parent, STATE_DIR_MODE)
        try:
            state.mkdir(mode=STATE_DIR_MODE)
            break
        except FileExistsError:
            raise StartConflict(settings.cluster_name) from None
        except FileNotFoundError:
            if attempt == 2:
                raise
    state.chmod(STATE_DIR_MODE)
    lock = os.open(state / START_LOCK, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, system.PRIVATE_FILE_MODE)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _start(settings: Settings, mesh: bool) -> None:
    addresses = addresses_of(settings)
    info = {
        "name": settings.cluster_name,
        "options": recorded_options(settings, mesh),
        "addresses": {"pod_cidr": settings.pod_cidr, "service_cidr": settings.service_cidr,
                      "link_cidr": settings.link_cidr},
        "node_ip": addresses.node_ip,
        "host_ip": addresses.host_ip,
        "grace": settings.timeouts.termination_grace,
    }
    system.write_private(settings.state_dir / "cluster.json", json.dumps(info, indent=2))
    network.NodeNetwork(settings.cluster_name, addresses, settings.timeouts.termination_grace).create(
        [settings.pod_cidr, settings.service_cidr])
    _start_daemon(settings)


def _start_daemon(settings: Settings) -> None:
    state = settings.state_dir
    argv = cluster_cgroup(settings).child("daemon").create().launch_argv(
        [sys.executable, "-m", DAEMON_MODULE, "--state-dir", str(state)])
    log_fd = os.open(state / "daemon.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                     system.PRIVATE_FILE_MODE)
    with os.fdopen(log_fd, "ab") as log:
        os.fchmod(log_fd, system.PRIVATE_FILE_MODE)
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    system.write_private(state / "daemon.pid", str(process.pid))

    def probe() -> tuple[bool | None, str]:
        if process.poll() is not None:
            tail = (state / "daemon.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise ClusterError(f"the local cluster daemon exited at start: {' | '.join(tail)}")
        return (True, "") if is_running(settings) else (None, "the Kubernetes API not answering")

    wait_for("the local cluster's API server", probe, settings.timeouts.cluster_up)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM ignored while a cluster is removed, so that a second one cannot cut teardown short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def down(settings: Settings) -> list[str]:
    """Remove everything the cluster made, step by step; say what went.

    Each step tolerates what is already gone and the next step runs even when one fails; failures are raised
    together at the end (a ClusterError naming them and what is still there).
    """
    system.require_root()
    name = settings.cluster_name
    removed: list[str] = []
    failures: list[str] = []

    def step(what: str, action: Callable[[], list[str]]) -> None:
        try:
            removed.extend(action())
        except (NginmeshError, OSError) as e:
            failures.append(f"{what}: {e}")

    step("daemon", functools.partial(_stop_daemon, settings))
    step("cgroup", functools.partial(_remove_cgroup, settings))
    try:
        namespaces = network.own_namespaces(name)
    except NginmeshError as e:
        namespaces = []
        failures.append(f"network namespaces: {e}")
    for netns in namespaces:
        step(f"netns {netns}", functools.partial(_delete_netns, netns, settings.timeouts.termination_grace))
    step("host link", functools.partial(_delete_link, network.host_link(name)))
    for directory in network.own_hosts_dirs(name):
        step(f"dir {directory}", functools.partial(_remove_hosts_dir, directory))
    step(f"dir {settings.state_dir}", functools.partial(_remove_state_dir, settings.state_dir))
    if failures:
        left = leftovers(settings)
        raise ClusterError(f"down of cluster {name} did not finish ({'; '.join(failures)}); "
                           f"still there: {', '.join(left) or 'nothing'}")
    return removed


def _delete_netns(netns: str, grace: float) -> list[str]:
    system.delete_netns(netns, grace)
    return [f"netns {netns}"]


def _delete_link(link: str) -> list[str]:
    return [f"link {link}"] if system.delete_link(link) else []


def _remove_hosts_dir(directory: Path) -> list[str]:
    network.remove_hosts_dir(directory)
    return [f"dir {directory}"]


def _stop_daemon(settings: Settings) -> list[str]:
    """SIGTERM, so the daemon stops its pods itself; SIGKILL after the teardown timeout."""
    pid = daemon_pid(settings)
    if pid is None:
        return []
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + settings.timeouts.teardown
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return [f"daemon {pid}"]
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return [f"daemon {pid} (killed after {settings.timeouts.teardown:g}s)"]


def _is_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _remove_cgroup(settings: Settings) -> list[str]:
    cgroup = cluster_cgroup(settings)
    if not cgroup.exists():
        return []
    killed = cgroup.remove(settings.timeouts.teardown)
    return [f"cgroup {cgroup.path}"] + [f"process {pid}" for pid in killed]


def _remove_state_dir(state: Path) -> list[str]:
    # Every process that could write here was killed with the cgroup and is gone (cgroup.kill waits until
    # the cgroup is empty), so nothing recreates what is removed.
    if not state.exists():
        return []
    shutil.rmtree(state, ignore_errors=True)  # a file vanishing meanwhile is fine; what stays is checked
    if state.exists():
        raise ClusterError(f"could not remove {state}")
    with contextlib.suppress(OSError):  # the shared root goes with the last cluster
        state.parent.rmdir()
    return [f"dir {state}"]


def leftovers(settings: Settings) -> list[str]:
    """Everything of this cluster that still exists on the host: empty after a clean teardown."""
    name = settings.cluster_name
    found = [f"netns {n}" for n in network.own_namespaces(name)]
    link = network.host_link(name)
    if system.link_exists(link):
        found.append(f"link {link}")
    found += [f"dir {d}" for d in network.own_hosts_dirs(name)]
    if settings.state_dir.exists():
        found.append(f"dir {settings.state_dir}")
    found += [f"route {route.get('dst')} dev {link}" for route in system.host_routes() if route.get("dev") == link]
    cgroup = cluster_cgroup(settings)
    if cgroup.exists():
        found.append(f"cgroup {cgroup.path}")
        found += [f"process {pid} {_command(pid)}" for pid in cgroup.pids()]
    return found


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
    except OSError:
        return "(gone)"
