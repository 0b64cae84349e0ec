"""Do observed backend versions fit promised route weights? Sequential Wald SPRTs per version, Bonferroni-corrected."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from .. import observe

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_DELTA",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_POWER",
    "Verdict",
    "WeightTest",
    "check_weights",
    "expected_samples",
]

DEFAULT_ALPHA = 1e-6
DEFAULT_POWER = 0.999
DEFAULT_DELTA = 0.10
DEFAULT_MAX_SAMPLES = 10000


@dataclass(frozen=True)
class Verdict:
    """The outcome of a weight check and every number it rests on; ``str()`` is the one-line reason.

    ``decided`` is False when the check stopped without a conclusion (the sample cap, or asked
    early); such a verdict counts as a failure. ``expected`` and ``observed`` are proportions;
    a version seen but absent from the promised weights appears with an expected proportion of 0.
    """

    passed: bool
    decided: bool
    samples: int
    counts: dict[str, int]
    expected: dict[str, float]
    observed: dict[str, float]
    alpha: float
    power: float
    delta: float
    max_samples: int
    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class _Sprt:
    """One-sided SPRT on "the answer came from ``version``": H0 p = p0 against H1 p = p1.

    ``hit`` and ``miss`` are the log-likelihood-ratio increments for an answer from ``version``
    and from any other version; +inf marks an answer impossible under H0, -inf one impossible under H1.
    """

    version: str
    p0: float
    p1: float
    hit: float
    miss: float

    def describe(self) -> str:
        side = "above" if self.p1 > self.p0 else "below"
        return f"SPRT for {self.version} {side} {_pct(self.p1)}"


@dataclass(frozen=True)
class _Design:
    """The SPRTs a promise needs and their shared Wald bounds (upper rejects H0, lower accepts it)."""

    expected: dict[str, float]
    sprts: tuple[_Sprt, ...]
    upper: float
    lower: float


def _pct(proportion: float) -> str:
    return f"{100 * proportion:.3g}%"


def _log_ratio(under_h1: float, under_h0: float) -> float:
    """ln(under_h1 / under_h0), with the impossible cases as infinities instead of domain errors."""
    if under_h0 == 0.0:
        return math.inf
    if under_h1 == 0.0:
        return -math.inf
    return math.log(under_h1 / under_h0)


def _make_sprt(version: str, p0: float, p1: float) -> _Sprt:
    return _Sprt(version, p0, p1, hit=_log_ratio(p1, p0), miss=_log_ratio(1.0 - p1, 1.0 - p0))


def _sprts_for(version: str, p0: float, delta: float) -> list[_Sprt]:
    """The '+' and '-' SPRTs for one version, skipping a direction whose alternative would equal p0."""
    alternatives = (min(1.0, p0 + delta), max(0.0, p0 - delta))
    return [_make_sprt(version, p0, p1) for p1 in alternatives if p1 != p0]


def _check_settings(alpha: float, power: float, delta: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha={alpha!r}: give a false-failure rate between 0 and 0.5, e.g. 1e-6")
    if not 0.5 < power < 1.0:
        raise ValueError(f"power={power!r}: give a power strictly between 0.5 and 1, e.g. 0.999")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta={delta!r}: give the skew to detect as a proportion between 0 and 1, e.g. 0.10")


def _normalise(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights to proportions summing to 1."""
    if not weights:
        raise ValueError("no expected weights: give at least one version with a positive weight, e.g. {'v1': 100}")
    bad = {version: weight for version, weight in weights.items() if not (math.isfinite(weight) and weight >= 0)}
    if bad:
        raise ValueError(f"weights {bad!r} are negative or not finite: give every version a finite weight >= 0")
    total = math.fsum(weights.values())
    if total == 0:
        raise ValueError(f"weights {dict(weights)!r} are all zero: give at least one version a positive weight")
    return {version: weight / total for version, weight in weights.items()}


def _design(weights: Mapping[str, float], alpha: float, power: float, delta: float) -> _Design:
    _check_settings(alpha, power, delta)
    expected = _normalise(weights)
    sprts = tuple(sprt for version, p0 in expected.items() for sprt in _sprts_for(version, p0, delta))
    alpha_each = alpha / len(sprts)
    beta = 1.0 - power
    return _Design(
        expected=expected,
        sprts=sprts,
        upper=math.log((1.0 - beta) / alpha_each),
        lower=math.log(beta / (1.0 - alpha_each)),
    )


def _mean_samples_to_accept(sprt: _Sprt, lower: float) -> float:
    """Wald's approximation (no overshoot) of the mean samples for ``sprt`` to accept H0 when H0 is true."""
    outcomes = ((sprt.p0, sprt.hit), (1.0 - sprt.p0, sprt.miss))
    for probability, step in outcomes:
        if probability > 0.0 and step == -math.inf:
            return 1.0 / probability
    drift = math.fsum(probability * step for probability, step in outcomes if probability > 0.0)
    return lower / drift


def expected_samples(
    expected: Mapping[str, float],
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    delta: float = DEFAULT_DELTA,
) -> int:
    """Planning figure: samples to accept a true promise, max over the SPRTs of B / E[increment under H0].

    This is Wald's approximation for the slowest single SPRT; the check's real mean runs somewhat
    higher, as each SPRT overshoots its bound and the check waits for the last one to settle.
    """
    design = _design(expected, alpha, power, delta)
    return math.ceil(max(_mean_samples_to_accept(sprt, design.lower) for sprt in design.sprts))


class WeightTest:
    """A sequential check of answered versions against promised weights, fed one observation at a time.

    Every version gets a one-sided Wald SPRT per direction (H0: its promised proportion p0; H1: p0 +/- delta),
    each at alpha / (number of SPRTs). One SPRT rejecting H0, or a version with weight 0 answering, fails
    the check at once; it passes when every SPRT has accepted H0. Reaching ``max_samples`` first is a failure
    with ``decided=False``.
    """

    def __init__(
        self,
        expected: Mapping[str, float],
        alpha: float = DEFAULT_ALPHA,
        power: float = DEFAULT_POWER,
        delta: float = DEFAULT_DELTA,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples={max_samples!r}: allow at least 1 sample, e.g. {DEFAULT_MAX_SAMPLES}")
        self._design = _design(expected, alpha, power, delta)
        self._alpha = alpha
        self._power = power
        self._delta = delta
        self._max_samples = max_samples
        self._samples = 0
        self._counts = dict.fromkeys(self._design.expected, 0)
        self._llr = [0.0] * len(self._design.sprts)
        self._open = list(range(len(self._design.sprts)))
        self._final: Verdict | None = None

    def observe(self, version: str) -> Verdict | None:
        """Record that ``version`` answered; the final verdict once the check has one, else None."""
        if self._final is not None:
            raise RuntimeError("this check already has its verdict: start a new WeightTest to check again")
        self._samples += 1
        self._counts[version] = self._counts.get(version, 0) + 1
        self._final = self._judge(version)
        return self._final

    def verdict(self) -> Verdict:
        """The final verdict, or, while undecided, the failure that stopping now would be."""
        if self._final is not None:
            return self._final
        return self._build(passed=False, decided=False, reason=self._undecided_reason())

    def _judge(self, version: str) -> Verdict | None:
        if self._design.expected.get(version, 0.0) == 0.0:
            return self._build(passed=False, decided=True, reason=self._forbidden_reason(version))
        rejected = self._step(version)
        if rejected:
            return self._build(passed=False, decided=True, reason=self._skew_reason(rejected))
        if not self._open:
            reason = f"{self._estimates()}: fits after {self._samples} samples ({self._settings()})"
            return self._build(passed=True, decided=True, reason=reason)
        if self._samples >= self._max_samples:
            return self._build(passed=False, decided=False, reason=self._undecided_reason())
        return None

    def _step(self, version: str) -> list[_Sprt]:
        """Feed one answer to every running SPRT, close those that cross a bound; the ones that rejected H0."""
        design = self._design
        rejected: list[_Sprt] = []
        still_open: list[int] = []
        for index in self._open:
            sprt = design.sprts[index]
            llr = self._llr[index] + (sprt.hit if sprt.version == version else sprt.miss)
            self._llr[index] = llr
            if llr >= design.upper:
                rejected.append(sprt)
            elif llr > design.lower:
                still_open.append(index)
        self._open = still_open
        return rejected

    def _observed(self) -> dict[str, float]:
        return {version: count / self._samples if self._samples else 0.0 for version, count in self._counts.items()}

    def _build(self, *, passed: bool, decided: bool, reason: str) -> Verdict:
        return Verdict(
            passed=passed,
            decided=decided,
            samples=self._samples,
            counts=dict(self._counts),
            expected={version: self._design.expected.get(version, 0.0) for version in self._counts},
            observed=self._observed(),
            alpha=self._alpha,
            power=self._power,
            delta=self._delta,
            max_samples=self._max_samples,
            reason=reason,
        )

    def _estimates(self, versions: list[str] | None = None) -> str:
        if not self._samples:
            return "no samples yet"
        observed = self._observed()
        shown = self._counts if versions is None else versions
        return ", ".join(
            f"{version} {100 * observed[version]:.1f}% vs {_pct(self._design.expected.get(version, 0.0))} expected"
            for version in shown
        )

    def _settings(self) -> str:
        points = f"{100 * self._delta:.3g}"
        return f"false-failure rate {self._alpha:g}, power {self._power:g} against a {points}-point skew"

    def _forbidden_reason(self, version: str) -> str:
        where = "" if version in self._design.expected else f" (not among {', '.join(self._design.expected)})"
        return f"{version} seen {self._counts[version]} times where weight is 0{where}: fails at sample {self._samples}"

    def _skew_reason(self, rejected: list[_Sprt]) -> str:
        versions = list(dict.fromkeys(sprt.version for sprt in rejected))
        tests = " and ".join(sprt.describe() for sprt in rejected)
        stop = f"{tests} accepted after {self._samples} samples"
        return f"{self._estimates(versions)}: skewed ({stop}; {self._settings()})"

    def _undecided_reason(self) -> str:
        if self._samples >= self._max_samples:
            stop = f"could not decide within the cap of {self._max_samples} samples"
        else:
            stop = f"undecided after {self._samples} of at most {self._max_samples} samples"
        return f"{self._estimates()}: {stop} ({self._settings()})"


def check_weights(
    sample: Callable[[], str],
    expected: Mapping[str, float],
    *,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    delta: float = DEFAULT_DELTA,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    concurrency: int = 1,
) -> Verdict:
    """Call ``sample()`` (one request, the version that answered) until the check decides or hits the cap.

    With ``concurrency`` above 1, that many calls run at once (``sample`` must then be safe to call from
    several threads). Answers are judged in the order their requests were sent, each once it has completed,
    never in the order they complete: the test sees exactly the sequence a one-at-a-time run would draw, so
    its false-failure rate and power stay what they are, even when one version answers slower than another
    (judging by completion would under-count it at the moment the test stops). Answers still in flight at
    the verdict are dropped; a ``sample`` that raises ends the check when its turn comes, as it would alone.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency={concurrency!r}: allow at least 1 request in flight, e.g. 8")
    test = WeightTest(expected, alpha=alpha, power=power, delta=delta, max_samples=max_samples)
    with observe.step(f"measure and judge: versions against weights {dict(expected)}"):
        if concurrency == 1:
            verdict = None
            while verdict is None:
                verdict = test.observe(sample())
        else:
            verdict = _judge_in_send_order(test, sample, concurrency, max_samples)
    observe.verdict(verdict)
    return verdict


def _judge_in_send_order(test: WeightTest, sample: Callable[[], str], concurrency: int, cap: int) -> Verdict:
    """Keep ``concurrency`` calls of ``sample`` in flight (never more than ``cap`` in all) and feed ``test``
    their answers in send order until it decides; it decides at the latest at its own cap of ``cap``."""
    in_flight: dict[int, Future[str]] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="nginmesh-sample") as pool:
        sent = judged = 0
        try:
            while True:
                while len(in_flight) < concurrency and sent < cap:
                    in_flight[sent] = pool.submit(sample)
                    sent += 1
                verdict = test.observe(in_flight.pop(judged).result())
                judged += 1
                if verdict is not None:
                    return verdict
        finally:
            for future in in_flight.values():
                future.cancel()
