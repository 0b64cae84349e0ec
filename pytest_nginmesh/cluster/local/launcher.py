"""The container launcher: run as root inside the pod's fresh mount namespace, it builds the container's
filesystem and then execs the container's argv (``setpriv`` first, which drops to its user).

The filesystem is the host's, read-only, seen through an overlay whose writable layer is a tmpfs of the
container's own (so a ``mountPath`` missing on the host can be made without touching the host), with the
pod's volumes bind-mounted at their ``mountPath``, a private ``/tmp`` and ``/dev/shm``, and every cluster's
state directory hidden. The launch spec (JSON, root-only) comes from the kubelet:
``python -I -m pytest_nginmesh.cluster.local.launcher SPEC``.
"""

from __future__ import annotations

import ctypes
import json
import os
import posixpath
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from errno import EINVAL, ENOENT
from pathlib import Path
from typing import Any

# glibc's list of variables it drops for set-uid programs, because they change what code the loader runs
# or where it reads from (glibc sysdeps/generic/unsecvars.h, UNSECURE_ENVVARS); every LD_* goes too.
LOADER_VARIABLES = frozenset({
    "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "LOCPATH", "MALLOC_TRACE",
    "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TZDIR",
})
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_NOATIME, MS_NODIRATIME = 0x20, 0x1000, 0x400, 0x800
MS_REC, MS_PRIVATE, MS_RELATIME, MS_MOVE = 0x4000, 0x40000, 0x200000, 0x2000
MNT_DETACH = 0x2
HOLDING = "/tmp/.nginmesh-volumes"
PER_MOUNT_FLAGS = {"ro": MS_RDONLY, "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC,
                   "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
# pivot_root has no glibc wrapper (man 2 pivot_root); syscall numbers from the kernel's syscall tables.
PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# Left writable: the kernel's own views, and what the launcher mounts fresh for the container.
WRITABLE = ("/proc", "/tmp", "/dev/shm")

_libc = ctypes.CDLL(None, use_errno=True)


class LaunchError(Exception):
    """The container's filesystem cannot be built as its spec asks."""


def program_env(env: Mapping[str, str]) -> dict[str, str]:
    """The env a container's program gets: the container's, without what changes which code the loader runs,
    and with the node's PATH, so no manifest makes the project's programs run a binary of its choosing."""
    kept = {k: v for k, v in env.items() if not k.startswith("LD_") and k not in LOADER_VARIABLES}
    kept["PATH"] = NODE_PATH
    return kept


@dataclass(frozen=True)
class VolumeMount:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class LaunchSpec:
    """What the kubelet hands the launcher: where to stage, what to mount, and what to exec with which env."""

    stage: str
    state_root: str
    hosts_dir: str
    mounts: tuple[VolumeMount, ...]
    working_dir: str
    argv: tuple[str, ...]
    env: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({"stage": self.stage, "state_root": self.state_root, "hosts_dir": self.hosts_dir,
                           "mounts": [m.__dict__ for m in self.mounts], "working_dir": self.working_dir,
                           "argv": list(self.argv), "env": self.env})

    @classmethod
    def from_json(cls, text: str) -> LaunchSpec:
        raw: dict[str, Any] = json.loads(text)
        return cls(raw["stage"], raw["state_root"], raw["hosts_dir"],
                   tuple(VolumeMount(**m) for m in raw["mounts"]), raw["working_dir"], tuple(raw["argv"]),
                   dict(raw["env"]))


def container_path(path: str) -> str:
    """A mountPath or workingDir as an absolute, normalised path; refused when it is not absolute."""
    if not path.startswith("/") or "\0" in path:
        raise LaunchError(f"path {path!r} must be absolute")
    return posixpath.normpath("/" + path.lstrip("/"))


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def b(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    if _libc.mount(b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data)) != 0:
        errno = ctypes.get_errno()
        raise LaunchError(f"mount {source} on {target} ({fstype or 'bind'}): {os.strerror(errno)}")


def _umount(target: str, gone_ok: bool = False) -> None:
    if _libc.umount2(os.fsencode(target), MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        if not (gone_ok and errno in (ENOENT, EINVAL)):
            raise LaunchError(f"umount {target}: {os.strerror(errno)}")


def _pivot_root_here() -> None:
    """Make the current directory the root, and the old root gone (pivot_root(".", ".") then detach it)."""
    number = PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise LaunchError(f"no pivot_root syscall number known for {os.uname().machine}")
    if _libc.syscall(number, b".", b".") != 0:
        raise LaunchError(f"pivot_root: {os.strerror(ctypes.get_errno())}")
    _umount(".")
    os.chdir("/")


@dataclass(frozen=True)
class MountEntry:
    mount_id: int
    parent_id: int
    point: str
    options: str
    fstype: str


def mount_table() -> list[MountEntry]:
    """This mount namespace's mounts, in /proc/self/mountinfo order (a parent before its children)."""
    entries = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        entries.append(MountEntry(int(fields[0]), int(fields[1]), point, fields[5], after.split()[0]))
    return entries


def _below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def build_root(spec: LaunchSpec) -> None:
    """Build the container's filesystem and enter it (this process's mount namespace must be its own)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    state_root = os.path.realpath(spec.state_root)
    stage = os.path.realpath(spec.stage)
    _mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    for part in ("upper", "work", "root"):
        os.mkdir(f"{stage}/{part}", 0o755)
    root = f"{stage}/root"
    _mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={stage}/upper,workdir={stage}/work")
    live_hosts = os.path.isfile(f"{spec.hosts_dir}/hosts")
    table = mount_table()
    root_entry = [e for e in table if e.point == "/"][-1]  # the last of a stack is the one on top
    for entry in table:
        below_root = entry.parent_id == root_entry.mount_id and entry.point != "/"
        # ``ip netns exec`` bound the pod's hosts file on /etc/hosts; the network controller may have replaced
        # that file since (a rename), and binding a mount of an unlinked file fails with ENOENT.
        replaced = live_hosts and entry.point == "/etc/hosts"
        if below_root and not replaced and not _below(entry.point, state_root) and os.path.lexists(root + entry.point):
            _mount(entry.point, root + entry.point, None, MS_BIND | MS_REC)
    if live_hosts:
        _live_hosts_file(root, spec.hosts_dir)
    # Every cluster's state stays hidden: containers reach their cluster through the Kubernetes API only.
    _mount("tmpfs", root + state_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755")
    _mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if os.path.isdir(root + "/dev/shm"):
        _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    # A virtualenv or checkout under /tmp (a wheel tried in a throwaway venv) stays visible, read-only, so the
    # project's own programs still find their interpreter and package behind the private /tmp.
    for path in runtime_paths():
        os.makedirs(root + path, 0o755, exist_ok=True)
        _mount(path, root + path, None, MS_BIND | MS_REC)
        _mount(None, root + path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    # The volumes wait in the private /tmp and move to their mountPath once inside, so that a mountPath is
    # resolved in the container's own tree (its symlinks cannot lead out to the host's).
    os.mkdir(root + HOLDING, 0o700)
    for index, mount in enumerate(spec.mounts):
        os.mkdir(f"{root}{HOLDING}/{index}", 0o700)
        _mount(mount.source, f"{root}{HOLDING}/{index}", None, MS_BIND)
    os.chdir(root)
    _pivot_root_here()
    for table_entry in mount_table():
        if table_entry.fstype == "nsfs":  # other pods' namespaces: nothing a container needs to hold
            _umount(table_entry.point, gone_ok=True)  # a pod of another cluster may have just gone
    writable = list(WRITABLE)
    for index, mount in sorted(enumerate(spec.mounts), key=lambda item: container_path(item[1].target).count("/")):
        target = os.path.realpath(_make_mount_point(container_path(mount.target)))
        _mount(f"{HOLDING}/{index}", target, None, MS_MOVE)
        if mount.read_only:
            _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        else:
            writable.append(target)
    for index in range(len(spec.mounts)):
        os.rmdir(f"{HOLDING}/{index}")
    os.rmdir(HOLDING)
    for entry in mount_table():
        if any(_below(entry.point, w) for w in writable) or not os.path.lexists(entry.point):
            continue
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        for option in entry.options.split(","):
            flags |= PER_MOUNT_FLAGS.get(option, 0)
        _mount(None, entry.point, None, flags)


def runtime_paths() -> list[str]:
    """Where this interpreter and this package live, when that is inside a directory containers get privately."""
    candidates = {os.path.realpath(p) for p in (sys.prefix, sys.exec_prefix, sys.base_prefix,
                                                os.path.dirname(os.path.realpath(sys.executable)),
                                                str(Path(__file__).resolve().parents[3]))}
    private = [p for p in candidates if any(_below(p, top) for top in ("/tmp", "/dev/shm")) and p not in
               ("/tmp", "/dev/shm")]
    return sorted(p for p in private if not any(p != other and _below(p, other) for other in private))


def _live_hosts_file(root: str, hosts_dir: str) -> None:
    """/etc/hosts as a link into the pod's hosts directory, bind-mounted live: the network controller replaces
    the file as Services come and go, and a bind of the file itself (what ``ip netns exec`` makes) would keep
    showing the one that was there when the container started."""
    os.unlink(root + "/etc/hosts")
    os.makedirs(root + hosts_dir, 0o755, exist_ok=True)
    _mount(hosts_dir, root + hosts_dir, None, MS_BIND)
    os.symlink(f"{hosts_dir}/hosts", root + "/etc/hosts")


def _make_mount_point(target: str) -> str:
    """Create a missing mountPath in the container's own layer, never on a filesystem of the host."""
    missing = []
    existing = target
    while not os.path.lexists(existing):
        missing.append(os.path.basename(existing))
        existing = os.path.dirname(existing)
    if missing:
        own = {os.stat("/").st_dev, os.stat("/tmp").st_dev}
        if os.stat(existing).st_dev not in own:
            raise LaunchError(f"mountPath {target} would be made on a host filesystem ({existing}): "
                              "mount the volume at a path under the container's root or /tmp")
        os.makedirs(target, 0o755)
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -I -m pytest_nginmesh.cluster.local.launcher SPEC.json", file=sys.stderr)
        return 2
    try:
        spec = LaunchSpec.from_json(Path(args[0]).read_text())
        build_root(spec)
        os.chdir(container_path(spec.working_dir))
    except (LaunchError, OSError) as e:
        print(f"launcher: {e}", file=sys.stderr, flush=True)
        return 128
    try:  # a bare command name is looked up on the container's PATH, as a runtime's exec does
        os.execvpe(spec.argv[0], list(spec.argv), program_env(spec.env))
    except OSError as e:
        # the words runc reports (Go's exec.LookPath), and the shell's status for a command it cannot run
        reason = "executable file not found in $PATH" if isinstance(e, FileNotFoundError) else e.strerror
        print(f'launcher: exec: "{spec.argv[0]}": {reason}', file=sys.stderr, flush=True)
        return 127


if __name__ == "__main__":
    sys.exit(main())
