"""How fast the conformance suites run, and what their statistics cost against the alternatives. Prints JSON.

    .venv/bin/python benchmarks/conformance.py [--runs 3] [--simulations 300] [--no-cluster] [-- PYTEST ARGS]

The cluster part runs ``pytest suites`` ``--runs`` times, each on a cluster of its own that the run starts and
removes (the cluster the PYTEST_NGINMESH_* variables name): the median wall time of a whole run, each test's
duration (median over the runs), the samples each statistical verdict used, the waits for convergence after
each rule apply or removal (p50, p99: the ``converge`` steps of the conformance report), and pytest's import
and collection time. The simulation part needs no cluster: for each weighted promise the route suite checks, the
mean samples of the sequential test (false failure 1e-6, power 0.999 against a 10-point skew), the samples a
fixed-size test needs for the same two error rates, and the Gateway API conformance suite's rule (500 requests,
every backend within 5 points: kubernetes-sigs/gateway-api conformance/utils/weight/weight.go) with its false
pass rate against a 10-point skew and its false failure rate on a true promise, computed exactly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import yaml

from pytest_nginmesh.checks.overhead import binomial_cdf, point_quantile
from pytest_nginmesh.checks.routing import DEFAULT_ALPHA, DEFAULT_DELTA, DEFAULT_POWER, WeightTest

REPO = Path(__file__).resolve().parents[1]
# The promises suites/test_routing.py judges, as {version: share}.
PROMISES = {"even thirds": {"v1": 1 / 3, "v2": 1 / 3, "v3": 1 / 3}, "all v1": {"v1": 1.0},
            "50/50": {"v1": 0.5, "v3": 0.5}, "75/25": {"v1": 0.75, "v2": 0.25}}
GATEWAY_API_REQUESTS, GATEWAY_API_TOLERANCE = 500, 0.05


def sequential_samples(promise: dict[str, float], runs: int, seed: int) -> dict[str, float]:
    """Mean and p99 samples of WeightTest on a true promise (simulated)."""
    rng = random.Random(seed)
    versions, weights = list(promise), list(promise.values())
    used = []
    for _ in range(runs):
        test = WeightTest(promise)
        verdict = None
        while verdict is None:
            verdict = test.observe(rng.choices(versions, weights)[0])
        used.append(verdict.samples)
    used.sort()
    return {"mean": round(statistics.fmean(used), 1), "p99": used[min(len(used) - 1, math.ceil(0.99 * len(used)) - 1)]}


def fixed_size_samples(promise: dict[str, float], alpha: float = DEFAULT_ALPHA, power: float = DEFAULT_POWER,
                       delta: float = DEFAULT_DELTA) -> int:
    """The smallest n for which one fixed-size binomial test per version (an acceptance interval of counts,
    Bonferroni over the versions) keeps false failure <= alpha and catches a ``delta`` skew of every version
    with at least ``power``: exact binomial tails, n searched by doubling and bisection."""
    alpha_each = alpha / len(promise)

    def enough(n: int) -> bool:
        for p in promise.values():
            if p in (0.0, 1.0):  # accepted only when every answer agrees; a skew passes that with (1 - delta)^n
                if (1 - delta) ** n > 1 - power:
                    return False
                continue
            cdf = binomial_cdf(n, p)
            low = next(k for k in range(n + 1) if cdf[k] > alpha_each / 2)  # accept counts in [low, high]
            high = next(k for k in range(n + 1) if cdf[k] >= 1 - alpha_each / 2)
            for skewed in (p - delta, p + delta):
                if not 0 < skewed < 1:
                    continue
                skewed_cdf = binomial_cdf(n, skewed)
                accepted = skewed_cdf[high] - (skewed_cdf[low - 1] if low else 0.0)
                if accepted > 1 - power:
                    return False
        return True

    high = 16
    while not enough(high):
        high *= 2
    low = 0
    while high - low > 1:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high


def gateway_api_rule(promise: dict[str, float], truth: dict[str, float]) -> float:
    """P(the Gateway API rule passes): every backend's share of 500 requests within 5 points of its promise.
    Exact for two backends (the counts are one binomial); for more, by 20,000 simulated runs."""
    n = GATEWAY_API_REQUESTS
    versions = list(promise)
    if len(versions) == 2:
        first = versions[0]
        cdf = binomial_cdf(n, truth[first])
        low = math.ceil(n * (promise[first] - GATEWAY_API_TOLERANCE) - 1e-9)
        high = math.floor(n * (promise[first] + GATEWAY_API_TOLERANCE) + 1e-9)
        return cdf[min(high, n)] - (cdf[low - 1] if low > 0 else 0.0)
    rng = random.Random(7)
    weights = [truth[v] for v in versions]
    passed = 0
    for _ in range(20_000):
        counts = dict.fromkeys(versions, 0)
        for version in rng.choices(versions, weights, k=n):
            counts[version] += 1
        passed += all(abs(counts[v] / n - promise[v]) <= GATEWAY_API_TOLERANCE for v in versions)
    return passed / 20_000


def skewed(promise: dict[str, float], delta: float = DEFAULT_DELTA) -> dict[str, float]:
    """The promise with its first version ``delta`` over (the rest scaled down to match)."""
    first, *rest = promise
    shifted = min(1.0, promise[first] + delta)
    remaining = sum(promise[v] for v in rest)
    return {first: shifted, **{v: promise[v] * (1 - shifted) / remaining for v in rest}} if remaining else {first: 1.0}


def simulations(runs: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, promise in PROMISES.items():
        entry: dict[str, Any] = {"sequential": sequential_samples(promise, runs, seed=len(name)),
                                 "fixedSize": fixed_size_samples(promise)}
        if len(promise) > 1:
            entry["gatewayApi"] = {"requests": GATEWAY_API_REQUESTS,
                                   "falsePassAgainstTenPointSkew": round(gateway_api_rule(promise, skewed(promise)), 6),
                                   "falseFailureOnATruePromise": round(1 - gateway_api_rule(promise, promise), 6)}
        result[name] = entry
    return result


def timed(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    return time.monotonic() - started, result


def quantiles(values: list[float]) -> dict[str, float | int]:
    """How many, p50 and p99 (nearest rank) of the waits for convergence after each rule apply or removal."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {"count": len(ordered), "p50": point_quantile(ordered, 0.5), "p99": point_quantile(ordered, 0.99)}


def cluster_runs(runs: int, pytest_args: list[str]) -> dict[str, Any]:
    env = dict(os.environ)
    walls, per_test, verdicts, failures, converge = [], {}, {}, [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as reports:
            junit = Path(reports) / "junit.xml"
            wall, result = timed([sys.executable, "-m", "pytest", "suites", "-q", "-p", "no:cacheprovider",
                                  f"--junitxml={junit}", f"--nginmesh-report-dir={reports}", *pytest_args], env)
            walls.append(wall)
            if result.returncode != 0:
                failures.append(result.stdout[-2000:])
            for case in ElementTree.parse(junit).getroot().iter("testcase"):
                per_test.setdefault(case.get("name", ""), []).append(float(case.get("time", 0)))
            report = yaml.safe_load((Path(reports) / "conformance-report.yaml").read_text())
            for test in report["tests"]:
                for index, verdict in enumerate(test["verdicts"]):
                    verdicts.setdefault(f"{test['name']}#{index}", []).append(verdict["samples"])
                converge += [step["seconds"] for step in test["steps"] if step["title"].startswith("converge")]
    collect, _ = timed([sys.executable, "-m", "pytest", "suites", "--collect-only", "-q", "-p", "no:cacheprovider"],
                       env)
    imports, _ = timed([sys.executable, "-c", "import pytest, pytest_nginmesh.plugin"], env)
    return {"runs": runs, "wallSeconds": [round(w, 1) for w in walls],
            "medianWallSeconds": round(statistics.median(walls), 1), "failedRuns": failures,
            "perTestMedianSeconds": {name: round(statistics.median(times), 2) for name, times in per_test.items()},
            "samplesPerVerdict": verdicts, "convergenceSeconds": quantiles(converge),
            "collectOnlySeconds": round(collect, 2),
            "importSeconds": round(imports, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--simulations", type=int, default=300)
    parser.add_argument("--no-cluster", action="store_true", help="only the simulations")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    output: dict[str, Any] = {"statistics": simulations(args.simulations)}
    if not args.no_cluster:
        output["conformanceRun"] = cluster_runs(args.runs, args.pytest_args)
    print(json.dumps(output, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
