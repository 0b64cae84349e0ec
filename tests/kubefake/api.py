"""What the fake API server answers, apart from the HTTP and WebSocket transport (see server.py)."""

from __future__ import annotations

import copy
import datetime
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

from .discovery import Discovery, ResourceType
from .objects import ObjectStore, field_selector, json_patch, label_selector, merge_patch
from .status import (
    ApiError,
    Obj,
    already_exists,
    bad_request,
    conflict,
    invalid,
    method_not_allowed,
    namespace_not_found,
    not_found,
    resource_not_served,
)

Query = dict[str, list[str]]

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_MESSAGE = ("a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
                    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the apiserver's generateName alphabet: no vowels

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def first(query: Query, name: str, default: str = "") -> str:
    return query.get(name, [default])[0]


@dataclass(frozen=True)
class ResourcePath:
    """A request path below /api/v1 or /apis/GROUP/VERSION, taken apart."""

    resource: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    rest: str  # what follows the subresource: the path a proxy request forwards


@dataclass
class Logs:
    """Container logs a test registered: (namespace, pod, container) -> text, current and previous instance."""

    current: dict[tuple[str, str, str], str] = field(default_factory=dict)
    previous: dict[tuple[str, str, str], str] = field(default_factory=dict)


class FakeApi:
    """Discovery, generic object storage and pod logs: the request/response part of the fake."""

    def __init__(self, discovery: Discovery, version: Obj) -> None:
        self.discovery = discovery
        self.version = version
        self.store = ObjectStore()
        self.logs = Logs()
        self.running_namespaces: set[str] = set()  # pods created here start Running and Ready (no kubelet)
        for namespace in ("default", "kube-public", "kube-system"):  # what a fresh cluster has
            self.create(self.resource("", "v1", "namespaces"), None,
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # -- lookups ------------------------------------------------------------------------------------------
    def resource(self, group: str, version: str, plural: str) -> ResourceType:
        found = self.discovery.resource(group, version, plural)
        if found is None:
            raise resource_not_served()
        return found

    def resource_for(self, obj: Obj) -> ResourceType:
        found = self.discovery.for_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if found is None:
            raise bad_request(f'no kind "{obj.get("kind")}" is registered for version "{obj.get("apiVersion")}"')
        return found

    def parse_path(self, path: str) -> ResourcePath | None:
        """Split /api/v1/namespaces/NS/pods/NAME/log (and the like); None for paths that are not resources."""
        parts = path.strip("/").split("/") if path.strip("/") else []
        if len(parts) >= 3 and parts[0] == "api":
            group, version, segments = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, segments = parts[1], parts[2], parts[3:]
        else:
            return None
        if not self.discovery.serves_group_version(group, version):
            return None
        namespace: str | None = None
        if len(segments) >= 3 and segments[0] == "namespaces":
            candidate = self.discovery.resource(group, version, segments[2])
            if candidate is not None and candidate.namespaced:
                namespace, segments = segments[1], segments[2:]
        resource = self.resource(group, version, segments[0])
        name = segments[1] if len(segments) > 1 else None
        subresource = segments[2] if len(segments) > 2 else None
        if subresource is not None and subresource not in resource.subresources:
            raise resource_not_served()
        if subresource not in ("proxy",) and len(segments) > 3:
            raise resource_not_served()
        return ResourcePath(resource, namespace, name, subresource, "/" + "/".join(segments[3:]))

    def discovery_document(self, path: str) -> Obj | None:
        if path.rstrip("/") == "/version":
            return self.version
        return self.discovery.documents.get(path.rstrip("/") or "/")

    def require_namespace(self, namespace: str) -> None:
        if self.store.get(self.resource("", "v1", "namespaces"), None, namespace) is None:
            raise namespace_not_found(namespace)

    def get_pod(self, namespace: str, name: str) -> Obj:
        pods = self.resource("", "v1", "pods")
        pod = self.store.get(pods, namespace, name)
        if pod is None:
            raise not_found(pods, name)
        return pod

    # -- presenting ---------------------------------------------------------------------------------------
    def present(self, resource: ResourceType, obj: Obj) -> Obj:
        """The object as the requested group version serves it (apiVersion, kind, selfLink)."""
        shown = {"apiVersion": resource.api_version, "kind": resource.kind,
                 **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}}
        metadata = shown["metadata"]
        metadata["selfLink"] = resource.path(metadata.get("namespace"), metadata["name"])
        return shown

    def present_list(self, resource: ResourceType, namespace: str | None, items: list[Obj]) -> Obj:
        shown = [self.present(resource, item) for item in items]
        if not resource.custom:  # built-in list items come without kind and apiVersion; custom ones keep them
            shown = [{k: v for k, v in item.items() if k not in ("apiVersion", "kind")} for item in shown]
        return {"kind": resource.list_kind, "apiVersion": resource.api_version,
                "metadata": {"selfLink": resource.path(namespace), "resourceVersion": self.store.resource_version},
                "items": shown}

    # -- reads --------------------------------------------------------------------------------------------
    def get(self, resource: ResourceType, namespace: str | None, name: str) -> Obj:
        found = self.store.get(resource, namespace, name)
        if found is None:
            raise not_found(resource, name)
        return self.present(resource, found)

    def select(self, resource: ResourceType, namespace: str | None, query: Query) -> list[Obj]:
        items = self.store.find(resource, namespace)
        if labels := first(query, "labelSelector"):
            items = list(filter(label_selector(labels), items))
        if fields := first(query, "fieldSelector"):
            items = list(filter(field_selector(fields, resource.kind), items))
        return items

    def list_response(self, resource: ResourceType, namespace: str | None, query: Query) -> Obj:
        if first(query, "watch") in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "kubefake does not implement watch")
        return self.present_list(resource, namespace, self.select(resource, namespace, query))

    # -- writes -------------------------------------------------------------------------------------------
    def create(self, resource: ResourceType, namespace: str | None, body: Any) -> Obj:
        obj = self._object_body(body)
        metadata = obj["metadata"]
        if resource.namespaced:
            if metadata.get("namespace") not in (None, "", namespace):
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
            assert namespace is not None
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name"):
            if not metadata.get("generateName"):
                raise invalid(resource, "", "metadata.name", "Required value: name or generateName is required")
            metadata["name"] = metadata["generateName"] + "".join(random.choices(_NAME_SUFFIX_ALPHABET, k=5))
        name = metadata["name"]
        if not _DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
            raise invalid(resource, name, "metadata.name", f'Invalid value: "{name}": {_DNS1123_MESSAGE}')
        if resource.namespaced:
            assert namespace is not None
            self.require_namespace(namespace)
        if self.store.get(resource, namespace, name) is not None:
            raise already_exists(resource, name)
        for stale in ("resourceVersion", "uid", "selfLink", "deletionTimestamp", "creationTimestamp"):
            metadata.pop(stale, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["resourceVersion"] = self.store.next_resource_version()
        metadata["creationTimestamp"] = now()
        if resource.group:  # core v1 objects in 1.13 have no generation; workloads and custom resources do
            metadata["generation"] = 1
        _apply_defaults(self, resource, obj)
        return self.present(resource, self.store.put(resource, obj))

    def update(self, resource: ResourceType, namespace: str | None, name: str, body: Any,
               subresource: str | None = None) -> Obj:
        existing = self.store.get(resource, namespace, name)
        if existing is None:
            raise not_found(resource, name)
        obj = self._object_body(body)
        given_name = obj["metadata"].get("name")
        if given_name and given_name != name:
            raise bad_request(f"the name of the object ({given_name}) does not match the name on the URL ({name})")
        return self._store_update(resource, existing, obj, subresource)

    def patch(self, resource: ResourceType, namespace: str | None, name: str, content_type: str, raw: bytes,
              query: Query, subresource: str | None = None) -> Obj:
        media_type = content_type.split(";")[0].strip()
        if media_type == APPLY_PATCH:
            return self._apply(resource, namespace, name, raw, query)
        existing = self.store.get(resource, namespace, name)
        if existing is None:
            raise not_found(resource, name)
        patch = _json(raw)
        if media_type == JSON_PATCH:
            patched = json_patch(existing, patch)
        elif media_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
            if not isinstance(patch, dict):
                raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
            patched = merge_patch(existing, patch)
        else:
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                           f"media types include: {JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}")
        return self._store_update(resource, existing, patched, subresource)

    def _apply(self, resource: ResourceType, namespace: str | None, name: str, raw: bytes, query: Query) -> Obj:
        """Server-side apply, reduced to create-or-merge (1.13 had none: see the package's docstring)."""
        if not first(query, "fieldManager"):
            raise bad_request("fieldManager is required for apply requests")
        try:
            body = yaml.safe_load(raw.decode("utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as error:
            raise bad_request(f"error decoding YAML: {error}") from None
        obj = self._object_body(body)
        if obj["metadata"].get("name", name) != name:
            raise bad_request(f"the name of the object ({obj['metadata']['name']}) does not match the name on the "
                              f"URL ({name})")
        obj["metadata"]["name"] = name
        existing = self.store.get(resource, namespace, name)
        if existing is None:
            return self.create(resource, namespace, obj)
        return self._store_update(resource, existing, merge_patch(existing, obj), None)

    def _store_update(self, resource: ResourceType, existing: Obj, obj: Obj, subresource: str | None) -> Obj:
        old_meta, metadata = existing["metadata"], obj.setdefault("metadata", {})
        if metadata.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
            raise conflict(resource, old_meta["name"])
        if subresource == "status":  # only status changes through /status
            obj = {**existing, "status": obj.get("status", {})}
        elif "status" in resource.subresources:  # and status does not change through the main resource
            obj = {k: v for k, v in obj.items() if k != "status"}
            if "status" in existing:
                obj["status"] = existing["status"]
        metadata = obj["metadata"] = dict(obj.get("metadata") or {})
        for kept in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
            if kept in old_meta:
                metadata[kept] = old_meta[kept]
            else:
                metadata.pop(kept, None)
        if "generation" in old_meta and obj.get("spec") != existing.get("spec"):
            metadata["generation"] = old_meta["generation"] + 1
        metadata["resourceVersion"] = self.store.next_resource_version()
        obj["apiVersion"], obj["kind"] = resource.api_version, resource.kind
        return self.present(resource, self.store.put(resource, obj))

    def delete(self, resource: ResourceType, namespace: str | None, name: str, query: Query, body: Any) -> Obj:
        options = body if isinstance(body, dict) else {}
        existing = self.store.get(resource, namespace, name)
        if existing is None:
            raise not_found(resource, name)
        if resource.plural == "namespaces" and name in ("default", "kube-system", "kube-public"):
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           {"name": name, "kind": "namespaces"})
        uid = existing["metadata"]["uid"]
        expected_uid = (options.get("preconditions") or {}).get("uid")
        if expected_uid and expected_uid != uid:
            raise ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {expected_uid}, UID in "
                           f"object meta: {uid}", {"name": name, "kind": resource.plural})
        policy = first(query, "propagationPolicy") or options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise ApiError(422, "Invalid", f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                           f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan"')
        if first(query, "orphanDependents") == "true" or options.get("orphanDependents") is True:
            policy = "Orphan"
        # extensions/v1beta1 kept the old default of orphaning a deleted object's dependents
        policy = policy or ("Orphan" if resource.group == "extensions" else "Background")
        self.store.remove(resource, namespace, name)
        self._collect_dependents(uid, orphan=policy == "Orphan")
        shown = self.present(resource, existing)
        stamp = now()
        if resource.plural == "namespaces":  # contents go with it (at once: no namespace controller here)
            self.store.remove_namespace_contents(name)
            shown["metadata"]["deletionTimestamp"] = stamp
            shown["status"] = {"phase": "Terminating"}
            return shown
        if resource.plural == "pods":  # graceful deletion answers with the pod, marked for deletion
            grace = first(query, "gracePeriodSeconds") or options.get("gracePeriodSeconds")
            if grace is None:
                grace = existing.get("spec", {}).get("terminationGracePeriodSeconds", 30)
            shown["metadata"]["deletionTimestamp"] = stamp
            shown["metadata"]["deletionGracePeriodSeconds"] = int(grace)
            return shown
        success: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        if resource.plural != "services":
            details: Obj = {"name": name}
            if resource.group:
                details["group"] = resource.group
            success["details"] = {**details, "kind": resource.plural, "uid": uid}
        return success

    def delete_collection(self, resource: ResourceType, namespace: str | None, query: Query, body: Any) -> Obj:
        items = self.select(resource, namespace, query)
        for item in items:
            self.delete(resource, item["metadata"].get("namespace"), item["metadata"]["name"], query, body)
        return self.present_list(resource, namespace, items)

    def _collect_dependents(self, uid: str, orphan: bool) -> None:
        """The garbage collector's work, done at once: dependents go too, or lose their owner reference."""
        for key in self.store.owned_by(uid):
            if orphan:
                with self.store.lock:
                    dependent = self.store.pop_key(key)
                    if dependent is not None:
                        refs = [r for r in dependent["metadata"]["ownerReferences"] if r.get("uid") != uid]
                        dependent["metadata"]["ownerReferences"] = refs
                        if not refs:
                            del dependent["metadata"]["ownerReferences"]
                        dependent_resource = self.resource_for(dependent)
                        self.store.put(dependent_resource, dependent)
            else:
                dependent = self.store.pop_key(key)
                if dependent is not None:
                    self._collect_dependents(dependent["metadata"]["uid"], orphan=False)

    def _object_body(self, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("Object 'Kind' is missing in the request body")
        obj = copy.deepcopy(body)
        obj["metadata"] = dict(obj.get("metadata") or {})
        return obj

    # -- loading recorded objects -------------------------------------------------------------------------
    def load(self, objects: list[Obj]) -> None:
        """Store objects as recorded (uid, resourceVersion, timestamps kept; missing ones filled in)."""
        for recorded in objects:
            if recorded.get("kind", "").endswith("List") and "items" in recorded:
                self.load(recorded["items"])
                continue
            obj = copy.deepcopy(recorded)
            resource = self.resource_for(obj)
            metadata = obj.setdefault("metadata", {})
            if resource.namespaced:
                metadata.setdefault("namespace", "default")
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", now())
            if str(metadata.get("resourceVersion", "")).isdigit():
                self.store.bump_past(int(metadata["resourceVersion"]))
            else:
                metadata["resourceVersion"] = self.store.next_resource_version()
            self.store.put(resource, obj)

    # -- pod logs -----------------------------------------------------------------------------------------
    def pod_log(self, namespace: str, name: str, query: Query) -> str:
        pod = self.get_pod(namespace, name)
        container = pick_container(pod, first(query, "container") or None)
        key = (namespace, name, container)
        if first(query, "previous") == "true":
            if key not in self.logs.previous:
                raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
            text: str = self.logs.previous[key]
        else:
            text = self.logs.current.get(key, "")
        if (tail := first(query, "tailLines")).isdigit():
            lines = text.splitlines(keepends=True)
            text = "".join(lines[len(lines) - int(tail):]) if int(tail) else ""
        return text

    def check_verb(self, path: ResourcePath, method: str, query: Query) -> str:
        """The Kubernetes verb a request asks for, refused with 405 when the resource does not serve it."""
        if path.subresource is not None:
            return method.lower()
        verb = {("GET", True): "get", ("GET", False): "list", ("POST", False): "create", ("PUT", True): "update",
                ("PATCH", True): "patch", ("DELETE", True): "delete", ("DELETE", False): "deletecollection",
                }.get((method, path.name is not None))
        if verb == "list" and first(query, "watch") in ("true", "1"):
            verb = "watch"
        if verb is None or verb not in path.resource.verbs:
            raise method_not_allowed()
        return verb


def pick_container(pod: Obj, container: str | None) -> str:
    """The container a log or exec request means, with the real server's refusals."""
    spec = pod.get("spec") or {}
    names: list[str] = [c["name"] for c in spec.get("containers") or []]
    init_names = [c["name"] for c in spec.get("initContainers") or []]
    pod_name = pod["metadata"]["name"]
    if container:
        if container not in names + init_names:
            raise bad_request(f"container {container} is not valid for pod {pod_name}")
        return container
    if len(names) == 1:
        return names[0]
    if not names:
        raise bad_request(f"a container name must be specified for pod {pod_name}")
    message = f"a container name must be specified for pod {pod_name}, choose one of: [{' '.join(names)}]"
    if init_names:
        message += f" or one of the init containers: [{' '.join(init_names)}]"
    raise bad_request(message)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError as error:
        raise bad_request(f"invalid character in request body: {error}") from None


def _apply_defaults(api: FakeApi, resource: ResourceType, obj: Obj) -> None:
    """The few defaults and allocations of the real server that tests can observe."""
    kind = resource.kind if not resource.custom else ""
    if kind == "Namespace":
        obj.setdefault("spec", {"finalizers": ["kubernetes"]})
        obj["status"] = {"phase": "Active"}
    elif kind == "Pod" and obj["metadata"].get("namespace") in api.running_namespaces:
        obj["status"] = {"phase": "Running", "qosClass": "BestEffort", "startTime": now(),
                         "conditions": [{"type": "Ready", "status": "True"}],
                         "containerStatuses": [{"name": c["name"], "ready": True, "restartCount": 0,
                                                "image": c.get("image", ""), "state": {"running": {"startedAt": now()}}}
                                               for c in obj.get("spec", {}).get("containers") or []]}
    elif kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif kind == "Service":
        _allocate_service(api, obj)
    elif "status" in resource.subresources:
        obj["status"] = {}


def _allocate_service(api: FakeApi, obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    services = api.resource("", "v1", "services")
    taken_ips = {s.get("spec", {}).get("clusterIP") for s in api.store.find(services, None)}
    taken_ports = {p.get("nodePort") for s in api.store.find(services, None) for p in s["spec"].get("ports", [])}
    if not spec.get("clusterIP"):
        spec["clusterIP"] = next(f"10.{96 + n // 65536}.{n // 256 % 256}.{n % 256}" for n in range(10, 1 << 20)
                                 if f"10.{96 + n // 65536}.{n // 256 % 256}.{n % 256}" not in taken_ips)
    for port in spec.get("ports", []):
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
        if spec["type"] in ("NodePort", "LoadBalancer") and not port.get("nodePort"):
            port["nodePort"] = next(p for p in range(30000, 32768) if p not in taken_ports)
            taken_ports.add(port["nodePort"])
    obj["status"] = {"loadBalancer": {}}

