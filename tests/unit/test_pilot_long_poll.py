"""Pilot's long poll (the local twin's stand-in for a push) and its debounce: an agent that knows the current
version hears of the next at once, and otherwise after its refresh period; a burst of config events is one push."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

from test_proxy_acks import pilot_url  # noqa: F401 - the fixture

from pytest_nginmesh.workloads._common import NO_PROXY_OPENER
from pytest_nginmesh.workloads.pilot import DEBOUNCE_AFTER, DEBOUNCE_MAX, Pilot


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


def test_a_burst_of_config_events_is_published_once_it_is_quiet(pilot_url: tuple[Pilot, str]) -> None:  # noqa: F811
    pilot, _ = pilot_url
    events = threading.Thread(target=lambda: [(pilot.config_changed(), time.sleep(0.02)) for _ in range(5)])
    started = time.monotonic()
    events.start()
    time.sleep(0.005)
    pilot.debounce()
    events.join()
    waited = time.monotonic() - started
    assert waited >= 0.08 + DEBOUNCE_AFTER * 0.9, "the push waited for the burst to end"
    assert waited < 0.08 + DEBOUNCE_AFTER + 0.5


def test_an_ack_alone_is_published_without_delay(pilot_url: tuple[Pilot, str]) -> None:  # noqa: F811
    pilot, _ = pilot_url
    pilot.last_config_event = time.monotonic() - 10
    started = time.monotonic()
    pilot.debounce()
    assert time.monotonic() - started < 0.01


def test_endless_config_events_are_published_after_the_maximum_wait(pilot_url: tuple[Pilot, str]) -> None:  # noqa: F811
    pilot, _ = pilot_url
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            pilot.config_changed()
            time.sleep(0.01)

    threading.Thread(target=busy, daemon=True).start()
    started = time.monotonic()
    try:
        pilot.debounce()
    finally:
        stop.set()
    assert DEBOUNCE_MAX * 0.95 <= time.monotonic() - started < DEBOUNCE_MAX + 0.5
