"""What the local programs share: writable directories, HTTP without proxies, JSON answers, signals, the HTTP server
class."""

from __future__ import annotations

import json
import os
import signal
import tempfile
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def writable_dir(path: str) -> Path:
    """``path`` when the container can write there (a volume is mounted at it), else the same path below the
    container's private /tmp: its root filesystem is read-only, as the ingress finds at /etc/istio/proxy."""
    wanted = Path(path)
    if wanted.is_dir() and os.access(wanted, os.W_OK):
        return wanted
    fallback = Path(tempfile.gettempdir(), *wanted.parts[1:]) if wanted.is_absolute() else Path.cwd() / wanted
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def stop_event() -> threading.Event:
    """An event set by SIGTERM or SIGINT, for programs whose main loop polls."""
    event = threading.Event()

    def handle(signum: int, frame: object) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return event


def send_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    """Answer a request with ``body`` as JSON."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def get_json(url: str, timeout: float) -> object:
    with NO_PROXY_OPENER.open(url, timeout=timeout) as response:
        return json.loads(response.read())


class HttpServer(ThreadingHTTPServer):
    """A threaded HTTP server with a listen backlog fit for load: socketserver's default of 5 refuses (or
    delays by a SYN retry, 1 s) a burst of 20 clients. 511 is NGINX's default backlog on Linux (nginx.org
    docs, ngx_http_core_module ``listen``: "backlog ... 511 on other platforms"); the kernel caps it at
    net.core.somaxconn."""

    daemon_threads = True
    request_queue_size = 511


def serve_until_stopped(server: HttpServer, stop: threading.Event, banner: str) -> int:
    """Serve from a thread, say ``banner`` once serving, and shut down when ``stop`` is set (SIGTERM): the
    main loop of a program that only serves."""
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    print(banner, flush=True)
    stop.wait()
    server.shutdown()
    return 0
