"""The ``examples-bookinfo-mongodb`` image: a stand-in for the database of Bookinfo's ratings v2, since MongoDB
cannot run here. It holds what Istio's image loads at start (istio/istio samples/bookinfo/src/mongodb: script.sh
imports ratings_data.json into database ``test``, collection ``ratings``: ratings 5 and 4) and answers the one
query ratings v2 makes, every document of a collection, as JSON over HTTP (``GET /<database>/<collection>``) on
MongoDB's port: the local data plane proxies it as Istio proxies the TCP service, and an agent that proxies no
TCP service closes the connection as it would close MongoDB's."""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler

from ._common import HttpServer, send_json, serve_until_stopped, stop_event

MONGODB_PORT = 27017
DATABASES: dict[str, dict[str, list[dict[str, object]]]] = {"test": {"ratings": [{"rating": 5}, {"rating": 4}]}}


class Collections(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        print(f"mongodb: {self.address_string()} {format % args}", flush=True)

    def do_GET(self) -> None:
        database, _, collection = self.path.strip("/").partition("/")
        documents = DATABASES.get(database, {}).get(collection)
        if documents is None:
            send_json(self, 404, {"error": f"ns not found: {database}.{collection}"})
        else:
            send_json(self, 200, documents)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mongodb")
    parser.add_argument("--port", type=int, default=MONGODB_PORT)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    server = HttpServer(("0.0.0.0", args.port), Collections)
    return serve_until_stopped(server, stop_event(), f"mongodb: serving {', '.join(DATABASES)} on :{args.port}")


if __name__ == "__main__":
    sys.exit(main())
