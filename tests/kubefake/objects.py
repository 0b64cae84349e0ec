"""The fake's object storage, label and field selectors, and the patch formats the API server accepts."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable
from typing import Any

from .discovery import ResourceType
from .status import ApiError, Obj, bad_request, internal_error

ObjectKey = tuple[str, str, str, str]  # storage group, plural, namespace ("" when cluster-scoped), name


class ObjectStore:
    """Objects by resource, namespace and name, with one resourceVersion counter, like etcd's revision."""

    def __init__(self, first_resource_version: int = 1000) -> None:
        self.lock = threading.RLock()
        self._objects: dict[ObjectKey, Obj] = {}
        self._revision = first_resource_version

    @staticmethod
    def key(resource: ResourceType, namespace: str | None, name: str) -> ObjectKey:
        group, plural = resource.storage
        return group, plural, (namespace or "") if resource.namespaced else "", name

    def next_resource_version(self) -> str:
        with self.lock:
            self._revision += 1
            return str(self._revision)

    def bump_past(self, revision: int) -> None:
        """Keep new resourceVersions above a recorded one."""
        with self.lock:
            self._revision = max(self._revision, revision)

    @property
    def resource_version(self) -> str:
        return str(self._revision)

    def get(self, resource: ResourceType, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            found = self._objects.get(self.key(resource, namespace, name))
            return copy.deepcopy(found) if found is not None else None

    def find(self, resource: ResourceType, namespace: str | None) -> list[Obj]:
        """Objects in key order (namespace, then name), as etcd returns them; every namespace when None."""
        group, plural = resource.storage
        with self.lock:
            keys = sorted(k for k in self._objects
                          if k[0] == group and k[1] == plural and (namespace is None or k[2] == namespace))
            return [copy.deepcopy(self._objects[k]) for k in keys]

    def put(self, resource: ResourceType, obj: Obj) -> Obj:
        metadata = obj["metadata"]
        with self.lock:
            self._objects[self.key(resource, metadata.get("namespace"), metadata["name"])] = copy.deepcopy(obj)
        return obj

    def remove(self, resource: ResourceType, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            return self._objects.pop(self.key(resource, namespace, name), None)

    def remove_namespace_contents(self, namespace: str) -> None:
        with self.lock:
            for key in [k for k in self._objects if k[2] == namespace]:
                del self._objects[key]

    def owned_by(self, uid: str) -> list[ObjectKey]:
        with self.lock:
            return [key for key, obj in self._objects.items()
                    if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])]

    def pop_key(self, key: ObjectKey) -> Obj | None:
        with self.lock:
            return self._objects.pop(key, None)


# -- selectors --------------------------------------------------------------------------------------------

Requirement = Callable[[dict[str, str]], bool]

_SET_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQUALITY_TERM = re.compile(r"^\s*([A-Za-z0-9./_-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([A-Za-z0-9./_-]+)\s*$")


def _split_terms(text: str) -> list[str]:
    """Split on the commas that are not inside an ``in (a,b)`` value set."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t for t in terms if t.strip()]


def _label_requirement(term: str) -> Requirement:
    if match := _SET_TERM.match(term):
        key, operator, values = match[1], match[2], {v.strip() for v in match[3].split(",") if v.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQUALITY_TERM.match(term):
        key, operator, value = match[1], match[2], match[3]
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        negated, key = match[1] == "!", match[2]
        return lambda labels: (key in labels) != negated
    raise bad_request(f"unable to parse requirement: invalid label selector term {term.strip()!r}")


def label_selector(text: str) -> Callable[[Obj], bool]:
    """``app=reviews,version in (v2,v3),!canary`` as a predicate on objects."""
    requirements = [_label_requirement(term) for term in _split_terms(text)]
    return lambda obj: all(req(obj["metadata"].get("labels") or {}) for req in requirements)


_COMMON_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
_FIELDS_BY_KIND = {
    "Event": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                        "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                        "involvedObject.fieldPath", "reason", "source", "type"}),
    "Pod": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "status.phase", "status.podIP", "status.nominatedNodeName"}),
    "Node": frozenset({"spec.unschedulable"}),
    "Namespace": frozenset({"status.phase"}),
    "Secret": frozenset({"type"}),
}


def _field_value(obj: Obj, field: str) -> str:
    if field == "source":  # an Event's source is matched on its component
        field = "source.component"
    value: Any = obj
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_selector(text: str, kind: str) -> Callable[[Obj], bool]:
    """``metadata.name=x,involvedObject.name!=y`` on the fields the real server indexes for ``kind``."""
    supported = _COMMON_FIELDS | _FIELDS_BY_KIND.get(kind, frozenset())
    terms: list[tuple[str, bool, str]] = []
    for term in _split_terms(text):
        match = _EQUALITY_TERM.match(term) or re.match(r"^\s*([^=!]+?)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, operator, value = match[1], match[2], match[3]
        if field not in supported:
            raise bad_request(f"field label not supported: {field}")
        terms.append((field, operator == "!=", value))
    return lambda obj: all((_field_value(obj, f) == v) != negated for f, negated, v in terms)


# -- patches ----------------------------------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise internal_error(f"JSON pointer must start with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _container(document: Any, parts: list[str], op: str, path: str) -> Any:
    for part in parts[:-1]:
        try:
            document = document[int(part)] if isinstance(document, list) else document[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise internal_error(f"jsonpatch {op} operation does not apply: doc is missing path: {path}") from None
    return document


def _json_patch_op(document: Any, operation: Obj) -> Any:
    op, path = str(operation.get("op")), str(operation.get("path", ""))
    parts = _pointer(path)
    if op in ("move", "copy"):
        source_parts = _pointer(operation.get("from", ""))
        value = copy.deepcopy(_json_patch_get(document, source_parts, op, operation.get("from", "")))
        if op == "move":
            document = _json_patch_op(document, {"op": "remove", "path": operation["from"]})
        return _json_patch_op(document, {"op": "add", "path": path, "value": value})
    if op == "test":
        if _json_patch_get(document, parts, op, path) != operation.get("value"):
            raise internal_error(f"testing value {path} failed")
        return document
    if not parts:
        if op in ("add", "replace"):
            return copy.deepcopy(operation.get("value"))
        raise internal_error(f"jsonpatch {op} operation does not apply to the whole document")
    parent, last = _container(document, parts, op, path), parts[-1]
    try:
        if op == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(operation["value"]))
            else:
                parent[last] = copy.deepcopy(operation["value"])
        elif op == "replace":
            index: Any = int(last) if isinstance(parent, list) else last
            if not isinstance(parent, list) and last not in parent:
                raise KeyError(last)
            parent[index] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        else:
            raise bad_request(f"Unexpected kind: {op}")
    except (KeyError, IndexError, ValueError, TypeError):
        raise internal_error(f"jsonpatch {op} operation does not apply: doc is missing key: {path}") from None
    return document


def _json_patch_get(document: Any, parts: list[str], op: str, path: str) -> Any:
    if not parts:
        return document
    parent = _container(document, parts, op, path)
    try:
        return parent[int(parts[-1])] if isinstance(parent, list) else parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError):
        raise internal_error(f"jsonpatch {op} operation does not apply: doc is missing key: {path}") from None


def json_patch(target: Obj, operations: Any) -> Obj:
    """RFC 6902 JSON patch. A body that is not a list fails to decode, as it does on the real server."""
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    document: Any = copy.deepcopy(target)
    for operation in operations:
        document = _json_patch_op(document, operation)
    if not isinstance(document, dict):
        raise ApiError(422, "Invalid", "the patched document is not an object")
    return document
