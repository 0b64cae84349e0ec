"""The ``pilot`` image: serves the mesh snapshot (services, endpoints, route rules, ingresses) to agents, and
publishes which version each live proxy runs in the ConfigMap ``nginmesh-proxy-status``.

Agents ack the version they apply to the cluster's API server themselves, from their own pod, so that
an ack can be checked to come from the proxy it concerns.
"""

from __future__ import annotations

import argparse
import sys
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from ..cluster.local.api import ApiClient, send_json
from ..errors import ClusterError
from ..mesh.manifests import AGENT_CONFIG_MAP, AGENT_CONFIG_PATH, CONTROL_PLANE_NAMESPACE
from ..mesh.proxy_status import ProxyAck, status_config_map, status_data
from ._common import HttpServer, api_socket, stop_event

# How often Pilot looks for a new mesh version or ack to publish: well under the 0.1 s within which the
# ConfigMap must follow them.
PUBLISH_PERIOD = 0.02


class Discovery(BaseHTTPRequestHandler):
    api: ApiClient

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/v1/mesh":
            try:
                status, body = 200, self.api.get("/api/mesh")
            except ClusterError as e:
                status, body = 503, {"message": str(e)}
        elif self.path == AGENT_CONFIG_PATH:
            # The twin's agent config: the agent takes what it knows of the mesh from Pilot, as the real one does.
            try:
                status, body = 200, self.api.get("/api/object", kind="ConfigMap", namespace=CONTROL_PLANE_NAMESPACE,
                                                 name=AGENT_CONFIG_MAP)
            except ClusterError as e:
                status, body = 404, {"message": str(e)}
        elif self.path == "/healthz":
            status, body = 200, {"status": "ok"}
        else:
            status, body = 404, {"message": f"no such path {self.path}"}
        self._reply(status, body)

    def _reply(self, status: int, body: object) -> None:
        send_json(self, status, body)


def publish_proxy_status(api: ApiClient, stop: threading.Event) -> None:
    """Keep the ConfigMap nginmesh-proxy-status equal to the mesh version served now and the live proxies'
    acks; written only when its data changes."""
    published: dict[str, str] | None = None
    while not stop.is_set():
        try:
            version = str(api.get("/api/mesh")["version"])
            acks = [ProxyAck(a["namespace"], a["pod"], a["version"], a.get("rejectedVersion", ""),
                             a.get("rejection", "")) for a in api.get("/api/proxy-status")]
            data = status_data(version, acks)
            if data != published:
                api.post("/api/apply", {"objects": [status_config_map(data)]})
                published = data
        except ClusterError as e:
            print(f"pilot: cannot publish the proxy status: {e}", flush=True)
            stop.wait(1.0)
        stop.wait(PUBLISH_PERIOD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pilot", description="Local Pilot discovery service.")
    parser.add_argument("command", nargs="?", default="discovery")
    parser.add_argument("--port", type=int, default=15003)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    Discovery.api = ApiClient(api_socket())
    server = HttpServer(("0.0.0.0", args.port), Discovery)
    stop = stop_event()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Thread(target=publish_proxy_status, args=(Discovery.api, stop), name="proxy-status",
                     daemon=True).start()
    print(f"pilot: serving discovery on :{args.port}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
