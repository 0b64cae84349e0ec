"""The ``httpbin`` image (Istio's httpbin sample): status codes, delays and header echo on demand."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler
from typing import NoReturn

from ._common import HttpServer

MAX_DELAY = 10.0


class HttpBin(BaseHTTPRequestHandler):
    server_version = "httpbin-local"

    def log_message(self, format: str, *args: object) -> None:
        rid = self.headers.get("x-request-id", "-") if hasattr(self, "headers") else "-"
        print(f"httpbin: {self.address_string()} {format % args} rid={rid}", flush=True)

    def _json(self, status: int, body: object) -> None:
        data = (json.dumps(body, indent=2) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _request(self) -> dict[str, object]:
        return {"headers": dict(self.headers.items()), "url": self.path, "method": self.command}

    def do_GET(self) -> None:
        parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
        if parts[:1] == ["status"] and len(parts) == 2 and parts[1].isdigit() and 100 <= int(parts[1]) <= 599:
            self._json(int(parts[1]), {"status": int(parts[1])})
        elif parts[:1] == ["delay"] and len(parts) == 2:
            try:
                seconds = min(MAX_DELAY, max(0.0, float(parts[1])))
            except ValueError:
                return self._json(400, {"error": "give /delay/SECONDS"})
            time.sleep(seconds)
            self._json(200, {**self._request(), "delay": seconds})
        elif parts[:1] == ["headers"]:
            self._json(200, {"headers": dict(self.headers.items())})
        elif parts[:1] in (["get"], ["anything"], []):
            self._json(200, self._request())
        else:
            self._json(404, {"error": f"no such path {self.path}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="httpbin")
    parser.add_argument("--port", type=int, default=8000)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    server = HttpServer(("0.0.0.0", args.port), HttpBin)

    def stop(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"httpbin: listening on :{args.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
