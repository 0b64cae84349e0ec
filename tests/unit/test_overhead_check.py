"""checks.overhead: order-statistic bounds of quantiles and the sequential overhead verdict, by simulation."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest

from pytest_nginmesh.checks.overhead import OverheadVerdict, binomial_cdf, check_overhead, quantile_bounds

BUDGET = {0.5: 0.002, 0.99: 0.020}
RELAXED = 0.05


def latency(rng: random.Random, base: float, extra: float) -> float:
    """A skewed latency: a floor, an exponential body and, one time in fifty, a long tail."""
    tail = rng.expovariate(1 / 0.005) if rng.random() < 0.02 else 0.0
    return base + extra + rng.expovariate(1 / 0.0005) + tail


def sampler(seed: int, extra: float) -> Callable[[int], tuple[list[float], list[float]]]:
    rng = random.Random(seed)

    def sample(count: int) -> tuple[list[float], list[float]]:
        return ([latency(rng, 0.0015, extra) for _ in range(count)],
                [latency(rng, 0.0007, 0.0) for _ in range(count)])

    return sample


def test_the_binomial_cdf_is_exact_where_it_can_be_checked() -> None:
    assert binomial_cdf(3, 0.5) == pytest.approx([0.125, 0.5, 0.875, 1.0])
    assert binomial_cdf(1000, 0.5)[499] == pytest.approx(0.487, abs=1e-3)


def test_bounds_cover_the_true_quantile_as_often_as_promised() -> None:
    rng = random.Random(1)
    true_median, true_p90 = math.log(2), -math.log(0.1)  # of Exp(1)
    misses = {"median low": 0, "median high": 0, "p90 low": 0, "p90 high": 0}
    for _ in range(400):
        ordered = sorted(rng.expovariate(1) for _ in range(200))
        for name, q, truth in (("median", 0.5, true_median), ("p90", 0.9, true_p90)):
            lower, upper = quantile_bounds(ordered, q, RELAXED)
            misses[f"{name} low"] += lower > truth
            misses[f"{name} high"] += upper < truth
    # Each bound misses at most 5% of the time; 40 of 400 has probability below 1e-4 at 5%.
    assert all(count <= 40 for count in misses.values()), misses
    assert sum(misses.values()) > 0, "bounds that never miss are too wide to be the promised ones"


def test_too_few_samples_give_no_bound() -> None:
    lower, upper = quantile_bounds(sorted(range(10)), 0.99, 1e-3)
    assert upper == math.inf and lower == 7


def test_a_cheap_proxy_passes_and_an_expensive_one_fails_naming_the_budget() -> None:
    cheap = check_overhead(sampler(1, 0.0), BUDGET)
    assert cheap.passed and cheap.decided and cheap.samples == 1000, str(cheap)
    assert str(cheap).startswith("within budget: p50 overhead")
    dear = check_overhead(sampler(2, 0.004), BUDGET)
    assert not dear.passed and dear.decided and dear.samples == 250
    assert "over budget: p50 overhead" in str(dear) and "vs a budget of 2.00 ms" in str(dear)


def test_at_the_budget_neither_verdict_is_given_more_often_than_alpha() -> None:
    # The mesh's latencies are the baseline's shifted by 0.8 ms + extra: at extra = 1.2 ms the p50 overhead is the
    # budget exactly, the hardest case for both errors: failing it is a false failure, passing it a false pass.
    verdicts = [check_overhead(sampler(seed, 0.0012), BUDGET, alpha=RELAXED) for seed in range(80)]
    failed = sum(v.decided and not v.passed for v in verdicts)
    passed = sum(v.passed for v in verdicts)
    # Binomial(80, 0.05): more than 12 has probability below 1e-3 (the true rates are lower still).
    assert failed <= 12 and passed <= 12, (failed, passed)
    assert sum(not v.decided for v in verdicts) >= 56


def test_a_budget_it_cannot_decide_is_a_failure_that_says_so() -> None:
    verdict = check_overhead(sampler(3, 0.0013), {0.5: 0.002}, looks=(50, 100))
    assert isinstance(verdict, OverheadVerdict)
    assert not verdict.passed and not verdict.decided
    assert str(verdict).startswith("undecided at the last look") and "raise the budget or the looks" in str(verdict)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": 0.0}, "give an error rate between 0 and 0.5"),
    ({"looks": (500, 250)}, "give increasing sample sizes"),
])
def test_bad_settings_are_refused_with_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_overhead(sampler(4, 0.0), BUDGET, **kwargs)  # type: ignore[arg-type]


def test_a_budget_without_quantiles_is_refused() -> None:
    with pytest.raises(ValueError, match="give quantiles in"):
        check_overhead(sampler(5, 0.0), {1.5: 0.001})
