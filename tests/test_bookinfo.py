"""Tests for the local Bookinfo services, run as real subprocesses on loopback."""

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import pytest
from helpers import loopback_server

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT = 5.0
REVIEWS_DOWN = "Sorry, product reviews are currently unavailable for this book."
DETAILS_DOWN = "Sorry, product details are currently unavailable for this book."
RATINGS_DOWN = "Ratings service is currently unavailable"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hand 3xx responses back to the caller instead of following them."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Workload:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def call(port: int, path: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> Response:
    request = urllib.request.Request(f"http://{LOOPBACK}:{port}{path}", data=data, headers=headers or {})
    try:
        with OPENER.open(request, timeout=5) as reply:
            return Response(reply.status, dict(reply.headers), reply.read().decode())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, dict(error.headers), error.read().decode())


def upstream_env(**ports: int) -> dict[str, str]:
    env = {}
    for service, port in ports.items():
        env[f"{service.upper()}_HOSTNAME"] = LOOPBACK
        env[f"{service.upper()}_SERVICE_PORT"] = str(port)
    return env


def spawn(service: str, version: str, log_dir: Path, env: dict[str, str] | None = None,
          image_tag: str = "local") -> Workload:
    port = free_port()
    log = log_dir / f"{service}-{version}-{port}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "pytest_nginmesh.workloads.bookinfo", service, version,
               "--port", str(port), "--bind", LOOPBACK, "--image-tag", image_tag]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT)
    return Workload(process, port, log)


def stop(workloads: list[Workload]) -> None:
    """Signal every still-running workload first, then reap them (killing stragglers)."""
    live = [w.process for w in workloads if w.process.poll() is None]
    for process in live:
        process.terminate()
    for process in live:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_healthy(*workloads: Workload) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = list(workloads)
    while pending:
        workload = pending[0]
        assert workload.process.poll() is None, f"exited early:\n{workload.output()}"
        try:
            if call(workload.port, "/health").status == 200:
                pending.pop(0)
                continue
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not healthy in time:\n{workload.output()}"
        time.sleep(0.02)


@contextmanager
def running(specs: list[tuple[str, str, dict[str, str]]], log_dir: Path,
            image_tag: str = "local") -> Iterator[list[Workload]]:
    """Start services (of the Bookinfo release of ``image_tag``) in parallel, wait for all to be healthy, stop them
    all afterwards."""
    workloads: list[Workload] = []
    try:
        for service, version, env in specs:
            workloads.append(spawn(service, version, log_dir, env, image_tag))
        wait_healthy(*workloads)
        yield workloads
    finally:
        stop(workloads)


class RecordingRatings(BaseHTTPRequestHandler):
    """A ratings stand-in that remembers the headers of each request."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        body = json.dumps({"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class AbortingRatings(BaseHTTPRequestHandler):
    """A ratings call aborted by a fault rule: the sidecar answers 500 in its place."""

    def do_GET(self) -> None:
        body = b"fault filter abort"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bookinfo")


@pytest.fixture(scope="module")
def mesh(log_dir: Path) -> Iterator[dict[str, int]]:
    """details, ratings, reviews v1-v3 and a productpage in front of each reviews version."""
    with running([("details", "v1", {}), ("ratings", "v1", {})], log_dir) as (details, ratings):
        reviews_specs = [("reviews", v, upstream_env(ratings=ratings.port)) for v in ("v1", "v2", "v3")]
        with running(reviews_specs, log_dir) as reviewers:
            page_specs = [
                ("productpage", "v1", upstream_env(details=details.port, reviews=r.port, ratings=ratings.port))
                for r in reviewers
            ]
            with running(page_specs, log_dir) as pages:
                ports = {f"page-{v}": page.port for v, page in zip(("v1", "v2", "v3"), pages, strict=True)}
                yield {**ports, "details": details.port, "ratings": ratings.port}


@pytest.fixture
def recording_ratings() -> Iterator[tuple[int, list[dict[str, str]]]]:
    seen: ClassVar[list[dict[str, str]]] = []
    with loopback_server(type("Recorder", (RecordingRatings,), {"seen": seen})) as port:
        yield port, seen


def test_v1_page_has_book_details_and_reviews_without_stars(mesh: dict[str, int]) -> None:
    page = call(mesh["page-v1"], "/productpage")
    assert page.status == 200
    for text in ("Simple Bookstore App", "The Comedy of Errors", "paperback", "PublisherA", "123-1234567890",
                 "The slapstick humour is refreshing!", "Reviewer2", 'action="login"'):
        assert text in page.body
    assert page.body.count("<blockquote>") == 2
    assert "<font color=" not in page.body


@pytest.mark.parametrize(("page", "color"), [("page-v2", "black"), ("page-v3", "red")])
def test_rated_pages_show_coloured_stars(mesh: dict[str, int], page: str, color: str) -> None:
    body = call(mesh[page], "/productpage").body
    assert body.count(f'<font color="{color}">') == 2
    assert body.count('class="glyphicon glyphicon-star"') == 9
    assert body.count('class="glyphicon glyphicon-star-empty"') == 1


def test_backend_json(mesh: dict[str, int]) -> None:
    details = json.loads(call(mesh["details"], "/details/7").body)
    assert details["id"] == 7 and details["ISBN-10"] == "1234567890"
    ratings = json.loads(call(mesh["ratings"], "/ratings/3").body)
    assert ratings == {"id": 3, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}
    reviews = json.loads(call(mesh["page-v3"], "/api/v1/products/0/reviews").body)
    assert reviews["id"] == "0"
    assert [r["rating"] for r in reviews["reviews"]] == [{"stars": 5, "color": "red"}, {"stars": 4, "color": "red"}]
    assert json.loads(call(mesh["page-v1"], "/api/v1/products").body)[0]["title"] == "The Comedy of Errors"
    assert json.loads(call(mesh["page-v1"], "/api/v1/products/0/ratings").body)["id"] == 0


def test_bad_id_and_unknown_path(mesh: dict[str, int]) -> None:
    assert call(mesh["details"], "/details/abc").status == 400
    assert "error" in json.loads(call(mesh["page-v1"], "/api/v1/products/x").body)
    assert call(mesh["ratings"], "/nope").status == 404
    assert call(mesh["page-v1"], "/login").status == 404


def test_login_logout_and_cookie_reaches_ratings(
    log_dir: Path, recording_ratings: tuple[int, list[dict[str, str]]]
) -> None:
    ratings_port, seen = recording_ratings
    reviews_spec = [("reviews", "v2", upstream_env(ratings=ratings_port))]
    with running(reviews_spec, log_dir) as (reviews,):
        page_spec = [("productpage", "v1", upstream_env(details=free_port(), reviews=reviews.port))]
        with running(page_spec, log_dir) as (page,):
            login = call(page.port, "/login", data=b"username=jason&passwd=x")
            assert (login.status, login.headers["Location"]) == (302, "/productpage")
            assert login.headers["Set-Cookie"].startswith("user=jason")
            trace = {"x-request-id": "req-1", "x-b3-traceid": "abc", "x-b3-sampled": "1"}
            body = call(page.port, "/productpage", {"Cookie": "user=jason", **trace}).body
            logout = call(page.port, "/logout", {"Cookie": "user=jason"})
    assert "signed in as <b>jason</b>" in body and 'href="logout"' in body
    assert DETAILS_DOWN in body and 'color="black"' in body
    assert seen and seen[-1]["Cookie"] == "user=jason"
    assert {k.lower(): v for k, v in seen[-1].items() if k.lower() in trace} == trace
    assert logout.status == 302 and logout.headers["Set-Cookie"].startswith('user=""')


def test_reviews_down(log_dir: Path, mesh: dict[str, int]) -> None:
    spec = [("productpage", "v1", upstream_env(details=mesh["details"], reviews=free_port()))]
    with running(spec, log_dir) as (page,):
        response = call(page.port, "/productpage")
        api = call(page.port, "/api/v1/products/0/reviews")
    assert response.status == 200 and REVIEWS_DOWN in response.body and "PublisherA" in response.body
    assert api.status == 503 and json.loads(api.body) == {"error": REVIEWS_DOWN}


def test_ratings_down_behind_v2(log_dir: Path, mesh: dict[str, int]) -> None:
    with running([("reviews", "v2", upstream_env(ratings=free_port()))], log_dir) as (reviews,):
        spec = [("productpage", "v1", upstream_env(details=mesh["details"], reviews=reviews.port))]
        with running(spec, log_dir) as (page,):
            body = call(page.port, "/productpage").body
    assert body.count(RATINGS_DOWN) == 2 and "<font color=" not in body


@pytest.mark.parametrize(("image_tag", "shown"), [("0.2.3", None), ("0.2.8", None), ("1.5.0", RATINGS_DOWN)])
def test_a_releases_reviews_show_a_failed_ratings_call_as_that_release(log_dir: Path, mesh: dict[str, int],
                                                                       image_tag: str, shown: str | None) -> None:
    """Istio's reviews write the error text from 0.5.0 on; the 0.2.3 and 0.2.8 images leave the stars out."""
    with loopback_server(AbortingRatings) as ratings, \
            running([("reviews", "v2", upstream_env(ratings=ratings))], log_dir, image_tag) as (reviews,):
        spec = [("productpage", "v1", upstream_env(details=mesh["details"], reviews=reviews.port))]
        with running(spec, log_dir, image_tag) as (page,):
            body = call(page.port, "/productpage").body
            api = json.loads(call(reviews.port, "/reviews/0").body)
    assert "<font color=" not in body and "Reviewer2" in body
    if shown is None:
        assert RATINGS_DOWN not in body and all("rating" not in review for review in api["reviews"])
    else:
        assert body.count(shown) == 2


@pytest.mark.parametrize(("image_tag", "aborted", "unreachable"),
                         [("0.2.3", 500, 500), ("0.2.8", 500, 500), ("1.5.0", 500, 500), ("local", 503, 503)])
def test_productpage_relays_a_failed_upstreams_status_as_its_release_does(
        log_dir: Path, image_tag: str, aborted: int, unreachable: int) -> None:
    """Istio's productpage answers with the upstream's own status (500 when nothing answered); the local one 503."""
    with loopback_server(AbortingRatings) as ratings:
        spec = [("productpage", "v1", upstream_env(details=free_port(), reviews=free_port(), ratings=ratings))]
        with running(spec, log_dir, image_tag) as (page,):
            ratings_api = call(page.port, "/api/v1/products/0/ratings")
            details_api = call(page.port, "/api/v1/products/0")
    assert ratings_api.status == aborted and "ratings are currently unavailable" in ratings_api.body
    assert details_api.status == unreachable and json.loads(details_api.body) == {"error": DETAILS_DOWN}


@pytest.mark.parametrize(
    ("service", "version", "signum"),
    [("productpage", "v1", signal.SIGTERM), ("details", "v1", signal.SIGTERM),
     ("reviews", "v3", signal.SIGTERM), ("ratings", "v1", signal.SIGTERM), ("ratings", "v1", signal.SIGINT)],
)
def test_signal_exits_cleanly_and_logs_requests(
    log_dir: Path, service: str, version: str, signum: signal.Signals
) -> None:
    with running([(service, version, {})], log_dir) as (workload,):
        workload.process.send_signal(signum)
        assert workload.process.wait(timeout=5) == 0
    assert '"GET /health HTTP/1.1" 200' in workload.output()


def test_rejects_unknown_version() -> None:
    command = [sys.executable, "-m", "pytest_nginmesh.workloads.bookinfo", "details", "v2", "--port", "0"]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, timeout=10)
    assert result.returncode == 2 and b"details has versions v1" in result.stderr


@contextmanager
def mongodb(log_dir: Path) -> Iterator[int]:
    """The mongodb image's program (the ratings database stand-in) on a free loopback port, until the block ends."""
    port = free_port()
    with (log_dir / f"mongodb-{port}.log").open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "pytest_nginmesh.workloads.mongodb", "--port", str(port)],
                                   cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=sink,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                socket.create_connection((LOOPBACK, port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "mongodb did not start"
                time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(5)


def test_ratings_v2_reads_the_ratings_from_its_database(log_dir: Path) -> None:
    """Istio's ratings.js v2: the first two documents of the database's ratings collection."""
    with mongodb(log_dir) as database, \
            running([("ratings", "v2", {"MONGO_DB_URL": f"mongodb://{LOOPBACK}:{database}/test"})], log_dir) \
            as (ratings,):
        reply = call(ratings.port, "/ratings/0")
    assert (reply.status, json.loads(reply.body)) == (200, {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})


@pytest.mark.parametrize(("url", "error"), [
    ("mongodb://127.0.0.1:{closed}/test", "could not connect to ratings database"),  # nothing listens
    ("", "could not connect to ratings database"),  # MONGO_DB_URL unset
    ("mongodb://127.0.0.1:{database}/nodb", "could not load ratings from database"),  # no such collection
])
def test_ratings_v2_answers_500_when_its_database_fails_it(log_dir: Path, url: str, error: str) -> None:
    with mongodb(log_dir) as database:
        env = {"MONGO_DB_URL": url.format(closed=free_port(), database=database)} if url else {}
        with running([("ratings", "v2", env)], log_dir) as (ratings,):
            reply = call(ratings.port, "/ratings/0")
    assert (reply.status, json.loads(reply.body)) == (500, {"error": error})
