"""The mesh snapshot Pilot serves to the agents, built from what it lists and watches through the Kubernetes API:
services with their endpoints' pods and labels, route rules and ingresses, and a version naming its content."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable

from ..kube import Obj

# What Pilot lists and watches, at the group versions it reads them (Istio 0.2.12 Pilot's kube registry watches
# services, endpoints and pods, and ingresses of extensions/v1beta1; its config controller the CRDs it registers).
WATCHED: dict[str, str] = {
    "Service": "/api/v1/services",
    "Endpoints": "/api/v1/endpoints",
    "Pod": "/api/v1/pods",
    "RouteRule": "/apis/config.istio.io/v1alpha2/routerules",
    "Ingress": "/apis/extensions/v1beta1/ingresses",
}


def config_only(obj: Obj) -> Obj:
    """An object without the fields that change when its configuration does not."""
    meta = obj["metadata"]
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": kept, "spec": obj.get("spec", {})}


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj["metadata"]
    return str(meta.get("namespace", "")), str(meta["name"])


def build_snapshot(services: Iterable[Obj], endpoints: Iterable[Obj], pods: Iterable[Obj],
                   route_rules: Iterable[Obj], ingresses: Iterable[Obj]) -> Obj:
    """The snapshot; ``version`` is a hash of everything else, so equal content has an equal version."""
    pods_by_key = {_key(p): p for p in pods}
    endpoints_by_key = {_key(e): e for e in endpoints}
    listed = []
    for service in sorted(services, key=_key):
        meta, spec = service["metadata"], service.get("spec") or {}
        instances = []
        for subset in endpoints_by_key.get(_key(service), {}).get("subsets") or []:
            for address in subset.get("addresses") or []:
                ref = address.get("targetRef") or {}
                pod = pods_by_key.get((str(ref.get("namespace")), str(ref.get("name"))), {})
                instances.append({"ip": address["ip"], "pod": ref.get("name"),
                                  "labels": (pod.get("metadata") or {}).get("labels") or {},
                                  "ports": {p.get("name", ""): p["port"] for p in subset.get("ports") or []}})
        listed.append({"name": meta["name"], "namespace": meta["namespace"], "clusterIP": spec.get("clusterIP"),
                       "ports": [{"name": p.get("name", ""), "port": p["port"], "protocol": p.get("protocol", "TCP")}
                                 for p in spec.get("ports") or []],
                       "instances": sorted(instances, key=lambda i: (i["ip"], i["pod"] or ""))})
    snapshot: Obj = {
        "services": listed,
        "routeRules": [config_only(o) for o in sorted(route_rules, key=_key)],
        "ingresses": [config_only(o) for o in sorted(ingresses, key=_key)],
    }
    text = json.dumps(snapshot, sort_keys=True)
    snapshot["version"] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return snapshot


class MeshCache:
    """Pilot's caches of the watched kinds, as informers keep them: a list replaces a kind's objects, each watch
    event updates one; ``observed`` is the highest resourceVersion seen, so a client that wrote at
    resourceVersion R knows Pilot has seen its write once ``observed`` >= R."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {kind: {} for kind in WATCHED}
        self.synced: set[str] = set()
        self.observed = 0

    def replace(self, kind: str, items: list[Obj], resource_version: str) -> None:
        with self.lock:
            self.objects[kind] = {_key(o): o for o in items}
            self.synced.add(kind)
            self._observe(resource_version)

    def apply(self, kind: str, event_type: str, obj: Obj) -> None:
        with self.lock:
            if event_type == "DELETED":
                self.objects[kind].pop(_key(obj), None)
            else:
                self.objects[kind][_key(obj)] = obj
            self._observe(str(obj["metadata"].get("resourceVersion", "")))

    def _observe(self, resource_version: str) -> None:
        if resource_version.isdigit():
            self.observed = max(self.observed, int(resource_version))

    @property
    def ready(self) -> bool:
        """Every kind has been listed once: before that a snapshot would leave services or rules out."""
        return self.synced == set(WATCHED)

    def pod(self, namespace: str, name: str) -> Obj | None:
        with self.lock:
            return self.objects["Pod"].get((namespace, name))

    def snapshot(self) -> Obj:
        with self.lock:
            kinds = {kind: list(objects.values()) for kind, objects in self.objects.items()}
        return build_snapshot(kinds["Service"], kinds["Endpoints"], kinds["Pod"], kinds["RouteRule"],
                              kinds["Ingress"])
