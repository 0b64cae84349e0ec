"""The ``mixer`` image: receives the proxies' request reports and serves Prometheus metrics, as Mixer's
Prometheus adapter does (port 42422, ``/metrics``).

Reports arrive as syslog datagrams (UDP, the transport NGINX's ``access_log syslog:`` speaks) holding
one JSON object each. A lost datagram loses one report; nothing a proxy does waits for the mixer.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from ..checks.metrics import ISTIO_0_3, MetricNames
from ._common import HttpServer, serve_until_stopped, stop_event

LABELS = ("source_service", "source_version", "destination_service", "destination_version", "response_code")
PROMETHEUS_CONFIG = "prometheus.json"  # the Prometheus handler in the config store (mesh/manifests.py renders it)

LabelValues = tuple[str, ...]


@dataclass
class Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.buckets)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


@dataclass
class Metrics:
    """Counters and histograms by label values; ``exposition`` renders Prometheus text format 0.0.4 under the
    handler's metric names and buckets."""

    names: MetricNames = ISTIO_0_3
    requests: dict[LabelValues, int] = field(default_factory=lambda: defaultdict(int))
    durations: dict[LabelValues, Histogram] = field(default_factory=dict)
    request_sizes: dict[LabelValues, Histogram] = field(default_factory=dict)
    response_sizes: dict[LabelValues, Histogram] = field(default_factory=dict)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, report: dict[str, str]) -> None:
        labels = tuple(str(report.get(name) or "unknown") for name in LABELS)
        with self.lock:
            self.requests[labels] += 1
            for table, buckets, key in ((self.durations, self.names.duration_buckets, "response_duration"),
                                        (self.request_sizes, self.names.size_buckets, "request_size"),
                                        (self.response_sizes, self.names.size_buckets, "response_size")):
                table.setdefault(labels, Histogram(buckets)).observe(_number(report.get(key)))

    def exposition(self) -> str:
        with self.lock:
            names = self.names
            lines = [f"# HELP {names.request_count} Requests reported by the proxies.",
                     f"# TYPE {names.request_count} counter"]
            lines += [f"{names.request_count}{_labels(labels)} {count}"
                      for labels, count in sorted(self.requests.items())]
            for name, table, what in ((names.request_duration, self.durations, "Request duration in seconds."),
                                      (names.request_size, self.request_sizes, "Request size in bytes."),
                                      (names.response_size, self.response_sizes, "Response size in bytes.")):
                lines += [f"# HELP {name} {what}", f"# TYPE {name} histogram"]
                for labels, histogram in sorted(table.items()):
                    for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
                        lines.append(f"{name}_bucket{_labels(labels, le=_float(bound))} {count}")
                    lines.append(f"{name}_bucket{_labels(labels, le='+Inf')} {histogram.count}")
                    lines.append(f"{name}_sum{_labels(labels)} {_float(histogram.total)}")
                    lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
            return "\n".join(lines) + "\n"


def _number(value: object) -> float:
    try:
        number = float(str(value))
    except ValueError:
        return 0.0
    return number if math.isfinite(number) else 0.0


def _float(value: float) -> str:
    return repr(float(value))


def _labels(values: LabelValues, **extra: str) -> str:
    pairs = [*zip(LABELS, values, strict=True), *extra.items()]
    escaped = (f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + ",".join(escaped) + "}"


def _escape(value: str) -> str:
    """A label value as the exposition format writes it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_report(datagram: bytes) -> dict[str, str] | None:
    """The JSON report inside a syslog datagram (``<PRI>TIMESTAMP TAG: {json}`` or bare JSON), or None."""
    text = datagram.decode("utf-8", errors="replace")
    start = text.find("{")
    if start < 0:
        return None
    try:
        report = json.loads(text[start:])
    except json.JSONDecodeError:
        return None
    return report if isinstance(report, dict) else None


def handler_config(config_store_url: str) -> MetricNames:
    """The Prometheus handler's metric names and buckets from the config store (``fs://DIR``), or Istio 0.3's
    when the store holds none."""
    if not config_store_url.startswith("fs://"):
        return ISTIO_0_3
    path = Path(config_store_url.removeprefix("fs://")) / PROMETHEUS_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return ISTIO_0_3
    metrics = config["metrics"]
    return MetricNames(metrics["requestCount"], metrics["requestDuration"], metrics["requestSize"],
                       metrics["responseSize"], duration_buckets=tuple(map(float, config["durationBuckets"])),
                       size_buckets=tuple(map(float, config["sizeBuckets"])))


def receive(sock: socket.socket, metrics: Metrics) -> None:
    while True:
        datagram = sock.recv(65535)
        report = parse_report(datagram)
        if report is None:
            metrics.rejected += 1
            continue
        metrics.record(report)


def handler_for(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Prometheus(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404, "try /metrics")
                return
            body = metrics.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Prometheus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mixer", description="Local Mixer with a Prometheus adapter.")
    parser.add_argument("--reportPort", type=int, default=9125)
    parser.add_argument("--prometheusPort", type=int, default=42422)
    parser.add_argument("--configStoreURL", default="")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    metrics = Metrics(names=handler_config(args.configStoreURL))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", args.reportPort))
    threading.Thread(target=receive, args=(sock, metrics), name="reports", daemon=True).start()
    server = HttpServer(("0.0.0.0", args.prometheusPort), handler_for(metrics))
    return serve_until_stopped(server, stop_event(), f"mixer: reports on udp/{args.reportPort}, metrics on "
                                                     f":{args.prometheusPort}/metrics")


if __name__ == "__main__":
    sys.exit(main())
