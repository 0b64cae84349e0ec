"""The ``proxy_debug`` image: the Nginmesh agent, which renders NGINX config from Pilot and runs NGINX."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..mesh.nginx_config import Proxy, Snapshot, render
from ._common import get_json, post_json, stop_event, volume_path

APPLIED_VERSION_FILE = "applied-version"


def parse_duration(text: str) -> float:
    """Go-style durations as Envoy flags carry them: '1s', '500ms', '1m0s'."""
    total, number = 0.0, ""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    i = 0
    while i < len(text):
        if text[i].isdigit() or text[i] == ".":
            number += text[i]
            i += 1
            continue
        unit = "ms" if text[i:i + 2] == "ms" else text[i]
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    return total + (float(number) if number else 0.0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agent", description="Nginmesh agent (Envoy-compatible flags).")
    parser.add_argument("command", choices=["proxy"])
    parser.add_argument("mode", choices=["sidecar", "ingress"])
    parser.add_argument("-v", dest="verbosity", default="2")
    parser.add_argument("--configPath", default="/etc/istio/proxy")
    parser.add_argument("--serviceCluster", default="istio-proxy")
    parser.add_argument("--discoveryAddress", default="istio-pilot.istio-system:15003")
    parser.add_argument("--discoveryRefreshDelay", default="1s")
    parser.add_argument("--ingressPort", type=int, default=80)
    args, _envoy_only_flags = parser.parse_known_args(argv)
    return args


class Agent:
    """Polls Pilot, re-renders, validates with ``nginx -t``, reloads, and records the applied version."""

    def __init__(self, args: argparse.Namespace) -> None:
        directory = volume_path(args.configPath) or Path("proxy")
        directory.mkdir(exist_ok=True)
        self.proxy = Proxy(
            mode=args.mode,
            pod_name=os.environ.get("POD_NAME", os.environ.get("HOSTNAME", "")),
            namespace=os.environ.get("POD_NAMESPACE", "default"),
            pod_ip=os.environ.get("INSTANCE_IP", "127.0.0.1"),
            directory=directory.resolve(),
            ingress_port=args.ingressPort,
            run_as_root=os.geteuid() == 0,
        )
        self.pilot = f"http://{args.discoveryAddress}"
        self.refresh = max(0.1, parse_duration(args.discoveryRefreshDelay))
        self.nginx: subprocess.Popen[bytes] | None = None
        self.version = ""
        self.reported = ""
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.proxy.directory / "tmp" / sub).mkdir(parents=True, exist_ok=True)

    def nginx_command(self, *extra: str) -> list[str]:
        d = self.proxy.directory
        return ["nginx", "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf", "-g", "daemon off;", *extra]

    def apply(self, snapshot: Snapshot) -> None:
        d = self.proxy.directory
        candidate = d / "nginx.conf.next"
        candidate.write_text(render(snapshot, self.proxy))
        check = subprocess.run(["nginx", "-e", f"{d}/error.log", "-c", str(candidate), "-t"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            log(f"rejected config {snapshot.get('version')}: {check.stderr.strip()}")
            return
        candidate.replace(d / "nginx.conf")
        if self.nginx is None:
            self.nginx = subprocess.Popen(self.nginx_command())
            self._wait_for_pid_file()
        else:
            self.nginx.send_signal(signal.SIGHUP)
        self.version = str(snapshot.get("version", ""))
        (d / APPLIED_VERSION_FILE).write_text(self.version + "\n")
        log(f"applied config version {self.version}")

    def _wait_for_pid_file(self) -> None:
        deadline = time.monotonic() + 5
        while not (self.proxy.directory / "nginx.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def run(self) -> int:
        stop = stop_event()
        failing = False
        while not stop.is_set():
            if self.nginx is not None and self.nginx.poll() is not None:
                log(f"nginx exited with status {self.nginx.returncode}")
                return 1
            try:
                snapshot = get_json(self.pilot + "/v1/mesh", timeout=max(2.0, self.refresh))
                failing = False
            except OSError as e:
                if not failing:
                    log(f"pilot {self.pilot} unreachable: {e}")
                failing = True
            else:
                assert isinstance(snapshot, dict)
                if snapshot.get("version") != self.version:
                    self.apply(snapshot)
                if self.reported != self.version:
                    self.report()
            stop.wait(self.refresh)
        self.shutdown()
        return 0

    def report(self) -> None:
        """Tell Pilot which config version this proxy runs, as an ADS ack would."""
        body = {"pod": self.proxy.pod_name, "namespace": self.proxy.namespace, "version": self.version}
        try:
            post_json(self.pilot + "/v1/status", body, timeout=2.0)
        except OSError as e:
            log(f"could not report version {self.version}: {e}")
        else:
            self.reported = self.version

    def shutdown(self) -> None:
        if self.nginx is None or self.nginx.poll() is not None:
            return
        self.nginx.send_signal(signal.SIGQUIT)
        try:
            self.nginx.wait(3)
        except subprocess.TimeoutExpired:
            self.nginx.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.nginx.wait(3)


def log(message: str) -> None:
    print(f"agent: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return Agent(parse_args(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    sys.exit(main())
