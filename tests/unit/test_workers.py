"""pytest_nginmesh.workers: who uses the shared cluster, and the mesh-state lock between xdist workers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pytest_nginmesh import workers
from pytest_nginmesh.settings import Settings

SETTINGS = Settings(cluster_name="nmworkers")


@pytest.fixture(autouse=True)
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers.tempfile, "gettempdir", lambda: str(tmp_path))


def a_worker() -> Any:
    return SimpleNamespace(workerinput={"workerid": "gw0", "workercount": 2})


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_attachments_forget_processes_that_are_gone(tmp_path: Path) -> None:
    attachments = workers.Attachments(tmp_path / "a.json")
    assert attachments.read() == (None, set())
    gone = dead_pid()
    attachments.write(gone, {gone, 1})
    assert attachments.read() == (None, {1})


def test_a_torn_attachments_file_reads_as_nobody(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"owner": 1, "us')
    assert workers.Attachments(tmp_path / "a.json").read() == (None, set())


def hold(config: Any, exclusive: bool, events: list[str], name: str, seconds: float) -> threading.Thread:
    def run() -> None:
        with workers.mesh_state(config, SETTINGS, exclusive):
            events.append(f"{name} in")
            time.sleep(seconds)
            events.append(f"{name} out")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_shared_holders_overlap() -> None:
    events: list[str] = []
    first = hold(a_worker(), False, events, "a", 0.3)
    time.sleep(0.05)
    second = hold(a_worker(), False, events, "b", 0.05)
    first.join()
    second.join()
    assert events == ["a in", "b in", "b out", "a out"]


def test_an_exclusive_holder_waits_for_the_shared_one_and_goes_before_later_ones() -> None:
    events: list[str] = []
    reader = hold(a_worker(), False, events, "reader", 0.3)
    time.sleep(0.05)
    writer = hold(a_worker(), True, events, "writer", 0.3)
    time.sleep(0.05)
    other = hold(a_worker(), False, events, "other", 0.05)
    for thread in (reader, writer, other):
        thread.join()
    assert events == ["reader in", "reader out", "writer in", "writer out", "other in", "other out"], \
        "a waiting writer goes before readers who came after it"


def test_without_xdist_nothing_is_locked(tmp_path: Path) -> None:
    with workers.mesh_state(SimpleNamespace(), SETTINGS, exclusive=True):
        pass
    assert not list(tmp_path.iterdir())


def test_without_xdist_the_cluster_is_entered_as_asked() -> None:
    entered: list[Settings] = []

    class Enter:
        def __init__(self, settings: Settings) -> None:
            entered.append(settings)

        def __enter__(self) -> str:
            return "cluster"

        def __exit__(self, *exc: object) -> None:
            entered.append(SETTINGS)

    with workers.shared_cluster(SimpleNamespace(), SETTINGS, Enter) as cluster:  # type: ignore[arg-type]
        assert cluster == "cluster"
    assert entered == [SETTINGS, SETTINGS]


def test_the_first_worker_owns_the_cluster_and_a_later_one_only_attaches(tmp_path: Path) -> None:
    asked: list[bool] = []

    class Enter:
        def __init__(self, settings: Settings) -> None:
            asked.append(settings.keep_cluster)

        def __enter__(self) -> str:
            return "cluster"

        def __exit__(self, *exc: object) -> None:
            pass

    attachments = workers.Attachments(workers.coordination_path(SETTINGS, "json"))
    with workers.shared_cluster(a_worker(), SETTINGS, Enter):  # type: ignore[arg-type]
        assert attachments.read()[0] is not None
    assert asked == [False]
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        attachments.write(owner.pid, {owner.pid})
        with workers.shared_cluster(a_worker(), SETTINGS, Enter):  # type: ignore[arg-type]
            pass
    finally:
        owner.kill()
        owner.wait()
    assert asked == [False, True], "another live process owns it: attach with keep_cluster"
