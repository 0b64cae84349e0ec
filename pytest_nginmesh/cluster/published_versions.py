"""The proxy config versions a control plane publishes through the Kubernetes API (the embedded cluster's Pilot
does, pytest_nginmesh/workloads/pilot.py; real Nginmesh publishes nothing of the kind), and how a client judges
convergence by them. Light on imports: the control plane's own programs read these names."""

from __future__ import annotations

import json
from typing import Any

from ..errors import ClusterError
from ..injection_policy import PROXY_CONTAINER
from ..kube import Obj

# Where a control plane that knows which config version each proxy runs publishes it (the embedded cluster's
# Pilot): data "mesh-version" is the version served now, "<namespace>.<pod>" a JSON {"version": …,
# ["rejectedVersion": …, "rejection": …]} per live proxy. Real Nginmesh publishes nothing of the kind.
PROXY_STATUS_NAMESPACE, PROXY_STATUS_CONFIGMAP = "istio-system", "nginmesh-proxy-status"
MESH_VERSION_KEY = "mesh-version"
# Annotations of that ConfigMap: the highest resourceVersion the control plane had seen when it wrote it, of the
# collections it watches (their API paths, comma-separated). Writes to those collections are judged exactly by
# them: the status shows a write once the observed resourceVersion reaches the write's. The adapter knows its own
# writes' resourceVersions; others' (a controller's Endpoints once a pod is ready) it reads from the collections.
PROXY_STATUS_OBSERVED = "nginmesh.io/observed-resource-version"
PROXY_STATUS_WATCHED = "nginmesh.io/watched-collections"
PROXY_STATUS_POLL_INTERVAL = 0.05


def watched_collections(proxy_status: Obj) -> list[str]:
    """The API paths of the collections the control plane that published ``proxy_status`` watches."""
    annotations = (proxy_status.get("metadata") or {}).get("annotations") or {}
    return [path for path in str(annotations.get(PROXY_STATUS_WATCHED, "")).split(",") if path]


def unseen_writes(proxy_status: Obj, written: dict[str, int]) -> str:
    """What the control plane that published ``proxy_status`` has not seen yet of the writes ``written``
    (collection path -> latest resourceVersion) to the collections it watches; "" when it has seen them all, or
    publishes no resourceVersion."""
    annotations = (proxy_status.get("metadata") or {}).get("annotations") or {}
    observed = str(annotations.get(PROXY_STATUS_OBSERVED, ""))
    if not observed.isdigit():
        return ""
    watched = set(watched_collections(proxy_status))
    latest = max((version for path, version in written.items() if path in watched), default=0)
    if int(observed) >= latest:
        return ""
    return f"the control plane has seen resourceVersion {observed}, not yet the write at {latest}"


def published_convergence(published: dict[str, str], pods: list[Obj]) -> tuple[str | None, str]:
    """Whether every proxy of a running pod is ready and runs the mesh version Pilot serves, by what the
    control plane published (PROXY_STATUS_CONFIGMAP): (the version, "") when so, else (None, what is behind).
    A proxy that is not ready (crashed, restarting, not yet serving) holds convergence back: it may still
    route the old way, or not at all. A proxy that rejected the current version raises ClusterError."""
    target = published.get(MESH_VERSION_KEY)
    if not target:
        return None, "no mesh-version published yet"
    behind = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        proxies = proxy_containers(pod)
        if status.get("phase") != "Running" or meta.get("deletionTimestamp") or not proxies:
            continue
        entry = proxy_entry(published.get(f"{meta['namespace']}.{meta['name']}"))
        if entry.get("rejectedVersion") == target:
            raise ClusterError(f"proxy {meta['namespace']}/{meta['name']} rejected mesh config {target}: "
                               f"{entry.get('rejection')}")
        ready = {s.get("name"): s.get("ready") for s in status.get("containerStatuses") or []}
        for proxy in proxies:
            if not ready.get(proxy):
                behind.append(f"{proxy} of {meta['name']} not ready")
            elif entry.get("version") != target:
                behind.append(f"{proxy} of {meta['name']} at {entry.get('version') or 'nothing'}")
    if behind:
        return None, f"mesh version {target}; {', '.join(behind)}"
    return target, ""


def proxy_containers(pod: Obj) -> list[str]:
    """The pod's mesh proxies: the injected sidecar, and any container running pilot-agent's ``proxy``
    command (the ingress: ``proxy ingress``; istio/istio pilot/cmd/pilot-agent/main.go, 0.2 to 0.7)."""
    return [str(c["name"]) for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name") == PROXY_CONTAINER or (c.get("args") or [None])[0] == "proxy"]


def proxy_entry(text: str | None) -> dict[str, Any]:
    try:
        entry = json.loads(text) if text else {}
    except ValueError:
        return {}
    return entry if isinstance(entry, dict) else {}
