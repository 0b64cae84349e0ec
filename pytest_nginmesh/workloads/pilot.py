"""The ``pilot`` image: Pilot as a client of the Kubernetes API. At start it registers the Istio config CRDs; it
lists and watches services, endpoints, pods, route rules and ingresses and builds the mesh snapshot it serves to
the agents. As the local reference (``versionedPush`` in the twin's agent config, the default) it also takes the
agents' config acks (each only from the pod it names) and publishes which version each live proxy runs in the
ConfigMap ``nginmesh-proxy-status``; a release's twin does neither, as the release's Pilot (Envoy v1 REST)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from ..cluster.published_versions import PROXY_STATUS_CONFIGMAP, PROXY_STATUS_NAMESPACE
from ..errors import ClusterError, ForbiddenError, ManifestError, NginmeshError, NotFoundError
from ..kube import Obj
from ..mesh.istio_crds import istio_crds
from ..mesh.manifests import AGENT_CONFIG_KEY, AGENT_CONFIG_MAP, AGENT_CONFIG_PATH, CONTROL_PLANE_NAMESPACE, AgentConfig
from ..mesh.proxy_status import ACK_PATH, AckBook, ProxyAck, status_config_map, status_data
from ..mesh.snapshot import WATCHED, MeshCache
from ._common import HttpServer, send_json, serve_until_stopped, stop_event
from ._kubeclient import ConflictError, KubeClient

MESH_PATH = "/v1/mesh"
MAX_LONG_POLL = 30.0
WATCH_SECONDS = 300
RETRY_PERIOD = 0.5
MAX_ACK_BYTES = 64 * 1024
# Istio's Pilot (1.1 on) holds a push until its config events have been quiet for PILOT_DEBOUNCE_AFTER (100 ms),
# at most PILOT_DEBOUNCE_MAX (10 s) after the first (istio/istio pilot/pkg/features/pilot.go), so that a burst of
# writes (a file of rules applied object by object, a rollout's endpoint updates) becomes one push rather than one
# per object. The local Pilot does the same, with a quiet period fit for one small cluster's writes (~20 ms apart).
DEBOUNCE_AFTER = 0.05
DEBOUNCE_MAX = 1.0
CRD_PATH = "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions"
STATUS_PATH = f"/api/v1/namespaces/{PROXY_STATUS_NAMESPACE}/configmaps/{PROXY_STATUS_CONFIGMAP}"


class Pilot:
    """The caches, the acks and the publisher; the HTTP handler and the watch threads call into it."""

    def __init__(self, api: KubeClient, stop: threading.Event, versioned_push: bool = True) -> None:
        self.api = api
        self.stop = stop
        self.versioned_push = versioned_push
        self.cache = MeshCache()
        self.acks = AckBook()
        self.dirty = threading.Event()
        self.last_config_event = 0.0  # time.monotonic() of the latest watch event
        self.first_pending_event: float | None = None  # of the first one not yet in a served snapshot
        self.current: Obj | None = None  # the snapshot served now, once every kind is listed
        self.changed = threading.Condition()

    def register_crds(self) -> None:
        """Create the Istio config CRDs, as Pilot 0.2.12 does at start; existing ones are left as they are."""
        for crd in istio_crds():
            with contextlib.suppress(ConflictError):
                self.api.request("POST", CRD_PATH, crd)

    def watch(self, kind: str) -> None:
        """Keep one kind's cache: list, then watch from the list's resourceVersion; again when the watch ends."""
        path = WATCHED[kind]
        while not self.stop.is_set():
            try:
                listing = self.api.request("GET", path)
                self.cache.replace(kind, listing.get("items") or [], listing["metadata"]["resourceVersion"])
                self.config_changed()
                for event_type, obj in self.api.watch(path, listing["metadata"]["resourceVersion"], WATCH_SECONDS):
                    self.cache.apply(kind, event_type, obj)
                    self.config_changed()
                    if self.stop.is_set():
                        return
            except NginmeshError as e:
                print(f"pilot: {kind}: {e}", flush=True)
                self.stop.wait(RETRY_PERIOD)

    def config_changed(self) -> None:
        now = time.monotonic()
        if self.first_pending_event is None:
            self.first_pending_event = now
        self.last_config_event = now
        self.dirty.set()

    def debounce(self) -> None:
        """Return once config events have been quiet for DEBOUNCE_AFTER, or DEBOUNCE_MAX after the first of them
        (at once when the latest is older: an ack alone is published without delay)."""
        while not self.stop.is_set():
            now = time.monotonic()
            quiet_at = self.last_config_event + DEBOUNCE_AFTER
            latest = (self.first_pending_event if self.first_pending_event is not None else now) + DEBOUNCE_MAX
            if now >= quiet_at or now >= latest:
                return
            self.stop.wait(min(quiet_at, latest) - now)

    @classmethod
    def for_twin(cls, api: KubeClient, stop: threading.Event) -> Pilot:
        """The Pilot of the release the agent config names (the local reference without one)."""
        try:
            configmap = fetch_agent_config(api)
        except NotFoundError:
            return cls(api, stop)
        config = AgentConfig.parse((configmap.get("data") or {}).get(AGENT_CONFIG_KEY, "{}"),
                                   f"ConfigMap {AGENT_CONFIG_MAP} key {AGENT_CONFIG_KEY}")
        return cls(api, stop, config.versioned_push)

    def take_ack(self, body: Obj, peer_ip: str) -> None:
        ack = ProxyAck(str(body["namespace"]), str(body["pod"]), str(body["version"]),
                       str(body.get("rejectedVersion") or ""), str(body.get("rejection") or ""))
        if self.acks.record(ack, self.cache.pod(ack.namespace, ack.pod), peer_ip):
            self.dirty.set()

    def publish(self) -> None:
        """Whenever a watch (debounced) or an ack changed something: rebuild the snapshot and write the ConfigMap
        when its data or the resourceVersion Pilot has seen changed."""
        published: tuple[dict[str, str], int] | None = None
        while not self.stop.is_set():
            if not self.dirty.wait(1.0):
                continue
            if not self.cache.ready:  # a snapshot before every kind is listed would leave services or rules out
                self.stop.wait(0.01)
                continue
            self.debounce()
            self.dirty.clear()
            self.first_pending_event = None
            observed = self.cache.observed  # read before the snapshot: the annotation never claims too much
            snapshot = self.cache.snapshot()
            self.serve(snapshot)
            if not self.versioned_push:
                continue
            with self.cache.lock:
                pods = dict(self.cache.objects["Pod"])
            data = status_data(str(snapshot["version"]), self.acks.live(pods))
            if (data, observed) == published:
                continue
            try:
                self._write_status(status_config_map(data, observed, WATCHED.values()))
            except ClusterError as e:
                print(f"pilot: cannot publish the proxy status: {e}", flush=True)
                self.dirty.set()
                self.stop.wait(RETRY_PERIOD)
                continue
            published = (data, observed)

    def serve(self, snapshot: Obj) -> None:
        """Serve ``snapshot`` from now on, answering the polls held for a change."""
        with self.changed:
            self.current = snapshot
            self.changed.notify_all()

    def snapshot_after(self, known: str, wait: float) -> Obj | None:
        """The snapshot served now, once its version is not ``known`` or ``wait`` seconds have passed (a long
        poll: an agent that has ``known`` hears of a change at once)."""
        with self.changed:
            self.changed.wait_for(lambda: self.current is not None and self.current.get("version") != known,
                                  timeout=min(wait, MAX_LONG_POLL))
            return self.current

    def _write_status(self, configmap: Obj) -> None:
        try:
            self.api.request("PUT", STATUS_PATH, configmap)
        except NotFoundError:
            self.api.request("POST", STATUS_PATH.rsplit("/", 1)[0], configmap)

def fetch_agent_config(api: KubeClient) -> Obj:
    """The twin's agent config ConfigMap the installer rendered from the profile (NotFoundError without one)."""
    return dict(api.request("GET", f"/api/v1/namespaces/{CONTROL_PLANE_NAMESPACE}/configmaps/{AGENT_CONFIG_MAP}"))


def discovery_handler(pilot: Pilot) -> type[BaseHTTPRequestHandler]:
    class Discovery(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == MESH_PATH:
                # ?known=VERSION&wait=SECONDS: answer once the mesh is not at VERSION, or after SECONDS.
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                try:
                    wait = float(query.get("wait", 0))
                except ValueError:
                    wait = 0.0
                current = pilot.snapshot_after(query["known"], wait) if "known" in query and wait > 0 else pilot.current
                self._reply(*((200, current) if current is not None else
                              (503, {"message": "pilot has not listed the mesh yet"})))
            elif self.path == AGENT_CONFIG_PATH:
                # The twin's agent config: the agent takes what it knows of the mesh from Pilot, as the real one does.
                try:
                    self._reply(200, fetch_agent_config(pilot.api))
                except NotFoundError as e:
                    self._reply(404, {"message": str(e)})
                except ClusterError as e:
                    self._reply(503, {"message": str(e)})
            elif self.path == "/healthz":
                self._reply(200, {"status": "ok"})
            else:
                self._reply(404, {"message": f"no such path {self.path}"})

        def do_POST(self) -> None:
            if self.path != ACK_PATH or not pilot.versioned_push:
                self._reply(404, {"message": f"no such path {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_ACK_BYTES:
                    raise ValueError(f"an ack is a JSON object of at most {MAX_ACK_BYTES} bytes")
                body = json.loads(self.rfile.read(length))
                pilot.take_ack(body, self.client_address[0])
            except ForbiddenError as e:
                self._reply(403, {"message": str(e), "reason": "Forbidden"})
            except (ValueError, KeyError, TypeError) as e:
                self._reply(400, {"message": f"bad ack: {e}", "reason": "BadRequest"})
            else:
                self._reply(200, {"status": "accepted"})

        def _reply(self, status: int, body: object) -> None:
            send_json(self, status, body)

    return Discovery


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pilot", description="Local Pilot discovery service.")
    parser.add_argument("command", nargs="?", default="discovery")
    parser.add_argument("--port", type=int, default=15003)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    stop = stop_event()
    try:
        pilot = Pilot.for_twin(KubeClient.in_cluster(), stop)
        pilot.register_crds()
    except (ClusterError, ManifestError) as e:
        print(f"pilot: {e}", flush=True)
        return 1
    for kind in WATCHED:
        threading.Thread(target=pilot.watch, args=(kind,), name=f"watch-{kind}", daemon=True).start()
    threading.Thread(target=pilot.publish, name="publish", daemon=True).start()
    server = HttpServer(("0.0.0.0", args.port), discovery_handler(pilot))
    publishing = "publishing the proxies' acks" if pilot.versioned_push else "publishing no proxy status"
    return serve_until_stopped(server, stop, f"pilot: serving discovery on :{args.port}, {publishing}")


if __name__ == "__main__":
    sys.exit(main())
