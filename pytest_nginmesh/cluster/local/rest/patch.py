"""PATCH as kube-apiserver applies it: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.

Strategic merge patch needs to know, per field, whether a list is replaced or merged and by which key. Those
come from Kubernetes' published OpenAPI definitions (``x-kubernetes-patch-strategy`` and
``x-kubernetes-patch-merge-key``, see openapi.py), never from a hand list.
Semantics follow k8s.io/apimachinery/pkg/util/strategicpatch (directives ``$patch``, ``$retainKeys``,
``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ....kube import Obj
from .openapi import field_schema, schema_for_kind
from .status import ApiError, bad_request, unsupported_media_type

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def apply_patch(content_type: str, target: Obj, patch_body: bytes, kind: str, is_custom: bool) -> Obj:
    """The object ``target`` becomes under a PATCH of this content type; bad patches are 4xx ApiErrors."""
    media = content_type.split(";", 1)[0].strip()
    try:
        patch = json.loads(patch_body or b"null")
    except ValueError as e:
        raise bad_request(f"error decoding patch: {e}") from None
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("the patch must be a JSON object")
    if media == MERGE_PATCH:
        return dict(merge_patch(target, patch))
    if media == STRATEGIC_MERGE_PATCH:
        if is_custom:
            raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom "
                           "resources: use a merge patch (kubectl patch --type=merge)")
        return dict(strategic_merge(target, patch, schema_for_kind(kind)))
    raise unsupported_media_type(content_type)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Obj, operations: list[Any]) -> Obj:
    """RFC 6902: add, remove, replace, move, copy and test, applied in order; any failure applies nothing."""
    document: Any = copy.deepcopy(target)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"the server rejected our request due to an error in our request: operation {number} "
                              "needs 'op' and 'path'")
        kind, path = op["op"], _pointer(op["path"])
        if kind == "test":
            if _get(document, path) != op.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                               f"testing value {op['path']} failed")
        elif kind == "remove":
            _remove(document, path)
        elif kind == "add":
            document = _add(document, path, copy.deepcopy(op.get("value")))
        elif kind == "replace":
            _get(document, path)
            _remove(document, path)
            document = _add(document, path, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = copy.deepcopy(_get(document, source))
            if kind == "move":
                _remove(document, source)
            document = _add(document, path, value)
        else:
            raise bad_request(f"Unexpected kind: {kind}")
    if not isinstance(document, dict):
        raise bad_request("the patched object is not a JSON object")
    return document


def _pointer(text: str) -> list[str]:
    if text == "":
        return []
    if not text.startswith("/"):
        raise bad_request(f"JSON pointer {text!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _step(container: Any, part: str) -> Any:
    if isinstance(container, dict):
        if part not in container:
            raise ApiError(422, "Invalid", f"the server rejected our request: missing path element {part!r}")
        return container[part]
    if isinstance(container, list):
        try:
            return container[int(part)]
        except (ValueError, IndexError):
            raise ApiError(422, "Invalid", f"the server rejected our request: bad list index {part!r}") from None
    raise ApiError(422, "Invalid", f"the server rejected our request: {part!r} is below a value, not a container")


def _get(document: Any, path: list[str]) -> Any:
    for part in path:
        document = _step(document, part)
    return document


def _remove(document: Any, path: list[str]) -> None:
    if not path:
        raise bad_request("cannot remove the whole document")
    parent = _get(document, path[:-1])
    _step(parent, path[-1])
    if isinstance(parent, dict):
        del parent[path[-1]]
    else:
        del parent[int(path[-1])]


def _add(document: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(document, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
        if not 0 <= index <= len(parent):
            raise ApiError(422, "Invalid", f"the server rejected our request: bad list index {last!r}")
        parent.insert(index, value)
    else:
        raise ApiError(422, "Invalid", f"the server rejected our request: cannot add below a value at {last!r}")
    return document


def strategic_merge(target: Any, patch: Any, schema: Obj | None) -> Any:
    """Strategic merge of ``patch`` into ``target`` under ``schema`` (None: merge maps, replace lists)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result: Obj = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [item for item in result[name] if item not in value]
            continue
        field = field_schema(schema, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list):
            merged = _merge_list(result.get(key), value, field)
            order = patch.get(f"$setElementOrder/{key}")
            result[key] = _ordered(merged, order, field) if order else merged
        elif isinstance(value, dict):
            merged_value = strategic_merge(result.get(key), value, field)
            if merged_value is None:
                result.pop(key, None)
            else:
                result[key] = merged_value
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: Any, patch: list[Any], field: Obj | None) -> list[Any]:
    strategy = str((field or {}).get("x-kubernetes-patch-strategy", ""))
    if "merge" not in strategy.split(",") or not isinstance(current, list):
        return [_without_directives(item) for item in patch if not _is_delete(item)]
    key = (field or {}).get("x-kubernetes-patch-merge-key")
    items_schema = (field or {}).get("items")
    if key is None:  # a merged list of primitives: a set union, in order
        merged = list(current)
        merged += [item for item in patch if item not in merged]
        return merged
    merged = [copy.deepcopy(item) for item in current]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: list items keyed by {key!r} must be objects")
        if item.get("$patch") == "replace":
            return [_without_directives(i) for i in patch if isinstance(i, dict) and i.get("$patch") != "replace"]
        position = next((i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == item.get(key)),
                        None)
        if _is_delete(item):
            if position is not None:
                del merged[position]
        elif position is None:
            merged.append(_without_directives(item))
        else:
            merged[position] = strategic_merge(merged[position], item, items_schema)
    return merged


def _ordered(items: list[Any], order: list[Any], field: Obj | None) -> list[Any]:
    """``$setElementOrder``: the listed elements first, in that order, then the rest as they were."""
    key = (field or {}).get("x-kubernetes-patch-merge-key")

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else json.dumps(item, sort_keys=True)

    rank = {identity(entry): i for i, entry in enumerate(order)}
    return sorted(items, key=lambda item: rank.get(identity(item), len(rank)))


def _is_delete(item: Any) -> bool:
    return isinstance(item, dict) and item.get("$patch") == "delete"


def _without_directives(item: Any) -> Any:
    if isinstance(item, dict):
        return {k: _without_directives(v) for k, v in item.items() if not k.startswith("$")}
    if isinstance(item, list):
        return [_without_directives(v) for v in item]
    return copy.deepcopy(item)
