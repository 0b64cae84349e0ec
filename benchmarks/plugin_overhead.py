"""What installing the plugin costs a pytest run that has nothing to do with Nginmesh: the plugin's import time
(pytest already imported) and the time of collecting and of running an unrelated test file with the plugin
and without it (``-p no:nginmesh``). Prints JSON; medians of ``--runs`` fresh interpreters each, as CPU time
(user + system: what the run costs, steady on a loaded machine) and as wall time.

    .venv/bin/python benchmarks/plugin_overhead.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import resource
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
IMPORT_PLUGIN = ("import time, pytest; wall, cpu = time.perf_counter(), time.process_time(); "
                 "import pytest_nginmesh.plugin; print(time.perf_counter() - wall, time.process_time() - cpu)")


def seconds(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_ms(values: list[float]) -> float:
    return round(1000 * statistics.median(values), 1)


def compare(with_plugin: list[tuple[float, float]], without: list[tuple[float, float]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for clock, index in (("cpu", 1), ("wall", 0)):
        a, b = median_ms([t[index] for t in with_plugin]), median_ms([t[index] for t in without])
        result[clock] = {"with_plugin": a, "without_plugin": b, "overhead": round(a - b, 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as directory:
        cwd = Path(directory)
        (cwd / "test_unrelated.py").write_text(UNRELATED)
        pytest_ = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_unrelated.py"]
        imports: list[tuple[float, float]] = []
        collect_with, collect_without, run_with, run_without = [], [], [], []
        for _ in range(runs):  # interleaved, so load on the machine hits both sides alike
            out = subprocess.run([sys.executable, "-c", IMPORT_PLUGIN], cwd=cwd, check=True, capture_output=True,
                                 text=True).stdout.split()
            imports.append((float(out[0]), float(out[1])))
            collect_with.append(seconds([*pytest_, "--collect-only"], cwd))
            collect_without.append(seconds([*pytest_, "--collect-only", "-p", "no:nginmesh"], cwd))
            run_with.append(seconds(pytest_, cwd))
            run_without.append(seconds([*pytest_, "-p", "no:nginmesh"], cwd))
    print(json.dumps({
        "runs": runs,
        "plugin_import_ms": {"cpu": median_ms([cpu for _, cpu in imports]),
                             "wall": median_ms([wall for wall, _ in imports])},
        "collect_ms": compare(collect_with, collect_without),
        "run_ms": compare(run_with, run_without),
        "budget_ms": 150,
    }, indent=2))


if __name__ == "__main__":
    main()
