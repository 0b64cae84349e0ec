"""The local Mixer (pytest_nginmesh.workloads.mixer): syslog report parsing, metrics, and the program on loopback.

Reports are built from the proxies' own log format (``report_format`` in mesh.nginx_routes) and wrapped as
NGINX's ``access_log syslog:...,tag=nginmesh,nohostname`` sends them: ``<PRI>TIMESTAMP TAG: MESSAGE``.
The exposition is read back with the same parser the checks use (``parse_scrape``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_nginmesh.checks.metrics import (
    DURATION_BUCKETS,
    ISTIO_0_2,
    SIZE_BUCKETS,
    MetricsParseError,
    SampleKey,
    Scrape,
    check_buckets,
    parse_scrape,
    split_by,
    total,
)
from pytest_nginmesh.mesh.manifests import MIXER_CONFIG_KEY, mixer_config_map
from pytest_nginmesh.mesh.nginx_routes import report_format
from pytest_nginmesh.profiles import get_profile
from pytest_nginmesh.workloads.mixer import LABELS, Metrics, handler_config, parse_report

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PRODUCTPAGE = "productpage.default.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
COUNT = "istio_request_count"
SYSLOG_HEADER = "<190>Nov 25 04:59:00 nginmesh: "  # local7.info, RFC 3164 timestamp, tag; no hostname
START_TIMEOUT = 5.0
POLL_TIMEOUT = 5.0


def nginx_report(destination: str, version: str, **values: str) -> dict[str, str]:
    """The JSON object NGINX logs with ``report_format``: every ``$variable`` replaced by a value.

    ``values`` are keyed by variable name without ``$`` (``status``, ``request_time``...)."""
    line = report_format("nginmesh_test", destination, version)
    template: dict[str, str] = json.loads(line[line.index("'") + 1:line.rindex("'")])
    defaults = {"nginmesh_source_service": PRODUCTPAGE, "nginmesh_source_version": "v1", "status": "200",
                "request_time": "0.010", "request_length": "312", "bytes_sent": "520",
                "nginmesh_request_id": "5f0c2c3e-8a4e-4f4b-9d3a-0c3f6f0e7a11"}
    defaults.update(values)
    report = {}
    for field, value in template.items():
        if value.startswith("$"):
            assert value[1:] in defaults, f"report_format uses {value}; give the test a value for it"
            value = defaults[value[1:]]
        report[field] = value
    return report


def syslog_datagram(report: Mapping[str, str]) -> bytes:
    return (SYSLOG_HEADER + json.dumps(report, separators=(",", ":"))).encode()


def series(**labels: str) -> frozenset[tuple[str, str]]:
    full = dict.fromkeys(LABELS, "unknown")
    full.update(labels)
    assert set(full) == set(LABELS)
    return frozenset(full.items())


def read_back(metrics: Metrics) -> Scrape:
    return parse_scrape(metrics.exposition())


# ---------------------------------------------------------------------------------------------------- parse_report


def test_report_format_fields() -> None:
    report = nginx_report(REVIEWS, "v2")
    assert set(LABELS) <= set(report)
    assert {"response_duration", "request_size", "response_size"} <= set(report)
    assert report["destination_service"] == REVIEWS
    assert report["destination_version"] == "v2"


def test_parse_report_from_an_nginx_syslog_datagram() -> None:
    report = nginx_report(REVIEWS, "v1", status="503", request_time="0.004")
    datagram = syslog_datagram(report)
    assert datagram.startswith(b"<190>Nov 25 04:59:00 nginmesh: {")
    assert parse_report(datagram) == report


def test_parse_report_with_a_single_digit_day_and_escaped_json() -> None:
    report = nginx_report(REVIEWS, "v1", nginmesh_source_service='odd "name" \\ here')
    datagram = b"<190>Nov  5 04:59:00 nginmesh: " + json.dumps(report).encode()
    assert parse_report(datagram) == report


def test_parse_report_bare_json() -> None:
    assert parse_report(b'{"source_service":"a","response_code":"200"}') == {"source_service": "a",
                                                                              "response_code": "200"}
    assert parse_report(b'  {"a":"b"}\n') == {"a": "b"}


def test_parse_report_survives_bad_utf8_in_the_header() -> None:
    assert parse_report(b"<190>\xff\xfe nginmesh: " + b'{"a":"b"}') == {"a": "b"}


@pytest.mark.parametrize("datagram", [
    b"",
    b"hello",
    b"<190>Nov 25 04:59:00 nginmesh: not json at all",
    b"<190>Nov 25 04:59:00 nginmesh: {not json}",
    b'<190>Nov 25 04:59:00 nginmesh: {"source_service":"a"',
    b'<190>Nov 25 04:59:00 nginmesh: {"a":"b"} trailing',
    b'[{"source_service":"a"}]',
    b'<190>Nov 25 04:59:00 nginmesh: [{"a":"b"},{"c":"d"}]',
    b'<190>Nov 25 04:59:00 nginmesh: ["a", "b"]',
    b'"{\\"a\\":\\"b\\"}"',
])
def test_parse_report_rejects(datagram: bytes) -> None:
    assert parse_report(datagram) is None


# ------------------------------------------------------------------------------------------ Metrics and exposition


def test_a_counter_per_label_set() -> None:
    metrics = Metrics()
    for version, times in (("v1", 3), ("v2", 2)):
        for _ in range(times):
            metrics.record(nginx_report(REVIEWS, version))
    metrics.record(nginx_report(RATINGS, "v1", status="503", nginmesh_source_service=REVIEWS,
                                nginmesh_source_version="v3"))
    scrape = read_back(metrics)
    counters = {k.labels: v for k, v in scrape.items() if k.name == COUNT}
    assert counters == {
        series(source_service=PRODUCTPAGE, source_version="v1", destination_service=REVIEWS,
               destination_version="v1", response_code="200"): 3,
        series(source_service=PRODUCTPAGE, source_version="v1", destination_service=REVIEWS,
               destination_version="v2", response_code="200"): 2,
        series(source_service=REVIEWS, source_version="v3", destination_service=RATINGS,
               destination_version="v1", response_code="503"): 1,
    }
    assert split_by(scrape, COUNT, "destination_version", destination_service=REVIEWS) == {"v1": 3, "v2": 2}


def test_missing_or_empty_labels_become_unknown() -> None:
    metrics = Metrics()
    metrics.record({})
    metrics.record({"source_service": "", "destination_service": REVIEWS, "response_code": "200"})
    counters = {k.labels: v for k, v in read_back(metrics).items() if k.name == COUNT}
    assert counters == {series(): 1, series(destination_service=REVIEWS, response_code="200"): 1}


def test_duration_histogram_is_cumulative_and_consistent() -> None:
    metrics = Metrics()
    for duration in ("0.004", "0.02", "3.0"):
        metrics.record(nginx_report(REVIEWS, "v1", request_time=duration))
    scrape = read_back(metrics)
    labels = series(source_service=PRODUCTPAGE, source_version="v1", destination_service=REVIEWS,
                    destination_version="v1", response_code="200")

    def bucket(le: str) -> float:
        return scrape[SampleKey("istio_request_duration_bucket", labels | {("le", le)})]

    assert bucket("0.005") == 1
    assert bucket("0.01") == 1
    assert bucket("0.025") == 2
    assert bucket("2.5") == 2
    assert bucket("5.0") == 3
    assert bucket("10.0") == 3
    assert bucket("+Inf") == 3
    assert scrape[SampleKey("istio_request_duration_sum", labels)] == pytest.approx(3.024)
    assert scrape[SampleKey("istio_request_duration_count", labels)] == 3
    bounds = [repr(b) for b in DURATION_BUCKETS] + ["+Inf"]
    written = [bucket(le) for le in bounds]
    assert written == sorted(written)
    assert total(scrape, "istio_request_duration_bucket") == sum(written)  # no buckets besides these


def test_size_histograms() -> None:
    metrics = Metrics()
    metrics.record(nginx_report(REVIEWS, "v1", request_length="312", bytes_sent="52000"))
    metrics.record(nginx_report(REVIEWS, "v1", request_length="10", bytes_sent="180"))
    scrape = read_back(metrics)
    for name, values in (("istio_request_size", (312, 10)), ("istio_response_size", (52000, 180))):
        assert total(scrape, name + "_sum") == sum(values)
        assert total(scrape, name + "_count") == 2
        for bound in SIZE_BUCKETS:
            assert total(scrape, name + "_bucket", le=repr(bound)) == sum(v <= bound for v in values), (name, bound)
        assert total(scrape, name + "_bucket", le="+Inf") == 2


def test_size_histograms_have_istios_nine_bounds() -> None:
    metrics = Metrics()
    metrics.record(nginx_report(REVIEWS, "v1", request_length="312", bytes_sent="52000"))
    scrape = read_back(metrics)
    for name in ("istio_request_size", "istio_response_size"):
        assert check_buckets(scrape, name, SIZE_BUCKETS) == []
    assert len(SIZE_BUCKETS) == 9


def test_the_handler_config_a_profile_renders_names_the_metrics(tmp_path: Path) -> None:
    """Istio 0.2.12's names have no istio_ prefix; the mixer reads them from its config store volume."""
    configmap = mixer_config_map(get_profile("nginmesh-0.2.12"))
    (tmp_path / MIXER_CONFIG_KEY).write_text(configmap["data"][MIXER_CONFIG_KEY])
    names = handler_config(f"fs://{tmp_path}")
    assert names == ISTIO_0_2
    metrics = Metrics(names=names)
    metrics.record(nginx_report(REVIEWS, "v1"))
    scrape = read_back(metrics)
    assert total(scrape, "request_count") == 1
    assert total(scrape, "istio_request_count") == 0
    assert check_buckets(scrape, "request_size", ISTIO_0_2.size_buckets) == []
    assert check_buckets(scrape, "request_duration", ISTIO_0_2.duration_buckets) == []


def test_without_a_handler_config_the_mixer_serves_istio_0_3_names(tmp_path: Path) -> None:
    assert handler_config(f"fs://{tmp_path}").request_count == "istio_request_count"
    assert handler_config("").request_count == "istio_request_count"


@pytest.mark.parametrize("value", ["-", "", "abc", "inf", "nan", "1e999"])
def test_non_numeric_size_counts_as_zero(value: str) -> None:
    metrics = Metrics()
    metrics.record(nginx_report(REVIEWS, "v1", request_length=value, request_time=value))
    scrape = read_back(metrics)
    for name in ("istio_request_size", "istio_request_duration"):
        assert total(scrape, name + "_count") == 1
        assert total(scrape, name + "_sum") == 0
        assert total(scrape, name + "_bucket", le="+Inf") == 1
    assert total(scrape, "istio_request_size_bucket", le="1.0") == 1  # 0 is in the smallest bucket


def test_label_values_with_quotes_and_backslashes_read_back_exactly() -> None:
    odd = 'say "hi" \\ C:\\path\\"x\\'
    metrics = Metrics()
    metrics.record({"source_service": odd, "destination_service": REVIEWS, "destination_version": '\\"'})
    scrape = read_back(metrics)
    counters = {k.labels: v for k, v in scrape.items() if k.name == COUNT}
    assert counters == {series(source_service=odd, destination_service=REVIEWS, destination_version='\\"'): 1}
    assert total(scrape, "istio_request_duration_count", source_service=odd) == 1


def test_label_values_with_newlines_read_back_exactly() -> None:
    metrics = Metrics()
    metrics.record({"source_service": "line one\nline two", "destination_service": REVIEWS})
    metrics.record({"destination_service": RATINGS})
    text = metrics.exposition()
    try:
        scrape = parse_scrape(text)
    except MetricsParseError as e:
        raise AssertionError(f"exposition does not parse: {e}") from e
    assert total(scrape, COUNT, source_service="line one\nline two") == 1
    assert total(scrape, COUNT, destination_service=RATINGS) == 1


def test_empty_metrics_exposition() -> None:
    text = Metrics().exposition()
    assert text.endswith("\n")
    assert "# TYPE istio_request_count counter" in text
    for name in ("istio_request_duration", "istio_request_size", "istio_response_size"):
        assert f"# TYPE {name} histogram" in text
    assert parse_scrape(text) == {}


def test_non_string_values_are_labels_too() -> None:
    metrics = Metrics()
    metrics.record({"destination_service": REVIEWS, "response_code": 200, "response_duration": 0.5})  # type: ignore[dict-item]
    scrape = read_back(metrics)
    assert total(scrape, COUNT, response_code="200") == 1
    assert total(scrape, "istio_request_duration_sum") == 0.5


# ------------------------------------------------------------------------------------------- the program, loopback


@dataclass
class Mixer:
    process: subprocess.Popen[str]
    report_port: int
    prometheus_port: int

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.prometheus_port}{path}"

    def send(self, datagram: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(datagram, (LOOPBACK, self.report_port))

    def get(self, path: str) -> tuple[int, str, str]:
        with OPENER.open(self.url(path), timeout=2) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=3)


def start_mixer() -> Mixer | None:
    """The mixer program on fresh ports, once /metrics answers; None if it exited (a port was taken)."""
    report_port, prometheus_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_nginmesh.workloads.mixer", "--reportPort", str(report_port),
         "--prometheusPort", str(prometheus_port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mixer = Mixer(process, report_port, prometheus_port)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                process.communicate(timeout=3)
                return None
            try:
                mixer.get("/metrics")
                return mixer
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
    except BaseException:
        stop(process)
        raise
    stop(process)
    out, err = process.communicate(timeout=3)
    pytest.fail(f"mixer did not answer on :{prometheus_port}/metrics in {START_TIMEOUT}s\n{out}\n{err}")


@pytest.fixture
def mixer() -> Iterator[Mixer]:
    started = None
    for _ in range(3):
        started = start_mixer()
        if started is not None:
            break
    if started is None:
        pytest.fail("the mixer exited at start three times (ports taken?)")
    try:
        yield started
    finally:
        stop(started.process)
        if started.process.stdout is not None:
            started.process.stdout.close()
        if started.process.stderr is not None:
            started.process.stderr.close()


def poll_scrape(mixer: Mixer, requests: int) -> Scrape:
    """The scrape once the mixer has counted ``requests`` requests (bounded by POLL_TIMEOUT)."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        _, _, body = mixer.get("/metrics")
        scrape = parse_scrape(body)
        if total(scrape, COUNT) >= requests or time.monotonic() > deadline:
            return scrape
        time.sleep(0.05)


def test_mixer_program_on_loopback(mixer: Mixer) -> None:
    status, content_type, body = mixer.get("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert parse_scrape(body) == {}

    for duration in ("0.004", "0.02", "3.0"):
        mixer.send(syslog_datagram(nginx_report(REVIEWS, "v1", request_time=duration)))
    mixer.send(b"<190>Nov 25 04:59:00 nginmesh: not a report")  # rejected; the receiver carries on
    mixer.send(b"[1, 2]")
    for _ in range(2):
        mixer.send(syslog_datagram(nginx_report(REVIEWS, "v2")))
    mixer.send(syslog_datagram(nginx_report(RATINGS, "v1", status="503", nginmesh_source_service="",
                                            nginmesh_source_version="")))
    mixer.send(json.dumps(nginx_report(PRODUCTPAGE, "v1")).encode())  # bare JSON

    scrape = poll_scrape(mixer, 7)
    assert total(scrape, COUNT) == 7
    assert split_by(scrape, COUNT, "destination_version", destination_service=REVIEWS) == {"v1": 3, "v2": 2}
    assert total(scrape, COUNT, source_service="unknown", source_version="unknown", destination_service=RATINGS,
                 response_code="503") == 1
    assert total(scrape, COUNT, destination_service=PRODUCTPAGE) == 1
    v1 = {"destination_service": REVIEWS, "destination_version": "v1"}
    assert total(scrape, "istio_request_duration_bucket", le="0.005", **v1) == 1
    assert total(scrape, "istio_request_duration_bucket", le="0.025", **v1) == 2
    assert total(scrape, "istio_request_duration_bucket", le="5.0", **v1) == 3
    assert total(scrape, "istio_request_duration_bucket", le="+Inf", **v1) == 3
    assert total(scrape, "istio_request_duration_sum", **v1) == pytest.approx(3.024)
    assert total(scrape, "istio_request_duration_count", **v1) == 3
    assert total(scrape, "istio_response_size_count") == 7

    status, _, body = mixer.get("/metrics?format=text")
    assert status == 200
    assert total(parse_scrape(body), COUNT) == 7

    with pytest.raises(urllib.error.HTTPError) as caught:
        mixer.get("/other")
    assert caught.value.code == 404
    caught.value.close()

    mixer.process.send_signal(signal.SIGTERM)
    assert mixer.process.wait(timeout=5) == 0
    out, _ = mixer.process.communicate(timeout=3)
    assert f"reports on udp/{mixer.report_port}, metrics on :{mixer.prometheus_port}/metrics" in out
