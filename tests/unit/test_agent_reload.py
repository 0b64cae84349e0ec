"""The agent reports a config only when NGINX really runs it: new workers up, every old one not accepting."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_nginmesh.workloads.agent import shutting_down, worker_pids

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    port = free_port()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"worker_processes 1; pid {tmp_path}/nginx.pid; events {{}}\n"
        f"http {{ client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy; "
        f"fastcgi_temp_path {tmp_path}/fastcgi; uwsgi_temp_path {tmp_path}/uwsgi; scgi_temp_path {tmp_path}/scgi; "
        f"access_log off; server {{ listen 127.0.0.1:{port}; return 204; }} }}\n")
    process = subprocess.Popen(["nginx", "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf"),
                                "-g", "daemon off;"])
    deadline = time.monotonic() + 5
    while not worker_pids(process.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_after_a_reload_new_workers_start_and_old_ones_stop_accepting(nginx: subprocess.Popen[bytes]) -> None:
    old = worker_pids(nginx.pid)
    assert old and not any(shutting_down(pid) for pid in old), "running workers accept"
    nginx.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        current = worker_pids(nginx.pid)
        if current - old and all(shutting_down(pid) for pid in current & old):
            break
        time.sleep(0.005)
    else:
        pytest.fail("the reload never completed")
    assert current - old, "new workers run the new config"


def test_a_vanished_worker_counts_as_not_accepting() -> None:
    assert shutting_down(2**22 + 12345)
