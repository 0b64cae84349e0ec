"""The bounded waits every adapter shares: poll until a value, or until consistent observations."""

from __future__ import annotations

import itertools

import pytest

from pytest_nginmesh.cluster.base import wait_consistent, wait_for
from pytest_nginmesh.errors import WaitTimeout


def test_wait_for_returns_the_first_value() -> None:
    answers = iter([(None, "not yet"), (None, "still not"), (42, "")])
    assert wait_for("the answer", lambda: next(answers), timeout=5, interval=0) == 42


def test_wait_for_says_what_it_awaited_and_last_saw() -> None:
    with pytest.raises(WaitTimeout, match=r"timed out after 0.05s waiting for the answer; last seen: still 41"):
        wait_for("the answer", lambda: (None, "still 41"), timeout=0.05, interval=0.01)


def test_wait_consistent_needs_consecutive_observations() -> None:
    observed = iter(["v1", "v2", "v1", "v1", "v2", "v1", "v1", "v1", "v2"])
    seen = []

    def observe() -> str:
        seen.append(next(observed))
        return seen[-1]

    assert wait_consistent("all v1", observe, lambda v: v == "v1", timeout=5, needed=3, interval=0) == "v1"
    assert seen == ["v1", "v2", "v1", "v1", "v2", "v1", "v1", "v1"], "a break resets the streak"


def test_wait_consistent_is_bounded() -> None:
    flip = itertools.cycle(["v1", "v2"])
    with pytest.raises(WaitTimeout, match=r"all v1; last seen: [01]/3 consistent"):
        wait_consistent("all v1", lambda: next(flip), lambda v: v == "v1", timeout=0.05, needed=3, interval=0.01)
