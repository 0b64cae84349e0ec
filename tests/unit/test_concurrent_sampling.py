"""check_weights with requests in flight at once: simulated error rates when one version answers slower."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import pytest

from pytest_nginmesh.checks.routing import Verdict, WeightTest, check_weights

RELAXED = {"alpha": 0.05, "power": 0.99}
HALF = {"v1": 50.0, "v2": 50.0}
RUNS = 40
CONCURRENCY = 32
# v2's answers take this long and v1's none: in flight at once, v1's come back first.
SLOW = 0.005


def slow_sampler(truth: Mapping[str, float], seed: int, slow_version: str = "v2") -> Callable[[], str]:
    """One simulated request, safe to call from several threads: the version is drawn when the request is
    sent, and ``slow_version`` takes SLOW seconds to answer."""
    rng = random.Random(seed)
    lock = threading.Lock()
    versions, weights = list(truth), list(truth.values())

    def draw() -> str:
        with lock:
            version = rng.choices(versions, weights)[0]
        if version == slow_version:
            time.sleep(SLOW)
        return version

    return draw


def judged_by_completion(sample: Callable[[], str], expected: Mapping[str, float], concurrency: int) -> Verdict:
    """The trap check_weights avoids: feeding answers to the test in the order they come back."""
    test = WeightTest(expected, **RELAXED)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        in_flight = {pool.submit(sample) for _ in range(concurrency)}
        while True:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                verdict = test.observe(future.result())
                if verdict is not None:
                    for left in in_flight:
                        left.cancel()
                    return verdict
                in_flight.add(pool.submit(sample))


def failures(verdicts: list[Verdict]) -> int:
    return sum(not v.passed for v in verdicts)


def test_judging_by_completion_would_fail_a_true_promise_the_scenario_is_sensitive() -> None:
    verdicts = [judged_by_completion(slow_sampler(HALF, seed), HALF, CONCURRENCY) for seed in range(RUNS)]
    # About 80% fail so; fewer than 20 of 40 has probability below 1e-5.
    assert failures(verdicts) >= 20, [str(v) for v in verdicts if v.passed]


def test_in_send_order_a_true_promise_fails_no_more_often_than_alpha() -> None:
    verdicts = [check_weights(slow_sampler(HALF, seed), HALF, concurrency=CONCURRENCY, **RELAXED)
                for seed in range(RUNS)]
    # Binomial(40, 0.05): more than 10 false failures has probability below 1e-5.
    assert failures(verdicts) <= 10, [str(v) for v in verdicts if not v.passed]
    assert all(v.decided for v in verdicts)


def test_in_send_order_a_skew_is_found_as_often_as_power_promises() -> None:
    skewed = {"v1": 40.0, "v2": 60.0}  # the slow version over-served by the 10 points the test must see
    verdicts = [check_weights(slow_sampler(skewed, seed), HALF, concurrency=CONCURRENCY, **RELAXED)
                for seed in range(RUNS)]
    # Power 0.99: fewer than 34 of 40 found has probability below 1e-6.
    assert failures(verdicts) >= 34, [str(v) for v in verdicts if v.passed]


@pytest.mark.parametrize("concurrency", [1, 2, 8])
def test_the_verdict_rests_on_as_many_samples_as_alone(concurrency: int) -> None:
    calls: list[str] = []
    lock = threading.Lock()
    inner = slow_sampler({"v1": 100.0}, 7)

    def sample() -> str:
        version = inner()
        with lock:
            calls.append(version)
        return version

    verdict = check_weights(sample, {"v1": 100.0}, concurrency=concurrency)
    alone = check_weights(slow_sampler({"v1": 100.0}, 7), {"v1": 100.0})
    assert verdict.passed and verdict.samples == alone.samples
    assert verdict.samples <= len(calls) <= verdict.samples + concurrency - 1


def test_never_more_requests_than_the_cap() -> None:
    sent = []
    verdict = check_weights(lambda: sent.append(1) or "v1", HALF, max_samples=20, concurrency=8)
    assert not verdict.decided and verdict.samples == 20
    assert len(sent) == 20


def test_a_failing_request_ends_the_check_in_its_turn() -> None:
    answers = iter(["v1", "v2", "boom", "v1"] + ["v1", "v2"] * 500)
    lock = threading.Lock()

    def sample() -> str:
        with lock:
            answer = next(answers)
        if answer == "boom":
            raise ConnectionError("connection refused")
        return answer

    with pytest.raises(ConnectionError, match="refused"):
        check_weights(sample, HALF, concurrency=4)


def test_concurrency_below_one_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="at least 1 request in flight"):
        check_weights(lambda: "v1", HALF, concurrency=0)
