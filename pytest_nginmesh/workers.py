"""Running under pytest-xdist: one cluster for every worker, torn down once, and a test that needs the mesh alone.

The first worker that needs the mesh enters the usual cluster context (create or reuse) behind a file lock
and owns it; the others enter it after, with ``keep_cluster`` so that they only attach. The owner leaves last:
its session ends by waiting until every other worker that attached has left (or died), then its context
tears down what it made. Every worker after the first tests a Bookinfo of its own in a namespace of its own
(``mesh.bookinfo_instance``), so one worker's route rules never meet another's traffic and tests run side by
side; a test marked ``mesh_exclusive`` (a measurement other traffic would distort) holds the mesh alone, every
other test that uses the mesh holds it shared. Without xdist, none of this happens.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, TypeVar

import pytest

from .settings import Settings

T = TypeVar("T")
WAIT_INTERVAL = 0.2
EXCLUSIVE_MARKER = "mesh_exclusive"
EXCLUSIVE_MARKER_HELP = (f"{EXCLUSIVE_MARKER}: under pytest-xdist, no other worker's mesh test runs while this one "
                         "does (for measurements that other traffic would distort)")


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker."""
    return hasattr(config, "workerinput")


def worker_id(config: pytest.Config) -> str:
    """This worker's id (``gw0``, ``gw1``, …), or "" outside pytest-xdist."""
    return str(getattr(config, "workerinput", {}).get("workerid", ""))


def is_first_worker(config: pytest.Config) -> bool:
    """Whether this process tests the Bookinfo installed with the mesh: without xdist, or as worker ``gw0``."""
    return worker_id(config) in ("", "gw0")


def coordination_path(settings: Settings, suffix: str) -> Path:
    """Where the workers of any run on this host meet for one cluster (kind and name)."""
    return Path(tempfile.gettempdir()) / f"pytest-nginmesh-{settings.cluster}-{settings.cluster_name}.{suffix}"


@contextlib.contextmanager
def locked(path: Path, operation: int = fcntl.LOCK_EX) -> Iterator[IO[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, operation)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Attachments:
    """Which live processes use the shared cluster, and which one owns it (a JSON file, read and written
    only under the cluster's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[int | None, set[int]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None, set()
        owner = data.get("owner")
        users = {pid for pid in data.get("users", []) if alive(pid)}
        return (owner if isinstance(owner, int) and alive(owner) else None), users

    def write(self, owner: int | None, users: set[int]) -> None:
        self.path.write_text(json.dumps({"owner": owner, "users": sorted(users)}))


@contextlib.contextmanager
def shared_cluster(config: pytest.Config, settings: Settings,
                   enter: Callable[[Settings], AbstractContextManager[T]]) -> Iterator[T]:
    """``enter(settings)``'s cluster, shared by the run's xdist workers (just ``enter`` without xdist)."""
    if not is_worker(config):
        with enter(settings) as cluster:
            yield cluster
        return
    me = os.getpid()
    attachments = Attachments(coordination_path(settings, "json"))
    lock = coordination_path(settings, "lock")
    with contextlib.ExitStack() as stack:
        with locked(lock):
            owner, users = attachments.read()
            owning = owner is None
            attach = settings if owning else settings.with_overrides({"keep_cluster": True})
            cluster = stack.enter_context(enter(attach))
            attachments.write(me if owning else owner, users | {me})
        try:
            yield cluster
        finally:
            with locked(lock):
                owner, users = attachments.read()
                attachments.write(owner, users - {me})
            if owning:
                wait_for_others(attachments, lock, me)


def wait_for_others(attachments: Attachments, lock: Path, me: int) -> None:
    """The owner's last act before its teardown: wait until no other live worker uses the cluster."""
    while True:
        with locked(lock):
            _, users = attachments.read()
        if not users - {me}:
            return
        time.sleep(WAIT_INTERVAL)


@contextlib.contextmanager
def mesh_state(config: pytest.Config, settings: Settings, exclusive: bool) -> Iterator[None]:
    """Hold the cluster's mesh-state lock: exclusive for a test that needs the mesh alone, shared otherwise
    (only under xdist). Taken once per test, in one mode: flock locks of one process on two open files
    would block each other. Everyone first passes a turnstile, which a waiting exclusive holder keeps
    closed: flock alone would let shared holders overlap forever and starve it."""
    if not is_worker(config):
        yield
        return
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    with contextlib.ExitStack() as held:
        with locked(coordination_path(settings, "turnstile")):
            held.enter_context(locked(coordination_path(settings, "mesh-state"), mode))
        yield
