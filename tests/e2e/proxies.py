"""Looking at a pod's proxy from the host: its NGINX master and agent, and who listens on the proxy port.

Processes are found by what the kernel says (their network namespace, their listening sockets), not by
where the kubelet keeps files, so this holds however a container's files are laid out."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_nginmesh.cluster.local.network import pod_netns

PROXY_PORT = 15001
TCP_LISTEN = "0A"


def netns_inode(name: str) -> int:
    return os.stat(f"/run/netns/{name}").st_ino


def processes_in(netns: str) -> list[int]:
    """Every process whose network namespace is the named one."""
    wanted = netns_inode(netns)
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == wanted:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def alive(pid: int) -> bool:
    """Running, i.e. neither gone nor a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def listening_inodes(pid: int, port: int) -> set[int]:
    """Socket inodes of TCP listeners on ``port`` in the network namespace of ``pid``."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(int(fields[9]))
    return inodes


def holders(netns: str, port: int = PROXY_PORT) -> list[int]:
    """Processes of the namespace holding a listening socket on ``port`` (NGINX workers inherit them)."""
    pids = processes_in(netns)
    if not pids:
        return []
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(pids[0], port)}
    holding = []
    for pid in pids:
        try:
            fds = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if wanted & set(fds):
            holding.append(pid)
    return holding


@dataclass(frozen=True)
class Proxy:
    """The sidecar of one pod as processes: its agent and the agent's NGINX master."""

    netns: str
    agent: int
    master: int


def find_proxy(cluster: str, namespace: str, pod: str) -> Proxy | None:
    """The pod's NGINX master that is the child of a live agent, or None while there is none."""
    netns = pod_netns(cluster, namespace, pod)
    for pid in processes_in(netns):
        if command_line(pid).startswith("nginx: master process") and alive(pid):
            agent = parent(pid)
            if "pytest_nginmesh.workloads.agent" in command_line(agent) and alive(agent):
                return Proxy(netns, agent, pid)
    return None


def orphans(proxy_netns: str, current: Proxy | None) -> list[int]:
    """Holders of the proxy port that belong to no live NGINX master of a live agent (leftover workers)."""
    allowed = set() if current is None else {current.master}
    return [pid for pid in holders(proxy_netns) if pid not in allowed and parent(pid) not in allowed]


def kill_master(proxy: Proxy) -> float:
    """SIGKILL the NGINX master; return the monotonic time it was sent."""
    sent = time.monotonic()
    os.kill(proxy.master, signal.SIGKILL)
    return sent
