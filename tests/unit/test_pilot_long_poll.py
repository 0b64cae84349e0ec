"""Pilot's long poll (the local twin's stand-in for a push): an agent that knows the current version hears of
the next at once, and otherwise after its refresh period."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

from test_proxy_acks import pilot_url  # noqa: F401 - the fixture

from pytest_nginmesh.workloads._common import NO_PROXY_OPENER
from pytest_nginmesh.workloads.pilot import Pilot


def poll(url: str) -> tuple[dict[str, object], float]:
    started = time.monotonic()
    with NO_PROXY_OPENER.open(urllib.request.Request(url), timeout=10) as response:
        return json.loads(response.read()), time.monotonic() - started


def test_a_poll_for_the_version_served_waits_for_the_next(pilot_url: tuple[Pilot, str]) -> None:  # noqa: F811
    pilot, url = pilot_url
    pilot.serve({"version": "a"})
    threading.Timer(0.3, pilot.serve, [{"version": "b"}]).start()
    snapshot, seconds = poll(url + "/v1/mesh?known=a&wait=5")
    assert snapshot["version"] == "b"
    assert 0.25 < seconds < 2.0, "answered when b came, not at once and not after the 5 s"


def test_without_a_change_the_poll_ends_after_its_wait(pilot_url: tuple[Pilot, str]) -> None:  # noqa: F811
    pilot, url = pilot_url
    pilot.serve({"version": "a"})
    snapshot, seconds = poll(url + "/v1/mesh?known=a&wait=0.5")
    assert snapshot["version"] == "a" and seconds >= 0.45


def test_a_poll_for_another_version_or_without_one_is_answered_at_once(pilot_url: tuple[Pilot, str]) -> None:  # noqa: F811
    pilot, url = pilot_url
    pilot.serve({"version": "b"})
    for query in ("?known=a&wait=5", ""):
        snapshot, seconds = poll(url + "/v1/mesh" + query)
        assert snapshot["version"] == "b" and seconds < 1.0
