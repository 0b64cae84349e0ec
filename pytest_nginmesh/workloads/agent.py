"""The ``proxy_debug`` image: the Nginmesh agent, which renders NGINX config from Pilot and runs NGINX."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from ..cluster.local.catalogue import PROXY_READINESS, PROXY_STATUS_PORT
from ..mesh.manifests import AGENT_CONFIG_KEY, AGENT_CONFIG_MAP, AGENT_CONFIG_PATH, AgentConfig
from ..mesh.nginx_config import Proxy, Snapshot, render
from ..mesh.nginx_routes import DELAY_PORT
from ..mesh.proxy_status import ACK_PATH
from ..routerules import parse_duration
from ._common import NO_PROXY_OPENER, HttpServer, get_json, stop_event, writable_dir

RELOAD_TIMEOUT = 5.0
# Istio's pilot-agent serves its readiness on this port and path since Istio 1.1 (istio/istio
# pilot/cmd/pilot-agent/status/server.go: readyPath = "/healthz/ready"; the sidecar injection template,
# install/kubernetes/helm/istio/files/injection-template.yaml, passes --statusPort and a readinessProbe
# httpGet /healthz/ready on global.proxy.statusPort, 15020 in the chart's values.yaml). The embedded
# cluster's image catalogue probes exactly this.
STATUS_PORT = PROXY_STATUS_PORT
READY_PATH = PROXY_READINESS["httpGet"]["path"]
# How often the agent looks at its NGINX master: a dead master ends the agent within this.
MASTER_POLL = 0.1
PILOT_WAIT = 60.0  # for the release's config at start: Pilot may start after the ingress


def release_config(pilot: str, flag_refresh: float) -> AgentConfig:
    """The release this agent is a twin of, from the ConfigMap the installer rendered from the profile (Pilot
    serves it); without one (a cluster set up by hand, or no Pilot yet), Istio's semantics polling at
    --discoveryRefreshDelay."""
    deadline = time.monotonic() + PILOT_WAIT
    while True:
        try:
            configmap = get_json(pilot + AGENT_CONFIG_PATH, timeout=2.0)
            break
        except urllib.error.HTTPError:
            return AgentConfig.reference(flag_refresh)  # Pilot answers, and there is no such ConfigMap
        except OSError as e:
            if time.monotonic() > deadline:
                log(f"pilot {pilot} unreachable for {PILOT_WAIT:g}s ({e}): Istio's semantics")
                return AgentConfig.reference(flag_refresh)
            time.sleep(0.2)
    assert isinstance(configmap, dict)
    return AgentConfig.parse((configmap.get("data") or {}).get(AGENT_CONFIG_KEY, "{}"),
                             f"ConfigMap {AGENT_CONFIG_MAP} key {AGENT_CONFIG_KEY}")


class DelayHandler(BaseHTTPRequestHandler):
    """Fault delays: NGINX asks (auth_request) and gets its 204 after the delay has passed."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        milliseconds = self.path.rsplit("/", 1)[-1]
        if milliseconds.isdigit():
            time.sleep(int(milliseconds) / 1000)
        self.send_response(204)
        self.end_headers()


def status_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    class Status(BaseHTTPRequestHandler):
        """Readiness, as pilot-agent's status port: 200 only while NGINX runs the config the agent applied."""

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != READY_PATH:
                self.send_error(404, f"try {READY_PATH}")
                return
            problem = agent.unready_reason()
            body = (problem or f"ready: config {agent.version}").encode() + b"\n"
            self.send_response(503 if problem else 200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Status


def serve(port: int, handler: type[BaseHTTPRequestHandler], name: str) -> HttpServer:
    """An HTTP server on loopback only, serving from a thread."""
    server = HttpServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


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
    parser.add_argument("--statsdUdpAddress", default="istio-mixer.istio-system:9125")
    args, _envoy_only_flags = parser.parse_known_args(argv)
    return args


class Agent:
    """Polls Pilot, re-renders, validates with ``nginx -t``, reloads, and records the applied version."""

    def __init__(self, args: argparse.Namespace) -> None:
        directory = writable_dir(args.configPath)
        self.pilot = f"http://{args.discoveryAddress}"
        release = release_config(self.pilot, max(0.1, parse_duration(args.discoveryRefreshDelay,
                                                                     "--discoveryRefreshDelay")))
        self.proxy = Proxy(
            mode=args.mode,
            pod_name=os.environ.get("POD_NAME", os.environ.get("HOSTNAME", "")),
            namespace=os.environ.get("POD_NAMESPACE", "default"),
            pod_ip=os.environ.get("INSTANCE_IP", "127.0.0.1"),
            directory=directory.resolve(),
            ingress_port=args.ingressPort,
            run_as_root=os.geteuid() == 0,
            service_cluster=args.serviceCluster,
            route_rendering=release.route_rendering,
            redirect_status=release.redirect_status(args.mode),
        )
        self.statsd_address = args.statsdUdpAddress
        self.refresh = release.refresh_period
        self.versioned_push = release.versioned_push
        how = "told of each change, acking it, else" if self.versioned_push else "polling Pilot, acking nothing,"
        log(f"a twin of {release.release}: {how} every {self.refresh:g}s")
        self.nginx: subprocess.Popen[bytes] | None = None
        self.version = ""
        self.rejected: tuple[str, str] | None = None
        self.report_problem = ""
        self.stop = stop_event()
        self.applying = threading.Lock()  # no NGINX is started or reloaded once shutdown has begun
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.proxy.directory / "tmp" / sub).mkdir(parents=True, exist_ok=True)

    def nginx_command(self, *extra: str) -> list[str]:
        d = self.proxy.directory
        return ["nginx", "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf", "-g", "daemon off;", *extra]

    def apply(self, snapshot: Snapshot) -> None:
        d = self.proxy.directory
        candidate = d / "nginx.conf.next"
        proxy = dataclasses.replace(self.proxy, report_to=self.report_address())
        candidate.write_text(render(snapshot, proxy))
        check = subprocess.run(["nginx", "-e", f"{d}/error.log", "-c", str(candidate), "-t"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            problem = check.stderr.strip().splitlines()[0] if check.stderr.strip() else "nginx -t failed"
            log(f"rejected config {snapshot.get('version')}: {check.stderr.strip()}")
            self.rejected = (str(snapshot.get("version", "")), problem)
            return
        candidate.replace(d / "nginx.conf")
        if self.nginx is None:
            if not self._start_nginx():  # the config passed nginx -t: no rejection; a dead master ends us
                log(f"nginx did not start with config {snapshot.get('version')} within {RELOAD_TIMEOUT:g}s")
                return
        else:
            workers = worker_pids(self.nginx.pid)
            self.nginx.send_signal(signal.SIGHUP)
            if not self._wait_for_reload(workers):
                log(f"nginx did not reload config {snapshot.get('version')} within {RELOAD_TIMEOUT:g}s")
                self.rejected = (str(snapshot.get("version", "")), "nginx did not reload in time")
                return
        self.version = str(snapshot.get("version", ""))
        self.rejected = None
        log(f"applied config version {self.version}")

    def report_address(self) -> str | None:
        """The mixer's report address as ip:port; NGINX needs an address it can resolve when it loads."""
        host, _, port = self.statsd_address.rpartition(":")
        try:
            address = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        except (OSError, ValueError):
            log(f"mixer {self.statsd_address} does not resolve: requests are not reported")
            return None
        return f"{address}:{port}"

    def _wait_for_reload(self, old: set[int]) -> bool:
        """A reload is in force once new workers run and every old one has stopped accepting: NGINX
        retitles a worker "shutting down" as it closes its listening sockets. Reporting earlier lets a
        measurement reach an old worker and see the previous routes."""
        assert self.nginx is not None
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline:
            current = worker_pids(self.nginx.pid)
            if current - old and all(shutting_down(pid) for pid in current & old):
                return True
            time.sleep(0.01)
        return False

    def _start_nginx(self) -> bool:
        """Start the master; True once it has written its pid file, which NGINX does only after binding its
        listeners. A master killed with SIGKILL leaves its pid file behind: only the new master's pid counts."""
        pid_file = self.proxy.directory / "nginx.pid"
        pid_file.unlink(missing_ok=True)
        nginx = self.nginx = subprocess.Popen(self.nginx_command())
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while time.monotonic() < deadline and nginx.poll() is None:
            with contextlib.suppress(OSError):
                if pid_file.read_text().strip() == str(nginx.pid):
                    return True
            time.sleep(0.02)
        return False

    def unready_reason(self) -> str:
        """Why the proxy is not ready, or "" when its NGINX master is alive and runs the applied config."""
        nginx = self.nginx
        if nginx is None or not self.version:
            return "no config applied yet"
        if nginx.poll() is not None:
            return f"nginx exited with status {nginx.returncode}"
        return ""

    def watch_master(self) -> None:
        """End the agent at once when its NGINX master dies, so the kubelet restarts the container. The main
        thread may be blocked for seconds (a reload wait at shutdown), hence a thread and ``os._exit``."""
        while True:
            nginx = self.nginx
            # Read whether nginx is gone before whether we are stopping: shutdown sets the stop event first.
            if nginx is not None and nginx.poll() is not None and not self.stop.is_set():
                log(f"nginx master {nginx.pid} exited with status {nginx.returncode}: exiting")
                os._exit(1)
            time.sleep(MASTER_POLL)

    def run(self) -> int:
        """Poll Pilot from a thread until SIGTERM: a long poll blocks in a read that a signal does not end, and
        a stopped pod must go at once, as the release's agent (a Go program that dies on SIGTERM) does."""
        serve(DELAY_PORT, DelayHandler, "delays")
        serve(STATUS_PORT, status_handler(self), "status")
        threading.Thread(target=self.watch_master, name="master", daemon=True).start()
        threading.Thread(target=self.poll_pilot, name="pilot", daemon=True).start()
        self.stop.wait()
        with self.applying:
            self.shutdown()
        return 0  # the servers' and the poll's daemon threads end with the process

    def poll_pilot(self) -> None:
        failing = False
        while not self.stop.is_set():
            try:
                snapshot = get_json(self.mesh_url(), timeout=self.refresh + 2.0)
                failing = False
            except OSError as e:
                if not failing:
                    log(f"pilot {self.pilot} unreachable: {e}")
                failing = True
            else:
                assert isinstance(snapshot, dict)
                wanted = str(snapshot.get("version", ""))
                with self.applying:
                    if self.stop.is_set():
                        return
                    if wanted != self.version and (self.rejected is None or self.rejected[0] != wanted):
                        self.apply(snapshot)
                if self.versioned_push and (self.version or self.rejected):
                    self.report()
                settled = wanted == self.version or (self.rejected is not None and self.rejected[0] == wanted)
                if self.versioned_push and settled:
                    continue  # Pilot holds the next poll until a change or for the refresh period
            self.stop.wait(self.refresh)

    def mesh_url(self) -> str:
        """Pilot's mesh snapshot; with long polls, answered once it differs from the version this proxy runs
        (or refused) or after the refresh period."""
        if not self.versioned_push:
            return self.pilot + "/v1/mesh"
        known = self.rejected[0] if self.rejected is not None else self.version
        return f"{self.pilot}/v1/mesh?{urllib.parse.urlencode({'known': known, 'wait': self.refresh})}"

    def report(self) -> None:
        """Tell Pilot which config version this proxy runs, as an ADS ack would, at every poll: Pilot takes it
        only from this pod's own address, and holds it only while this proxy container runs, so a restarted
        proxy's ack is the new container's own."""
        body: dict[str, str] = {"pod": self.proxy.pod_name, "namespace": self.proxy.namespace, "version": self.version}
        if self.rejected is not None:
            body["rejectedVersion"], body["rejection"] = self.rejected
        request = urllib.request.Request(self.pilot + ACK_PATH, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with NO_PROXY_OPENER.open(request, timeout=max(2.0, self.refresh)) as response:
                response.read()
        except urllib.error.HTTPError as e:
            problem = f"HTTP {e.code}: {e.read().decode(errors='replace')[:300]}"
        except OSError as e:
            problem = str(e)
        else:
            self.report_problem = ""
            return
        if problem != self.report_problem:
            log(f"could not report version {self.version}: {problem}")
        self.report_problem = problem

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


def shutting_down(worker: int) -> bool:
    try:
        return b"shutting down" in Path(f"/proc/{worker}/cmdline").read_bytes()
    except OSError:
        return True  # gone


def worker_pids(master: int) -> set[int]:
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        return set()
    return {int(pid) for pid in children}


def log(message: str) -> None:
    print(f"agent: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return Agent(parse_args(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    sys.exit(main())
