"""What installing the plugin costs a pytest run that has nothing to do with Nginmesh: the plugin's import time
(pytest already imported) and the wall time of collecting and of running an unrelated test file with the plugin
and without it (``-p no:nginmesh``). Prints JSON; medians of ``--runs`` fresh interpreters each.

    .venv/bin/python benchmarks/plugin_overhead.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UNRELATED = '''
import pytest


@pytest.mark.parametrize("n", range(50))
def test_arithmetic(n):
    assert n + n == 2 * n


def test_strings(tmp_path):
    (tmp_path / "f").write_text("x")
    assert (tmp_path / "f").read_text() == "x"
'''
IMPORT_PLUGIN = ("import time, pytest; started = time.perf_counter(); import pytest_nginmesh.plugin; "
                 "print(time.perf_counter() - started)")


def seconds(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as directory:
        cwd = Path(directory)
        (cwd / "test_unrelated.py").write_text(UNRELATED)
        pytest_ = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_unrelated.py"]
        imports, collect_with, collect_without, run_with, run_without = [], [], [], [], []
        for _ in range(runs):  # interleaved, so load on the machine hits both sides alike
            out = subprocess.run([sys.executable, "-c", IMPORT_PLUGIN], cwd=cwd, check=True, capture_output=True,
                                 text=True).stdout
            imports.append(float(out))
            collect_with.append(seconds([*pytest_, "--collect-only"], cwd))
            collect_without.append(seconds([*pytest_, "--collect-only", "-p", "no:nginmesh"], cwd))
            run_with.append(seconds(pytest_, cwd))
            run_without.append(seconds([*pytest_, "-p", "no:nginmesh"], cwd))
    print(json.dumps({
        "runs": runs,
        "plugin_import_ms": median_ms(imports),
        "collect_ms": {"with_plugin": median_ms(collect_with), "without_plugin": median_ms(collect_without),
                       "overhead": round(median_ms(collect_with) - median_ms(collect_without), 1)},
        "run_ms": {"with_plugin": median_ms(run_with), "without_plugin": median_ms(run_without),
                   "overhead": round(median_ms(run_with) - median_ms(run_without), 1)},
        "budget_ms": 150,
    }, indent=2))


if __name__ == "__main__":
    main()
