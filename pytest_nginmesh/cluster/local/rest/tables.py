"""``meta.k8s.io/v1`` Table answers, so ``kubectl get`` prints what it prints against kube-apiserver.

Columns and cell values follow kube-apiserver's printers (pkg/printers/internalversion/printers.go):
pods show NAME, READY 2/2, STATUS, RESTARTS, AGE (and IP, NODE, … with ``-o wide``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from ....kube import Obj

Column = tuple[str, str, int]  # name, type, priority (1: only with -o wide)
Row = list[Any]


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration: 5s, 3m20s, 2h, 4d, 2y."""
    s = int(seconds)
    if s < 0:
        return "<invalid>"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.UTC) - then).total_seconds())


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _pod_status(pod: Obj) -> tuple[str, int, str]:
    """STATUS, RESTARTS and READY as kubectl's printPod works them out."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Pending"
    containers = status.get("containerStatuses") or []
    init = status.get("initContainerStatuses") or []
    restarts = sum(int(c.get("restartCount", 0)) for c in containers + init)
    initializing = False
    for index, container in enumerate(init):
        state = container.get("state") or {}
        terminated = state.get("terminated")
        if terminated and terminated.get("exitCode") == 0:
            continue
        initializing = True
        waiting = state.get("waiting") or {}
        if terminated:
            reason = f"Init:{terminated.get('reason') or 'Signal:' + str(terminated.get('signal', ''))}"
        elif waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = f"Init:{waiting['reason']}"
        else:
            reason = f"Init:{index}/{len((pod.get('spec') or {}).get('initContainers') or [])}"
        break
    if not initializing:
        running = False
        for container in reversed(containers):
            state = container.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("running") and container.get("ready"):
                running = True
        if reason == "Completed" and running:
            reason = "Running"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    ready = sum(1 for c in containers if c.get("ready"))
    total = len((pod.get("spec") or {}).get("containers") or []) or len(containers)
    return reason, restarts, f"{ready}/{total}"


def _pod(pod: Obj) -> Row:
    reason, restarts, ready = _pod_status(pod)
    status = pod.get("status") or {}
    return [_meta(pod).get("name"), ready, reason, restarts, age(_meta(pod).get("creationTimestamp")),
            status.get("podIP") or "<none>", (pod.get("spec") or {}).get("nodeName") or "<none>", "<none>", "<none>"]


def _ports(service: Obj) -> str:
    parts = []
    for port in (service.get("spec") or {}).get("ports") or []:
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        parts.append(f"{port.get('port')}{node_port}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _service(service: Obj) -> Row:
    spec = service.get("spec") or {}
    kind = spec.get("type", "ClusterIP")
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    external = ",".join(i.get("ip") or i.get("hostname", "") for i in ingress) or ",".join(
        spec.get("externalIPs") or []) or ("<pending>" if kind == "LoadBalancer" else "<none>")
    selector = ",".join(f"{k}={v}" for k, v in (spec.get("selector") or {}).items()) or "<none>"
    return [_meta(service).get("name"), kind, spec.get("clusterIP") or "<none>", external, _ports(service),
            age(_meta(service).get("creationTimestamp")), selector]


def _deployment(deployment: Obj) -> Row:
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return [_meta(deployment).get("name"), f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            status.get("updatedReplicas", 0), status.get("availableReplicas", 0),
            age(_meta(deployment).get("creationTimestamp")), ",".join(c.get("name", "") for c in containers),
            ",".join(c.get("image", "") for c in containers), selector or "<none>"]


def _endpoints(endpoints: Obj) -> Row:
    addresses = [f"{a['ip']}:{p['port']}" for s in endpoints.get("subsets") or []
                 for a in s.get("addresses") or [] for p in s.get("ports") or []]
    shown = ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")
    return [_meta(endpoints).get("name"), shown or "<none>", age(_meta(endpoints).get("creationTimestamp"))]


def _event(event: Obj) -> Row:
    involved = event.get("involvedObject") or {}
    return [age(event.get("lastTimestamp") or event.get("eventTime")), event.get("type", ""), event.get("reason", ""),
            f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}", event.get("message", "")]


def _name_age(obj: Obj) -> Row:
    return [_meta(obj).get("name"), age(_meta(obj).get("creationTimestamp"))]


PRINTERS: dict[str, tuple[list[Column], Callable[[Obj], Row]]] = {
    "Pod": ([("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
             ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
             ("Readiness Gates", "string", 1)], _pod),
    "Service": ([("Name", "string", 0), ("Type", "string", 0), ("Cluster-IP", "string", 0),
                 ("External-IP", "string", 0), ("Port(s)", "string", 0), ("Age", "string", 0),
                 ("Selector", "string", 1)], _service),
    "Deployment": ([("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "integer", 0),
                    ("Available", "integer", 0), ("Age", "string", 0), ("Containers", "string", 1),
                    ("Images", "string", 1), ("Selector", "string", 1)], _deployment),
    "Endpoints": ([("Name", "string", 0), ("Endpoints", "string", 0), ("Age", "string", 0)], _endpoints),
    "Event": ([("Last Seen", "string", 0), ("Type", "string", 0), ("Reason", "string", 0), ("Object", "string", 0),
               ("Message", "string", 0)], _event),
    "Namespace": ([("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
                  lambda o: [_meta(o).get("name"), (o.get("status") or {}).get("phase", "Active"),
                             age(_meta(o).get("creationTimestamp"))]),
    "ConfigMap": ([("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
                  lambda o: [_meta(o).get("name"), len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                             age(_meta(o).get("creationTimestamp"))]),
    "Secret": ([("Name", "string", 0), ("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
               lambda o: [_meta(o).get("name"), o.get("type", "Opaque"), len(o.get("data") or {}),
                          age(_meta(o).get("creationTimestamp"))]),
}


def _json_path(obj: Obj, path: str) -> Any:
    current: Any = obj
    for part in path.strip("{}").lstrip(".").split("."):
        current = current.get(part) if isinstance(current, dict) else None
    return current


def table(kind: str, objects: list[Obj], resource_version: str, include_object: str,
          printer_columns: tuple[Obj, ...] = ()) -> Obj:
    """The Table of ``objects``; ``include_object`` is None, Metadata (the default) or Object."""
    if kind in PRINTERS:
        columns, row_of = PRINTERS[kind]
    elif printer_columns:
        columns = [("Name", "string", 0)] + [(c["name"], c.get("type", "string"), int(c.get("priority", 0)))
                                             for c in printer_columns] + [("Age", "string", 0)]

        def row_of(obj: Obj) -> Row:
            cells = [_json_path(obj, c.get("jsonPath") or c.get("JSONPath", "")) for c in printer_columns]
            return [_meta(obj).get("name"), *cells, age(_meta(obj).get("creationTimestamp"))]
    else:
        columns, row_of = [("Name", "string", 0), ("Age", "string", 0)], _name_age
    definitions = [{"name": name, "type": type_, "format": "name" if name == "Name" else "", "description": "",
                    "priority": priority} for name, type_, priority in columns]
    rows = []
    for obj in objects:
        row: Obj = {"cells": row_of(obj)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": _meta(obj)}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
