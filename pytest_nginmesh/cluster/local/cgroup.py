"""The cgroup that owns every process of a local cluster: teardown kills what it holds, never a guess.

A cluster's daemon starts in ``<cgroup2>/nginmesh/<cluster>/daemon`` and each container in
``<cgroup2>/nginmesh/<cluster>/pods/<pod uid>/<container>``, as a real kubelet gives each container a cgroup.
Every process they fork stays in that cgroup (a daemonising NGINX included), so killing a cgroup kills
exactly that container, and killing the cluster's kills exactly that cluster, whatever command lines say.
No controller is enabled: the cgroups only group processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from ...errors import ClusterError, PreflightError

ROOT_NAME = "nginmesh"
FALLBACK_MOUNT = Path("/run/nginmesh-cgroup2")
_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


def cgroup2_mount() -> Path:
    """Where the unified (v2) hierarchy is mounted; mounted under /run when the host has none (cgroup v1)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split(" - ", 1)
        if len(fields) == 2 and fields[1].split()[0] == "cgroup2":
            return Path(fields[0].split()[4])
    FALLBACK_MOUNT.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "cgroup2", "cgroup2", str(FALLBACK_MOUNT)], capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise PreflightError(f"no cgroup2 hierarchy and none can be mounted ({result.stderr.strip()}): "
                             "the local cluster needs cgroup v2 (Linux 4.5 or later, as root)")
    return FALLBACK_MOUNT


class Cgroup:
    """One cgroup v2 directory of a cluster."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of_cluster(cls, cluster: str, mount: Path | None = None) -> Cgroup:
        return cls((mount or cgroup2_mount()) / ROOT_NAME / _checked(cluster))

    def child(self, *parts: str) -> Cgroup:
        return Cgroup(self.path.joinpath(*(_checked(p) for p in parts)))

    def __repr__(self) -> str:
        return f"Cgroup({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self) -> Cgroup:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def launch_argv(self, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that its process joins this cgroup before it execs, so nothing escapes."""
        return ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        """Every process in this cgroup and the cgroups below it."""
        found: list[int] = []
        if not self.path.is_dir():
            return found
        for procs in sorted(self.path.rglob("cgroup.procs")):
            with contextlib.suppress(OSError):
                found += [int(pid) for pid in procs.read_text().split()]
        return found

    def populated(self) -> bool:
        try:
            events = (self.path / "cgroup.events").read_text()
        except OSError:
            return False
        return "populated 1" in events.split("\n")

    def cpu_seconds(self) -> float:
        """CPU time the processes of this cgroup and below have used, exited ones included (cpu.stat usage_usec);
        0.0 once the cgroup is gone."""
        try:
            fields = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines() if line)
        except OSError:
            return 0.0
        return int(fields.get("usage_usec", 0)) / 1e6

    def kill(self, timeout: float) -> list[int]:
        """SIGKILL every process of this cgroup and below, and wait until none is left; return their pids."""
        victims = self.pids()
        if not victims and not self.populated():
            return []
        kill_file = self.path / "cgroup.kill"
        deadline = time.monotonic() + timeout
        while True:
            if kill_file.exists():
                with contextlib.suppress(OSError):
                    kill_file.write_text("1")
            else:  # before Linux 5.14: signal each member; a fork in between is caught on the next round
                for pid in self.pids():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if not self.populated():
                return victims
            if time.monotonic() > deadline:
                raise ClusterError(f"processes {self.pids()} of {self.path} do not die within {timeout:g}s")
            time.sleep(0.02)

    def signal(self, signum: int) -> None:
        """Send a signal to every process of this cgroup and below (SIGTERM before the grace period ends)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def remove(self, timeout: float) -> list[int]:
        """Kill what is left and remove this cgroup and those below it; gone already is fine."""
        if not self.path.is_dir():
            return []
        victims = self.kill(timeout)
        deadline = time.monotonic() + timeout
        for directory in [*sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)),
                          self.path]:
            _rmdir(directory, deadline)
        with contextlib.suppress(OSError):  # the shared parent goes with the last cluster
            self.path.parent.rmdir()
        return victims


def _rmdir(directory: Path, deadline: float) -> None:
    """rmdir a cgroup; EBUSY while the kernel still releases a killed task's membership is retried."""
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise ClusterError(f"cannot remove cgroup {directory}: {e.strerror}") from e
            time.sleep(0.02)


def _checked(part: str) -> str:
    if not _PART.match(part):
        raise ClusterError(f"bad cgroup name {part!r}: lowercase letters, digits, '.', '_' and '-' only")
    return part
