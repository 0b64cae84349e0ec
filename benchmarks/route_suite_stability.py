"""Run the route suite N times in a row against one local cluster; print JSON with every run's outcome and time.

The route suite claims a false-failure rate of 1e-6 per weighted check: this shows it does not flake.

    .venv/bin/python benchmarks/route_suite_stability.py [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SETTINGS = Settings(cluster_name="nmstable", pod_cidr="10.226.0.0/16", service_cidr="10.227.0.0/16",
                    link_cidr="10.228.0.0/30")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    env = {**os.environ, "PYTEST_NGINMESH_CLUSTER_NAME": SETTINGS.cluster_name,
           "PYTEST_NGINMESH_POD_CIDR": SETTINGS.pod_cidr, "PYTEST_NGINMESH_SERVICE_CIDR": SETTINGS.service_cidr,
           "PYTEST_NGINMESH_LINK_CIDR": SETTINGS.link_cidr, "PYTEST_NGINMESH_KEEP_CLUSTER": "true"}
    runs = []
    try:
        for index in range(args.runs):
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                     str(REPO / "suites" / "test_routing.py")],
                                    cwd=REPO, env=env, capture_output=True, text=True)
            summary = (result.stdout.strip().splitlines() or ["no output"])[-1]
            runs.append({"run": index + 1, "exit": result.returncode, "seconds": round(time.monotonic() - started, 1),
                         "summary": summary})
            if result.returncode != 0:
                runs[-1]["output_tail"] = (result.stdout + result.stderr)[-4000:]
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        lifecycle.down(SETTINGS)
    measured = [r["seconds"] for r in runs[1:]] or [r["seconds"] for r in runs]  # the first run builds the cluster
    print(json.dumps({"runs": len(runs), "failed_runs": sum(1 for r in runs if r["exit"] != 0),
                      "first_run_seconds": runs[0]["seconds"] if runs else None,
                      "mean_seconds_reusing_cluster": round(sum(measured) / len(measured), 1) if measured else None,
                      "total_seconds": round(sum(r["seconds"] for r in runs), 1), "details": runs}, indent=2))


if __name__ == "__main__":
    main()
