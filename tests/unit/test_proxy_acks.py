"""Who may ack a proxy config: the peer credentials of the API socket, network namespace identity and process
identity (pytest_nginmesh.cluster.local.apiserver), on real sockets and real processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from pytest_nginmesh.cluster.local.apiserver import in_network_namespace, peer_credentials, process_identity


def test_peer_credentials_name_the_connecting_process() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peer_credentials(left) == (os.getpid(), os.getuid(), os.getgid())


def test_peer_credentials_of_another_process(tmp_path: object) -> None:
    path = f"{tmp_path}/api.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        child = subprocess.Popen([sys.executable, "-c", "import socket, sys, time; s = socket.socket(socket.AF_UNIX); "
                                  "s.connect(sys.argv[1]); time.sleep(30)", path])
        try:
            connection, _ = server.accept()
            with connection:
                assert peer_credentials(connection)[0] == child.pid
        finally:
            child.kill()
            child.wait()


def test_a_namespace_that_does_not_exist_is_never_the_peers() -> None:
    assert not in_network_namespace(os.getpid(), "nm_nosuchcluster_default_nosuchpod")


def test_a_name_that_leaves_the_netns_directory_is_refused() -> None:
    # /run/netns/../../proc/<pid>/ns/net would be the peer's own namespace: the path guard refuses it first.
    assert not in_network_namespace(os.getpid(), f"../../proc/{os.getpid()}/ns/net")


def test_process_identity_of_a_live_process_has_its_start_time() -> None:
    pid, started = process_identity(os.getpid())
    assert pid == os.getpid()
    assert started.isdigit()
    assert process_identity(os.getpid()) == (pid, started)


def test_process_identity_is_empty_once_the_process_is_a_zombie_or_gone() -> None:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "true did not exit within 10 s"
        time.sleep(0.01)
    assert process_identity(child.pid) == (child.pid, "")  # exited, not yet reaped
    child.wait()
    assert process_identity(child.pid) == (child.pid, "")
