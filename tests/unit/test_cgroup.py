"""The cluster cgroup owns every process it launched, forks included, and leaves nothing when removed."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from pytest_nginmesh.cluster.local.cgroup import Cgroup
from pytest_nginmesh.errors import ClusterError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")


@pytest.fixture
def cluster_cgroup() -> Iterator[Cgroup]:
    cgroup = Cgroup.of_cluster(f"unit-{uuid.uuid4().hex[:8]}")
    yield cgroup
    cgroup.remove(5)


def test_a_launched_process_and_its_forks_are_killed_together(cluster_cgroup: Cgroup) -> None:
    container = cluster_cgroup.child("pods", "uid-1", "app").create()
    # The shell forks a background sleep and detaches it into a session of its own, as a daemon would.
    process = subprocess.Popen(container.launch_argv(["sh", "-c", "setsid sleep 300 & sleep 300"]))
    try:
        deadline_pids: list[int] = []
        for _ in range(100):
            deadline_pids = container.pids()
            if len(deadline_pids) >= 3:
                break
            subprocess.run(["sleep", "0.02"])
        assert process.pid in deadline_pids
        assert len(deadline_pids) >= 3, deadline_pids
        killed = cluster_cgroup.kill(5)
        assert set(deadline_pids) <= set(killed)
        assert container.pids() == []
        assert not cluster_cgroup.populated()
    finally:
        process.kill()
        process.wait(5)


def test_remove_leaves_no_directory_and_tolerates_what_is_gone(cluster_cgroup: Cgroup) -> None:
    cluster_cgroup.child("daemon").create()
    cluster_cgroup.child("pods", "uid-2", "proxy").create()
    cluster_cgroup.remove(5)
    assert not cluster_cgroup.exists()
    assert cluster_cgroup.remove(5) == []


def test_another_clusters_cgroup_is_untouched(cluster_cgroup: Cgroup) -> None:
    other = Cgroup.of_cluster(cluster_cgroup.path.name + "-ci").child("daemon").create()
    process = subprocess.Popen(other.launch_argv(["sleep", "300"]))
    try:
        deadline = time.monotonic() + 5
        while process.pid not in other.pids() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process.pid in other.pids()
        cluster_cgroup.child("daemon").create()
        cluster_cgroup.remove(5)
        assert process.poll() is None
    finally:
        # A killed child stays a member until it is reaped: reap it before removing its cgroup.
        Cgroup(other.path.parent).kill(5)
        process.wait(5)
        Cgroup(other.path.parent).remove(5)


@pytest.mark.parametrize("name", ["..", "a/b", "", "Upper", "x" * 200])
def test_names_that_could_leave_the_hierarchy_are_refused(name: str) -> None:
    with pytest.raises(ClusterError, match="bad cgroup name"):
        Cgroup.of_cluster("ok").child(name)
