"""The ``sidecar_initializer`` image: Istio's Initializer, injecting sidecars into pending workloads through the
Kubernetes API, as Kubernetes 1.7-1.9 initializers work (kubernetes/kubernetes#36721): it lists and watches the
injected kinds with ``includeUninitialized=true``, takes the objects whose first pending initializer is its own,
and PUTs each back (injected or not) without itself in ``metadata.initializers.pending``. It writes the proxy's
command line as the injector of the Istio release its image's tag names (profiles.INJECTOR_ARGS)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from ..errors import ClusterError, NginmeshError, NotFoundError
from ..injection_policy import ProxyArgs
from ..kube import Obj
from ..mesh.injection import INITIALIZER_NAME, INJECT_CONFIG_MAP, InjectConfig, MeshConfig, inject, wants_injection
from ..profiles import LOCAL_INJECTOR, injector_args
from ._common import stop_event
from ._kubeclient import ConflictError, KubeClient

# The kinds the InitializerConfiguration of Istio 0.2.12 names (install/kubernetes/istio-initializer.yaml:
# deployments, statefulsets, jobs, daemonsets), at the group versions this cluster serves them.
WATCHED = {"Deployment": "/apis/apps/v1/deployments", "StatefulSet": "/apis/apps/v1/statefulsets",
           "DaemonSet": "/apis/apps/v1/daemonsets", "Job": "/apis/batch/v1/jobs"}
WATCH_SECONDS = 300
UNINITIALIZED_TOO = {"includeUninitialized": "true"}
RETRY_PERIOD = 0.5


def pending_for(obj: Obj, initializer: str) -> bool:
    """Whether ``initializer`` is the first pending one: initializers run in order, each when it is first."""
    pending = ((obj.get("metadata") or {}).get("initializers") or {}).get("pending") or []
    return bool(pending) and pending[0].get("name") == initializer


def initialized(obj: Obj, initializer: str) -> Obj:
    """The object without ``initializer`` in its pending list (the API server drops an emptied list)."""
    result = dict(obj)
    meta = result["metadata"] = dict(obj["metadata"])
    pending = [p for p in meta["initializers"].get("pending") or [] if p.get("name") != initializer]
    meta["initializers"] = {**meta["initializers"], "pending": pending}
    return result


def object_path(collection: str, obj: Obj) -> str:
    group_version, plural = collection.rsplit("/", 1)
    return f"{group_version}/namespaces/{obj['metadata']['namespace']}/{plural}/{obj['metadata']['name']}"


class Initializer:
    """Handles each pending workload once: the config is read from the API each time, as it may change."""

    def __init__(self, api: KubeClient, namespace: str, name: str, args: ProxyArgs) -> None:
        self.api, self.namespace, self.name, self.args = api, namespace, name, args

    def configs(self) -> tuple[InjectConfig, MeshConfig]:
        config = InjectConfig.from_configmap(self.api.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/configmaps/{INJECT_CONFIG_MAP}"))
        try:
            mesh_map = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/configmaps/"
                                               f"{config.mesh_config_map_name}")
        except NotFoundError:
            mesh_map = None
        return config, MeshConfig.from_configmap(mesh_map, self.args)

    def handle(self, collection: str, workload: Obj) -> bool:
        """Inject (when wanted) and initialize one workload; False when it was not this initializer's turn."""
        if not pending_for(workload, self.name):
            return False
        config, mesh = self.configs()
        if wants_injection(workload, config):
            workload = inject(workload, config, mesh, self.args)
            print(f"initializer: injected {workload['kind']}/{workload['metadata']['name']}", flush=True)
        with contextlib.suppress(ConflictError, NotFoundError):  # changed or gone meanwhile: the watch brings
            self.api.request("PUT", object_path(collection, workload), initialized(workload, self.name))  # any news
        return True

    def run(self, collection: str, stop: threading.Event) -> None:
        """List, then watch from the list's resourceVersion; start over when the watch ends or fails."""
        while not stop.is_set():
            try:
                listing = self.api.request("GET", collection, query=UNINITIALIZED_TOO)
                for item in listing.get("items") or []:
                    self.handle(collection, item)
                events = self.api.watch(collection, listing["metadata"]["resourceVersion"], WATCH_SECONDS,
                                        UNINITIALIZED_TOO)
                for event_type, obj in events:
                    if stop.is_set():
                        return
                    if event_type in ("ADDED", "MODIFIED"):
                        self.handle(collection, obj)
            except NginmeshError as e:
                print(f"initializer: {collection}: {e}", flush=True)
                stop.wait(RETRY_PERIOD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sidecar-initializer")
    parser.add_argument("--port", default="8083")
    parser.add_argument("--namespace", default="istio-system")
    parser.add_argument("-v", dest="verbosity", default="2")
    parser.add_argument("--initializer-name", default=INITIALIZER_NAME)
    parser.add_argument("--image-tag", default=LOCAL_INJECTOR, help="the Istio release this injector is")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    stop = stop_event()
    try:
        api = KubeClient.in_cluster()
    except ClusterError as e:
        print(f"initializer: {e}", flush=True)
        return 1
    initializer = Initializer(api, args.namespace, args.initializer_name, injector_args(args.image_tag))
    print(f"initializer: watching for {args.initializer_name}, injecting as Istio {args.image_tag}", flush=True)
    for collection in WATCHED.values():
        threading.Thread(target=initializer.run, args=(collection, stop), name=collection, daemon=True).start()
    stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
