"""Kill `nginmesh local up` at random moments, then show the next `up` works and `down` leaves nothing.

Prints one JSON object: per kill trial (SIGINT, SIGTERM, SIGKILL at a random moment of a full `up` with the
mesh) the exit code, what the interrupted `up` left, the next `up` (seconds, its phases, GET /productpage
through the ingress) and the `down` after it (seconds, leftovers); then `up --bare`/`down` cycles; then a
summary. Run as root, with the cluster name and ranges of your own (PYTEST_NGINMESH_CLUSTER_NAME,
PYTEST_NGINMESH_POD_CIDR, PYTEST_NGINMESH_SERVICE_CIDR, PYTEST_NGINMESH_LINK_CIDR):

    .venv/bin/python benchmarks/lifecycle_faults.py [--trials-per-signal 4] [--cycles 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import requests

from pytest_nginmesh.cluster.local import lifecycle
from pytest_nginmesh.settings import Settings, settings_from_env

CLI = [sys.executable, "-m", "pytest_nginmesh.cli", "local"]
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


class Run:
    """One CLI run whose progress lines are timestamped as they arrive."""

    def __init__(self, *args: str) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append((round(time.monotonic() - self.started, 2), line.strip()))

    def wait(self, timeout: float = 600) -> dict[str, Any]:
        code = self.process.wait(timeout)
        self.reader.join(5)
        stdout = self.process.stdout.read() if self.process.stdout else ""
        return {"exit": code, "seconds": round(time.monotonic() - self.started, 2),
                "phases": self.lines, "stdout": stdout.strip()}


def productpage_status(stdout: str, timeout: float) -> int | str:
    ingress = next((line.split(" ", 1)[1] for line in stdout.splitlines() if line.startswith("ingress: ")), None)
    if ingress is None:
        return "no ingress printed"
    try:
        return requests.get(ingress + "/productpage", timeout=timeout).status_code
    except requests.RequestException as e:
        return f"{type(e).__name__}: {e}"


def up_then_down(settings: Settings) -> dict[str, Any]:
    """A working `up` (with the mesh), GET /productpage through the ingress, then `down`."""
    up = Run("up").wait()
    status = productpage_status(up["stdout"], settings.timeouts.http_request)
    down = Run("down").wait()
    left = lifecycle.leftovers(settings)
    return {"up": up, "productpage": status, "down": {"exit": down["exit"], "seconds": down["seconds"]},
            "leftovers_after_down": left,
            "ok": up["exit"] == 0 and status == 200 and down["exit"] == 0 and not left}


def kill_trial(settings: Settings, sig: signal.Signals, delay: float) -> dict[str, Any]:
    run = Run("up")
    time.sleep(delay)
    finished_first = run.process.poll() is not None
    if not finished_first:
        run.process.send_signal(sig)
    interrupted = run.wait()
    left = lifecycle.leftovers(settings)
    after = up_then_down(settings)
    # All or nothing: SIGINT/SIGTERM leave nothing; a SIGKILLed `up` cannot clean, and the next `up` rebuilds.
    clean_interrupt = sig == signal.SIGKILL or finished_first or not left
    return {"signal": sig.name, "delay_s": round(delay, 2), "finished_before_signal": finished_first,
            "exit": interrupted["exit"], "last_phase": interrupted["phases"][-1:] or None,
            "leftovers_after_interrupt": len(left),
            "next_up_rebuilt_half_made": any("is half-made" in line for _, line in after["up"]["phases"]),
            "next_up_s": after["up"]["seconds"], "next_up_phases": after["up"]["phases"],
            "productpage": after["productpage"], "down_s": after["down"]["seconds"],
            "leftovers_after_down": after["leftovers_after_down"],
            "ok": clean_interrupt and after["ok"]}


def cycles(settings: Settings, count: int) -> dict[str, Any]:
    ups, downs, errors = [], [], []
    for index in range(count):
        up = Run("up", "--bare").wait()
        down = Run("down").wait()
        left = lifecycle.leftovers(settings)
        ups.append(up["seconds"])
        downs.append(down["seconds"])
        if up["exit"] or down["exit"] or left:
            errors.append({"cycle": index, "up": up["exit"], "down": down["exit"], "leftovers": left,
                           "lines": [line for _, line in up["phases"] + down["phases"]][-4:]})
    return {"count": count, "mode": "up --bare / down", "errors": errors,
            "up_s": {"p50": round(statistics.median(ups), 2), "max": max(ups)},
            "down_s": {"p50": round(statistics.median(downs), 2), "max": max(downs)}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-signal", type=int, default=4)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # Started in the background (nohup … &), this process and its children would ignore SIGINT, and the
    # SIGINT trials would measure nothing: give the children Ctrl-C's usual meaning back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = Settings().with_overrides(settings_from_env())
    rng = random.Random(args.seed)
    Run("down").wait()
    reference = up_then_down(settings)
    full_up = reference["up"]["seconds"]
    plan = [sig for sig in SIGNALS for _ in range(args.trials_per_signal)]
    rng.shuffle(plan)
    trials = [kill_trial(settings, sig, rng.uniform(0.2, 0.95 * full_up)) for sig in plan]
    bare = cycles(settings, args.cycles)
    result = {
        "cluster": settings.cluster_name,
        "reference_full_up": {"seconds": full_up, "phases": reference["up"]["phases"],
                              "productpage": reference["productpage"], "down_s": reference["down"]["seconds"]},
        "kill_trials": trials,
        "cycles": bare,
        "summary": {
            "kill_trials": len(trials),
            "kill_trials_ok": sum(t["ok"] for t in trials),
            "signalled_mid_up": sum(not t["finished_before_signal"] for t in trials),
            "next_up_s": {"p50": round(statistics.median(t["next_up_s"] for t in trials), 2),
                          "max": max(t["next_up_s"] for t in trials)},
            "down_s": {"p50": round(statistics.median(t["down_s"] for t in trials), 2),
                       "max": max(t["down_s"] for t in trials)},
            "cycles": bare["count"], "cycle_errors": len(bare["errors"]),
        },
    }
    print(json.dumps(result, indent=2))
    return 0 if result["summary"]["kill_trials_ok"] == len(trials) and not bare["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
