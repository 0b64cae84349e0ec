"""Test clusters' address ranges (tests/helpers.py): free on the host, and never another live process's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import helpers
import pytest


@pytest.fixture(autouse=True)
def own_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers, "RESERVATIONS", tmp_path / "ranges.json")
    monkeypatch.setattr(helpers, "_chosen", {})


def test_a_block_a_host_route_touches_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers.system, "host_routes", lambda: [{"dst": "10.128.40.0/24", "dev": "other0"},
                                                                {"dst": "default", "dev": "eth0"}])
    settings = helpers.cluster_settings("nmpick", 0)
    assert (settings.pod_cidr, settings.service_cidr, settings.link_cidr) == (
        "10.128.64.0/20", "10.128.80.0/20", "10.128.96.0/30")


def test_blocks_held_by_live_processes_are_skipped_and_dead_ones_freed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(helpers.system, "host_routes", lambda: [])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        helpers.RESERVATIONS.write_text(json.dumps({"10.128.0.0/18": gone.pid, "10.128.64.0/18": alive.pid}))
        first = helpers.cluster_settings("nmpick", 1)
        second = helpers.cluster_settings("nmpick", 2)
    finally:
        alive.kill()
        alive.wait()
    assert first.pod_cidr == "10.128.0.0/20", "the dead process's block is free again"
    assert second.pod_cidr == "10.128.128.0/20", "the live process's block is not"
    assert helpers.cluster_settings("nmpick", 1) is first, "one name and index keep their ranges"
