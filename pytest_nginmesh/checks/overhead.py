"""Does the mesh's data plane add more latency than its budget? Distribution-free bounds on quantile differences.

The same requests go through the mesh (client and server with sidecars) and around it (both without, or with a
baseline proxy image); the overhead at quantile q is the difference of the two latency distributions' q-th
quantiles. Each quantile is bounded by order statistics (the count of samples below a quantile is binomial,
whatever the distribution), so the verdict rests on no assumption about latency's shape. The check looks at
fixed sample sizes, doubling, and decides at the first look where every quantile is confidently within its
budget (pass) or one is confidently over it (fail); both wrong verdicts are bounded by ``alpha``, Bonferroni
split over the looks, quantiles and bounds. Undecided at the last look is a failure that says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .. import observe

DEFAULT_ALPHA = 1e-3
DEFAULT_LOOKS = (250, 500, 1000, 2000)


@dataclass(frozen=True)
class QuantileOverhead:
    """The overhead at one quantile: the point estimate and its bounds, in seconds."""

    quantile: float
    budget: float
    estimate: float
    lower: float
    upper: float

    @property
    def within(self) -> bool:
        return self.upper <= self.budget

    @property
    def over(self) -> bool:
        return self.lower > self.budget

    def describe(self) -> str:
        name = f"p{100 * self.quantile:g}"
        if math.isinf(self.lower) and math.isinf(self.upper):
            bounds = "not bounded yet"
        elif math.isinf(self.upper):
            bounds = f"at least {_ms(self.lower)}"
        elif math.isinf(self.lower):
            bounds = f"at most {_ms(self.upper)}"
        else:
            bounds = f"between {_ms(self.lower)} and {_ms(self.upper)}"
        return f"{name} overhead {_ms(self.estimate)} ({bounds}) vs a budget of {_ms(self.budget)}"


@dataclass(frozen=True)
class OverheadVerdict:
    """The outcome of an overhead check and the numbers it rests on; ``str()`` is the one-line reason."""

    passed: bool
    decided: bool
    samples: int  # per side
    alpha: float
    quantiles: tuple[QuantileOverhead, ...]
    mesh_median: float
    baseline_median: float
    reason: str = field(default="")

    def __str__(self) -> str:
        return self.reason


def _ms(seconds: float) -> str:
    return f"{1000 * seconds:.2f} ms"


def _log_binomial_pmf(n: int, k: int, p: float) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p))


def binomial_cdf(n: int, p: float) -> list[float]:
    """P(Bin(n, p) <= k) for k = 0 … n."""
    total, cdf = 0.0, []
    for k in range(n + 1):
        total += math.exp(_log_binomial_pmf(n, k, p))
        cdf.append(min(1.0, total))
    return cdf


def quantile_bounds(ordered: Sequence[float], q: float, alpha: float) -> tuple[float, float]:
    """One-sided (1 - alpha) lower and upper confidence bounds of the q-quantile of the distribution that
    ``ordered`` (ascending) was drawn from: X(k) is above the quantile exactly when fewer than k samples are
    below it, a Bin(n, q) count. -inf/+inf where n samples are too few for a bound at that level."""
    n = len(ordered)
    cdf = binomial_cdf(n, q)
    upper_k = next((k for k in range(1, n + 1) if cdf[k - 1] >= 1 - alpha), None)
    lower_k = next((k for k in range(n, 0, -1) if cdf[k - 1] <= alpha), None)
    lower = ordered[lower_k - 1] if lower_k is not None else -math.inf
    upper = ordered[upper_k - 1] if upper_k is not None else math.inf
    return lower, upper


def point_quantile(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def judge(mesh: Sequence[float], baseline: Sequence[float], budgets: Mapping[float, float],
          alpha_each: float) -> tuple[QuantileOverhead, ...]:
    """The overhead bounds at each quantile of ``budgets`` (quantile -> seconds allowed)."""
    mesh_sorted, baseline_sorted = sorted(mesh), sorted(baseline)
    judged = []
    for q, budget in budgets.items():
        mesh_low, mesh_high = quantile_bounds(mesh_sorted, q, alpha_each)
        base_low, base_high = quantile_bounds(baseline_sorted, q, alpha_each)
        judged.append(QuantileOverhead(q, budget, point_quantile(mesh_sorted, q) - point_quantile(baseline_sorted, q),
                                       lower=mesh_low - base_high, upper=mesh_high - base_low))
    return tuple(judged)


def check_overhead(sample: Callable[[int], tuple[list[float], list[float]]], budgets: Mapping[float, float], *,
                   alpha: float = DEFAULT_ALPHA, looks: Sequence[int] = DEFAULT_LOOKS) -> OverheadVerdict:
    """``sample(count)`` returns ``count`` more latencies (seconds) through the mesh and as many around it
    (the caller interleaves them, so drift hits both alike); judged at each look until decided."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha!r}: give an error rate between 0 and 0.5, e.g. 1e-3")
    if not budgets or any(not 0 < q < 1 or budget < 0 for q, budget in budgets.items()):
        raise ValueError(f"budgets {dict(budgets)!r}: give quantiles in (0, 1) with budgets >= 0 seconds")
    if not looks or list(looks) != sorted(set(looks)) or looks[0] < 1:
        raise ValueError(f"looks {list(looks)!r}: give increasing sample sizes, e.g. {list(DEFAULT_LOOKS)}")
    # A false failure needs one of 2 bounds per quantile to miss at one look; so does a false pass.
    alpha_each = alpha / (2 * len(budgets) * len(looks))
    mesh: list[float] = []
    baseline: list[float] = []
    with observe.step(f"measure and judge: latency overhead against budgets {_budgets(budgets)}"):
        for look in looks:
            more_mesh, more_baseline = sample(look - len(mesh))
            mesh += more_mesh
            baseline += more_baseline
            judged = judge(mesh, baseline, budgets, alpha_each)
            over = [j for j in judged if j.over]
            if over or all(j.within for j in judged) or look == looks[-1]:
                break
    verdict = _verdict(mesh, baseline, judged, alpha, decided=bool(over) or all(j.within for j in judged))
    observe.verdict(verdict)
    return verdict


def _verdict(mesh: list[float], baseline: list[float], judged: tuple[QuantileOverhead, ...], alpha: float,
             decided: bool) -> OverheadVerdict:
    over = [j for j in judged if j.over]
    numbers = "; ".join(j.describe() for j in judged)
    confidence = f"{len(mesh)} requests each way, error rate {alpha:g}"
    if over:
        reason = f"over budget: {numbers} ({confidence})"
    elif decided:
        reason = f"within budget: {numbers} ({confidence})"
    else:
        reason = f"undecided at the last look: {numbers} ({confidence}); raise the budget or the looks"
    return OverheadVerdict(passed=decided and not over, decided=decided, samples=len(mesh), alpha=alpha,
                           quantiles=judged, mesh_median=point_quantile(sorted(mesh), 0.5),
                           baseline_median=point_quantile(sorted(baseline), 0.5), reason=reason)


def _budgets(budgets: Mapping[float, float]) -> str:
    return ", ".join(f"p{100 * q:g} {_ms(b)}" for q, b in budgets.items())
