"""Sending marked requests from inside pods and finding them in proxy logs: live proof of capture."""

from __future__ import annotations

import http.client
import threading
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .cluster.base import Cluster, wait_for
from .errors import ClusterError

if TYPE_CHECKING:
    import requests

# Runs under Python 2 or 3, whichever the application image has (Bookinfo's productpage has one). With an
# interval, requests go out on a fixed schedule and each one's latency counts from when it was due, so that a
# stall delays the requests that should have gone out meanwhile too (no coordinated omission, as wrk2 measures).
# The schedule starts at an absolute time when one is given (several clients on one schedule); a client that
# starts after that sends nothing and exits SCHEDULE_MISSED, since its first requests would count the delay.
SCHEDULE_MISSED = 75  # the script's exit status then (EX_TEMPFAIL)
REQUEST_SCRIPT = """
import sys, time
try:
    from urllib.request import Request, urlopen
    from urllib.error import HTTPError
except ImportError:
    from urllib2 import Request, urlopen, HTTPError
headers = {"x-request-id": sys.argv[2]}
if sys.argv[3]:
    headers["Cookie"] = sys.argv[3]
interval = float(sys.argv[5])
first = float(sys.argv[6]) if sys.argv[6] else time.time()
if sys.argv[6] and time.time() > first:
    sys.stderr.write("started %.3fs after the schedule\\n" % (time.time() - first))
    sys.exit(75)
for i in range(int(sys.argv[4])):
    started = time.time()
    if interval:
        due = first + i * interval
        if due > started:
            time.sleep(due - started)
        started = due
    try:
        response = urlopen(Request(sys.argv[1], headers=headers), timeout=30)
        response.read()
        status = response.getcode()
    except HTTPError as e:
        status = e.code
    print("%d %.6f" % (status, time.time() - started))
"""


class ScheduleMissed(ClusterError):
    """A client started after the time its schedule began: nothing was sent; try again with more lead."""


def new_marker() -> str:
    return f"nginmesh-probe-{uuid.uuid4()}"


def request_with_python(cluster: Cluster, namespace: str, pod: str, container: str, url: str, marker: str,
                        cookie: str = "") -> int:
    """GET ``url`` from a container with the Python it has; returns the HTTP status (errors included)."""
    return requests_with_python(cluster, namespace, pod, container, url, marker, 1, cookie)[0][0]


def requests_with_python(cluster: Cluster, namespace: str, pod: str, container: str, url: str, marker: str,
                         count: int, cookie: str = "", interval: float = 0.0,
                         start_at: float | None = None) -> list[tuple[int, float]]:
    """GET ``url`` ``count`` times from a container; each request's status and seconds, as the client saw. With
    ``interval``, one request is due every ``interval`` seconds and its latency counts from when it was due;
    with ``start_at`` (seconds since the epoch, on the pod's clock) the first one is due then."""
    command = ["sh", "-c", 'exec "$(command -v python3 || command -v python)" -c "$0" "$1" "$2" "$3" "$4" "$5" "$6"',
               REQUEST_SCRIPT, url, marker, cookie, str(count), repr(interval),
               "" if start_at is None else repr(start_at)]
    result = cluster.exec(namespace, pod, command, container=container, timeout=30 + (35 + interval) * count)
    if start_at is not None and result.returncode == SCHEDULE_MISSED:
        raise ScheduleMissed(f"{namespace}/{pod}: {result.stderr.strip()}")
    return [(int(status), float(seconds)) for status, seconds in
            (line.split() for line in result.check().stdout.strip().splitlines())]


def request_with_curl(cluster: Cluster, namespace: str, pod: str, container: str, url: str, marker: str) -> int:
    """GET ``url`` from a container with curl (the proxy_debug image ships it); returns the HTTP status."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "10", "-H", f"x-request-id: {marker}",
               url]
    result = cluster.exec(namespace, pod, command, container=container).check()
    return int(result.stdout.strip() or 0)


def wait_for_marker(cluster: Cluster, namespace: str, pod: str, container: str, marker: str,
                    timeout: float) -> str:
    """Wait until the marker shows in the container's log; returns the line that has it."""

    def probe() -> tuple[str | None, str]:
        log = cluster.logs(namespace, pod, container)
        line = next((line for line in log.splitlines() if marker in line), None)
        return line, f"{len(log.splitlines())} log lines, none with the marker"

    return wait_for(f"request {marker} in the log of {pod}/{container}", probe, timeout)


def marker_absent(cluster: Cluster, namespace: str, pod: str, container: str, marker: str) -> bool:
    try:
        return marker not in cluster.logs(namespace, pod, container)
    except ClusterError:
        return True


def marker_count(cluster: Cluster, namespace: str, pod: str, container: str, marker: str) -> int:
    return sum(1 for line in cluster.logs(namespace, pod, container).splitlines() if marker in line)


def dropped_before_answering(error: BaseException) -> bool:
    """Whether a request failed because the server closed the connection without a byte of response."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (http.client.RemoteDisconnected, ConnectionResetError)):
            return True
        seen = seen.__cause__ or seen.__context__ or (seen.args[1] if len(seen.args) > 1 and
                                                       isinstance(seen.args[1], BaseException) else None)
    return False


class SessionPerThread:
    """HTTP sessions for requests sent from several threads at once (route sampling): each thread gets a
    ``requests.Session`` of its own, as requests promises no thread safety for one, sending ``headers`` with
    every request; ``close`` closes them all."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self._headers = dict(headers or {})
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers.update(self._headers)
            with self._lock:
                self._sessions.append(session)
        try:
            return session.get(url, **kwargs)
        except requests.ConnectionError as e:
            if not dropped_before_answering(e):
                raise
            # The server closed a kept-alive connection as the request went out (NGINX retires its idle
            # connections when a reload replaces its workers): nothing was answered, so the GET goes again
            # on a new connection, as Go's http.Transport and browsers retry an idempotent request on a
            # reused connection that closes before any response.
            return session.get(url, **kwargs)

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def __enter__(self) -> SessionPerThread:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
