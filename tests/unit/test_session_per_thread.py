"""The route suites' HTTP sessions (pytest_nginmesh.traffic.SessionPerThread) against a real server on loopback
that closes a kept-alive connection as the next request goes out, as NGINX does with its idle connections
when a reload retires its workers: the GET goes again once, on a new connection; other failures stay failures."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from pytest_nginmesh.traffic import SessionPerThread

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


def serve(drops: int) -> socket.socket:
    """Answers the first request and keeps its connection open; the ``drops`` requests after it, on whatever
    connection, are dropped unanswered (the connection closed); then requests are answered again."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen = [0]

    def handle(connection: socket.socket) -> None:
        with connection:
            while connection.recv(65536):
                seen[0] += 1
                if 1 < seen[0] <= 1 + drops:
                    return  # closed with the request unanswered
                connection.sendall(OK)

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


@pytest.fixture
def url_dropping_once() -> Iterator[str]:
    listener = serve(drops=1)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    listener.close()


def test_a_request_dropped_unanswered_on_a_kept_alive_connection_goes_again(url_dropping_once: str) -> None:
    with SessionPerThread() as sessions:
        assert sessions.get(url_dropping_once, timeout=5).status_code == 200
        assert sessions.get(url_dropping_once, timeout=5).status_code == 200  # dropped, then sent again


def test_a_server_that_keeps_dropping_fails_the_request() -> None:
    listener = serve(drops=2)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    try:
        with SessionPerThread() as sessions:
            sessions.get(url, timeout=5)
            with pytest.raises(requests.ConnectionError):
                sessions.get(url, timeout=5)
    finally:
        listener.close()


def test_a_refused_connection_is_not_sent_again() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with SessionPerThread() as sessions, pytest.raises(requests.ConnectionError):
        sessions.get(f"http://127.0.0.1:{port}/", timeout=5)
