"""The pod and service subresources that are more than objects: ``exec``, ``log`` and ``services/proxy``.

exec speaks the WebSocket remote-command protocol of kubelet and kube-apiserver
(k8s.io/apimachinery/pkg/util/remotecommand): sub-protocols ``v5.channel.k8s.io`` and ``v4.channel.k8s.io``,
one leading byte per message naming the stream (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; v5 adds
255 to close a stream), and the command's end as a ``Status`` on the error stream.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ....kube import Obj
from .status import ApiError, bad_request
from .websocket import Closed, WebSocket

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
FOLLOW_POLL = 0.2


def choose_protocol(offered: str) -> str:
    """The newest channel protocol both sides speak; a 400 names ours when none matches."""
    wanted = [p.strip() for p in offered.split(",") if p.strip()]
    for protocol in PROTOCOLS:
        if protocol in wanted:
            return protocol
    raise bad_request(f"unable to upgrade connection: none of the requested sub-protocols {wanted} is supported; "
                      f"supported: {', '.join(PROTOCOLS)}")


def exit_status(command: list[str], code: int) -> Obj:
    """What the error stream carries when a command ends (kubelet's remotecommand.ExitCodeError shape)."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": f"command terminated with non-zero exit code: error executing command {command}, "
                       f"exit code {code}",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def run_exec(reader: io.BufferedIOBase, writer: io.BufferedIOBase, protocol: str, argv: list[str], env: dict[str, str],
             command: list[str], streams: set[str], timeout: float) -> None:
    """Run ``argv`` and carry its streams over the WebSocket until it exits (bounded by ``timeout``)."""
    socket = WebSocket(reader, writer)
    process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE if "stdin" in streams else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def pump(source: IO[bytes] | None, channel: int, wanted: bool) -> None:
        if source is None:
            return
        for chunk in iter(lambda: source.read1(65536), b""):  # type: ignore[attr-defined]
            if wanted:
                try:
                    socket.send(bytes([channel]) + chunk)
                except OSError:
                    return

    def feed() -> None:
        try:
            while True:
                message = socket.receive()
                if not message or process.stdin is None:
                    continue
                channel, data = message[0], message[1:]
                if channel == STDIN:
                    process.stdin.write(data)
                    process.stdin.flush()
                elif channel == CLOSE and data[:1] == bytes([STDIN]):
                    process.stdin.close()
        except (Closed, OSError, ValueError):
            if process.poll() is None and process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()

    pumps = [threading.Thread(target=pump, args=(process.stdout, STDOUT, "stdout" in streams), daemon=True),
             threading.Thread(target=pump, args=(process.stderr, STDERR, "stderr" in streams), daemon=True)]
    for thread in pumps:
        thread.start()
    threading.Thread(target=feed, daemon=True).start()
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    for thread in pumps:
        thread.join(5)
    try:
        socket.send(bytes([ERROR]) + json.dumps(exit_status(command, code)).encode())
        socket.close()
    except OSError:
        pass


def log_chunks(path: Path, tail_lines: int | None, follow: bool, alive: Callable[[], bool],
               limit_bytes: int | None) -> Iterator[bytes]:
    """A container's log: the last ``tail_lines`` lines, then (following) what it writes until it is gone."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    if tail_lines is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail_lines:]) if tail_lines else b""
        offset = path.stat().st_size if path.exists() else 0
    else:
        offset = len(data)
    if limit_bytes is not None:
        data = data[:limit_bytes]
    if data:
        yield data
    while follow and alive():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return
        if size > offset:
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read(size - offset)
            offset = size
            yield chunk
        else:
            time.sleep(FOLLOW_POLL)


def proxy_to_service(address: str, port: int, method: str, path: str, query: str, headers: dict[str, str],
                     body: bytes, timeout: float) -> tuple[int, bytes, str]:
    """Forward one request to a service address, as kube-apiserver's services/proxy does."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    forwarded = {k: v for k, v in headers.items()
                 if k not in ("authorization", "host", "connection", "content-length", "transfer-encoding")}
    try:
        connection.request(method, path + (f"?{query}" if query else ""), body=body or None, headers=forwarded)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "text/plain")
    except OSError as e:
        raise ApiError(503, "ServiceUnavailable", f"error trying to reach service: {e}") from None
    finally:
        connection.close()
