"""WeightTest and check_weights (pytest_nginmesh.checks.routing): exact bounds, edge cases, simulated error rates."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_nginmesh.checks.routing import Verdict, WeightTest, check_weights, expected_samples

HALF = {"v1": 50.0, "v2": 50.0}
THREE_QUARTERS = {"v1": 75.0, "v2": 25.0}
THIRDS = {"v1": 1 / 3, "v2": 1 / 3, "v3": 1 / 3}
ALL_V1 = {"v1": 100.0}
RELAXED_ALPHA = 0.05
RELAXED_POWER = 0.9
SETTINGS = "false-failure rate 1e-06, power 0.999 against a 10-point skew"


def lower_bound(alpha_each: float, power: float) -> float:
    """Wald's B, as the design states it."""
    beta = 1 - power
    return math.log(beta / (1 - alpha_each))


def upper_bound(alpha_each: float, power: float) -> float:
    """Wald's A, as the design states it."""
    beta = 1 - power
    return math.log((1 - beta) / alpha_each)


def sampler(rng: random.Random, truth: Mapping[str, float]) -> Callable[[], str]:
    """One simulated request: the version that answered, drawn with the ``truth`` proportions."""
    versions = list(truth)
    cumulative = list(itertools.accumulate(truth.values()))

    def draw() -> str:
        return rng.choices(versions, cum_weights=cumulative)[0]

    return draw


def simulate(
    expected: Mapping[str, float],
    truth: Mapping[str, float],
    runs: int,
    seed: int,
    alpha: float = 1e-6,
    power: float = 0.999,
) -> list[Verdict]:
    rng = random.Random(seed)
    return [check_weights(sampler(rng, truth), expected, alpha=alpha, power=power) for _ in range(runs)]


def failure_rate(verdicts: list[Verdict]) -> float:
    return sum(not verdict.passed for verdict in verdicts) / len(verdicts)


def margin(rate: float, runs: int) -> float:
    """Three binomial standard deviations."""
    return 3 * math.sqrt(rate * (1 - rate) / runs)


def feed(test: WeightTest, versions: list[str]) -> list[Verdict | None]:
    return [test.observe(version) for version in versions]


# --- exact cases -----------------------------------------------------------------------------------------


def test_all_v1_passes_after_the_number_the_bounds_give() -> None:
    # one SPRT (v1 '-', p1 = 0.9), each "v1" adds ln(0.9 / 1)
    needed = math.ceil(lower_bound(1e-6, 0.999) / math.log(0.9))
    assert needed == 66
    results = feed(WeightTest(ALL_V1), ["v1"] * needed)
    assert results[:-1] == [None] * (needed - 1)
    verdict = results[-1]
    assert verdict is not None
    assert (verdict.passed, verdict.decided, verdict.samples) == (True, True, needed)
    assert verdict.counts == {"v1": needed}
    assert verdict.observed == {"v1": 1.0}
    assert str(verdict) == f"v1 100.0% vs 100% expected: fits after 66 samples ({SETTINGS})"
    assert expected_samples(ALL_V1) == needed


def test_all_v1_fails_at_the_first_other_version() -> None:
    test = WeightTest(ALL_V1)
    assert feed(test, ["v1"] * 10) == [None] * 10
    verdict = test.observe("v2")
    assert verdict is not None
    assert (verdict.passed, verdict.decided, verdict.samples) == (False, True, 11)
    assert verdict.counts == {"v1": 10, "v2": 1}
    assert verdict.expected == {"v1": 1.0, "v2": 0.0}
    assert verdict.reason == "v2 seen 1 times where weight is 0 (not among v1): fails at sample 11"


def test_a_stream_of_one_version_is_skewed_after_the_number_the_bounds_give() -> None:
    # 50/50 runs four SPRTs; v1 '+' (p1 = 0.6) gains ln(1.2) per "v1"
    needed = math.ceil(upper_bound(1e-6 / 4, 0.999) / math.log(1.2))
    results = feed(WeightTest(HALF), ["v1"] * needed)
    assert results[:-1] == [None] * (needed - 1)
    verdict = results[-1]
    assert verdict is not None
    assert (verdict.passed, verdict.decided, verdict.samples) == (False, True, needed)
    assert verdict.reason == (
        f"v1 100.0% vs 50% expected, v2 0.0% vs 50% expected: skewed (SPRT for v1 above 60% and SPRT for v2 "
        f"below 40% accepted after {needed} samples; {SETTINGS})"
    )


def test_a_weight_zero_version_fails_at_once_even_after_its_sprt_accepted() -> None:
    test = WeightTest({"v1": 50, "v2": 50, "v3": 0})
    # v3's '+' SPRT accepts after 66 answers from others; the v1/v2 SPRTs need hundreds
    assert feed(test, ["v1", "v2"] * 50) == [None] * 100
    verdict = test.observe("v3")
    assert verdict is not None
    assert (verdict.passed, verdict.decided, verdict.samples) == (False, True, 101)
    assert verdict.reason == "v3 seen 1 times where weight is 0: fails at sample 101"


def test_an_unknown_version_fails_at_once() -> None:
    verdict = WeightTest({"v1": 50, "v3": 50}).observe("v2")
    assert verdict is not None
    assert (verdict.passed, verdict.decided, verdict.samples) == (False, True, 1)
    assert verdict.counts == {"v1": 0, "v3": 0, "v2": 1}
    assert verdict.expected == {"v1": 0.5, "v3": 0.5, "v2": 0.0}
    assert verdict.observed == {"v1": 0.0, "v3": 0.0, "v2": 1.0}
    assert str(verdict) == "v2 seen 1 times where weight is 0 (not among v1, v3): fails at sample 1"


def test_observing_after_the_verdict_is_an_error() -> None:
    test = WeightTest({"v1": 1})
    assert test.observe("v9") is not None
    with pytest.raises(RuntimeError, match="start a new WeightTest"):
        test.observe("v1")


def test_verdict_before_any_decision_is_an_undecided_failure() -> None:
    test = WeightTest(HALF)
    assert str(test.verdict()) == f"no samples yet: undecided after 0 of at most 10000 samples ({SETTINGS})"
    feed(test, ["v1", "v1", "v2"])
    verdict = test.verdict()
    assert (verdict.passed, verdict.decided, verdict.samples) == (False, False, 3)
    assert verdict.reason.startswith("v1 66.7% vs 50% expected, v2 33.3% vs 50% expected: undecided after 3 of")


def test_weights_are_normalised() -> None:
    verdict = WeightTest({"v1": 3, "v2": 1, "v3": 0}).verdict()
    assert verdict.expected == {"v1": 0.75, "v2": 0.25, "v3": 0.0}


def test_expected_samples_for_half_and_half() -> None:
    drift = 0.5 * math.log(0.6 / 0.5) + 0.5 * math.log(0.4 / 0.5)  # E[increment | H0], same for all four SPRTs
    assert expected_samples(HALF) == math.ceil(lower_bound(1e-6 / 4, 0.999) / drift)


def test_expected_samples_when_an_alternative_is_certain() -> None:
    # with delta = 0.5, v1 '+' tests p1 = 1 and v2 '-' tests p1 = 0: each accepts at the first v2 (1 / 0.05 = 20),
    # slower than the other two SPRTs (about 12)
    assert expected_samples({"v1": 95, "v2": 5}, delta=0.5) == 20


def test_certain_alternatives_are_accepted_without_domain_errors() -> None:
    test = WeightTest({"v1": 95, "v2": 5}, delta=0.5)
    assert test.observe("v2") is None
    verdict = check_weights(sampler(random.Random(3), {"v1": 0.95, "v2": 0.05}), {"v1": 95, "v2": 5}, delta=0.5)
    assert verdict.passed


@pytest.mark.parametrize(
    ("expected", "settings", "fix"),
    [
        ({}, {}, "at least one version"),
        ({"v1": -1.0, "v2": 2.0}, {}, "finite weight >= 0"),
        ({"v1": math.nan}, {}, "finite weight >= 0"),
        ({"v1": 0.0, "v2": 0.0}, {}, "all zero"),
        (HALF, {"alpha": 0.0}, "between 0 and 0.5"),
        (HALF, {"alpha": 0.5}, "between 0 and 0.5"),
        (HALF, {"power": 0.5}, "between 0.5 and 1"),
        (HALF, {"power": 1.0}, "between 0.5 and 1"),
        (HALF, {"delta": 0.0}, "between 0 and 1"),
        (HALF, {"delta": 1.0}, "between 0 and 1"),
        (HALF, {"max_samples": 0}, "at least 1 sample"),
    ],
)
def test_invalid_input_is_rejected_with_a_fix(expected: dict[str, float], settings: dict[str, Any], fix: str) -> None:
    with pytest.raises(ValueError, match=fix):
        WeightTest(expected, **settings)


# --- stopping ----------------------------------------------------------------------------------------------


def test_a_true_half_and_half_stops_early_and_states_its_numbers() -> None:
    verdicts = simulate(HALF, {"v1": 0.5, "v2": 0.5}, runs=50, seed=1)
    assert all(verdict.passed and verdict.decided for verdict in verdicts)
    assert statistics.mean(verdict.samples for verdict in verdicts) < 800
    verdict = verdicts[0]
    assert verdict.reason.endswith(f": fits after {verdict.samples} samples ({SETTINGS})")
    assert f"v1 {100 * verdict.observed['v1']:.1f}% vs 50% expected" in verdict.reason


def test_the_cap_leaves_a_check_undecided() -> None:
    verdict = check_weights(sampler(random.Random(2), {"v1": 0.5, "v2": 0.5}), HALF, max_samples=10)
    assert (verdict.passed, verdict.decided, verdict.samples, verdict.max_samples) == (False, False, 10, 10)
    assert sum(verdict.counts.values()) == 10
    assert "could not decide within the cap of 10 samples" in verdict.reason


# --- simulated error rates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "seed"), [(HALF, 11), (THREE_QUARTERS, 12), (THIRDS, 13), (ALL_V1, 14)])
def test_false_failure_rate_with_a_relaxed_alpha(expected: dict[str, float], seed: int) -> None:
    runs = 2000
    total = sum(expected.values())
    truth = {version: weight / total for version, weight in expected.items()}
    verdicts = simulate(expected, truth, runs, seed, alpha=RELAXED_ALPHA, power=RELAXED_POWER)
    assert failure_rate(verdicts) <= RELAXED_ALPHA + margin(RELAXED_ALPHA, runs)


def test_no_false_failures_with_the_default_alpha() -> None:
    verdicts = simulate(HALF, {"v1": 0.5, "v2": 0.5}, runs=300, seed=21)
    assert all(verdict.passed for verdict in verdicts)


@pytest.mark.parametrize(
    ("expected", "truth", "seed"),
    [
        (HALF, {"v1": 0.6, "v2": 0.4}, 31),
        (THREE_QUARTERS, {"v1": 0.85, "v2": 0.15}, 32),
        (THIRDS, {"v1": 1 / 3 + 0.1, "v2": 1 / 3 - 0.05, "v3": 1 / 3 - 0.05}, 33),
    ],
)
def test_power_against_a_skew_of_delta_with_relaxed_settings(
    expected: dict[str, float], truth: dict[str, float], seed: int
) -> None:
    runs = 500
    verdicts = simulate(expected, truth, runs, seed, alpha=RELAXED_ALPHA, power=RELAXED_POWER)
    assert failure_rate(verdicts) >= RELAXED_POWER - margin(RELAXED_POWER, runs)


def test_a_larger_skew_always_fails_with_the_defaults() -> None:
    verdicts = simulate(HALF, {"v1": 0.7, "v2": 0.3}, runs=300, seed=41)
    assert not any(verdict.passed for verdict in verdicts)
    assert all(verdict.decided for verdict in verdicts)


def test_a_skew_of_delta_fails_with_the_defaults() -> None:
    verdicts = simulate(HALF, {"v1": 0.6, "v2": 0.4}, runs=300, seed=42)
    assert failure_rate(verdicts) >= 0.99
