"""The ``sidecar_initializer`` image: Istio's Initializer, injecting sidecars into pending workloads."""

from __future__ import annotations

import argparse
import sys

from ..cluster.local.api import ApiClient
from ..errors import NginmeshError
from ..mesh.injection import INITIALIZER_NAME, InjectConfig, MeshConfig, inject, wants_injection
from ._common import api_socket, stop_event


def initialize_pending(api: ApiClient, namespace: str) -> int:
    """Handle every workload waiting for this initializer; returns how many were handled."""
    configmap = api.get("/api/object", kind="ConfigMap", namespace=namespace, name="istio-inject")
    config = InjectConfig.from_configmap(configmap)
    try:
        mesh_map = api.get("/api/object", kind="ConfigMap", namespace=namespace, name=config.mesh_config_map_name)
    except NginmeshError:
        mesh_map = None
    mesh = MeshConfig.from_configmap(mesh_map)
    pending = api.get("/api/uninitialized", initializer=config.initializer_name)
    for workload in pending:
        if wants_injection(workload, config):
            workload = inject(workload, config, mesh)
            print(f"initializer: injected {workload['kind']}/{workload['metadata']['name']}", flush=True)
        api.post("/api/initialize", {"object": workload, "initializer": config.initializer_name})
    return len(pending)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sidecar-initializer")
    parser.add_argument("--port", default="8083")
    parser.add_argument("--namespace", default="istio-system")
    parser.add_argument("-v", dest="verbosity", default="2")
    parser.add_argument("--initializer-name", default=INITIALIZER_NAME)
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    api = ApiClient(api_socket())
    stop = stop_event()
    print(f"initializer: watching for {args.initializer_name}", flush=True)
    while not stop.is_set():
        try:
            initialize_pending(api, args.namespace)
        except NginmeshError as e:
            print(f"initializer: {e}", flush=True)
        stop.wait(0.3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
