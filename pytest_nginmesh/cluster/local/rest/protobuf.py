"""Request bodies in Kubernetes' protobuf encoding, for the objects kubectl's typed ``create`` commands send.

kubectl 1.3x sends ``kubectl create namespace|configmap|secret`` as ``application/vnd.kubernetes.protobuf``:
the 4-byte magic ``k8s\\0`` and a ``runtime.Unknown`` (k8s.io/apimachinery/pkg/runtime/generated.proto:
typeMeta = 1, raw = 2, contentEncoding = 3, contentType = 4) whose ``raw`` is the object's message.
Field numbers below are those of k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto (ObjectMeta,
TypeMeta) and k8s.io/api/core/v1/generated.proto (Namespace, NamespaceSpec, ConfigMap, Secret).
Any other object in protobuf is refused with a 415 that names the JSON way to send it.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from ....kube import Obj
from .status import ApiError

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"

# field number → (JSON name, how to read it); "msg:<Type>" nests, "map:str"/"map:bytes" are map entries,
# a leading "*" marks a repeated field.
Schema = dict[int, tuple[str, str]]
SCHEMAS: dict[str, Schema] = {
    "Unknown": {1: ("typeMeta", "msg:TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "str"),
                4: ("contentType", "str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 5: ("uid", "str"),
                   6: ("resourceVersion", "str"), 11: ("labels", "map:str"), 12: ("annotations", "map:str"),
                   14: ("finalizers", "*str")},
    "Namespace": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "*str")},
    "ConfigMap": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:str"), 3: ("binaryData", "map:bytes"),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", "msg:ObjectMeta"), 2: ("data", "map:bytes"), 3: ("type", "str"),
               4: ("stringData", "map:str"), 5: ("immutable", "bool")},
}


def _unsupported(kind: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f"{MEDIA_TYPE} bodies are served for Namespace, ConfigMap and "
                    f"Secret only, not {kind or 'this object'}: send it as JSON or YAML (kubectl apply -f / create -f)")


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ApiError(400, "BadRequest", "truncated protobuf body")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ApiError(400, "BadRequest", "malformed protobuf varint")


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    position = 0
    while position < len(data):
        tag, position = _varint(data, position)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, position = _varint(data, position)
            yield number, value
        elif wire == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise ApiError(400, "BadRequest", "truncated protobuf body")
            yield number, data[position:position + length]
            position += length
        elif wire in (1, 5):
            position += 8 if wire == 1 else 4
        else:
            raise ApiError(400, "BadRequest", f"unsupported protobuf wire type {wire}")


def _message(data: bytes, type_name: str) -> Obj:
    schema = SCHEMAS[type_name]
    result: Obj = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, how = schema[number]
        repeated = how.startswith("*")
        how = how.lstrip("*")
        value: Any
        if how.startswith("map:"):
            entry = dict(_fields(raw if isinstance(raw, bytes) else b""))
            key = entry.get(1, b"")
            item = entry.get(2, b"")
            text_key = key.decode() if isinstance(key, bytes) else str(key)
            if how == "map:bytes":
                value = base64.b64encode(item if isinstance(item, bytes) else b"").decode()
            else:
                value = item.decode() if isinstance(item, bytes) else str(item)
            result.setdefault(name, {})[text_key] = value
            continue
        if how.startswith("msg:"):
            value = _message(raw if isinstance(raw, bytes) else b"", how[4:])
        elif how == "str":
            value = raw.decode() if isinstance(raw, bytes) else str(raw)
        elif how == "bool":
            value = bool(raw)
        else:
            value = raw
        if repeated:
            result.setdefault(name, []).append(value)
        elif value not in ("", {}):  # proto2 sends empty optionals that JSON would omit
            result[name] = value
    return result


def decode(body: bytes) -> Obj:
    """The JSON-shaped object of a protobuf request body."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s\\x00 prefix")
    envelope = _message(body[len(MAGIC):], "Unknown")
    type_meta = envelope.get("typeMeta") or {}
    kind = str(type_meta.get("kind", ""))
    if kind not in SCHEMAS or kind in ("Unknown", "TypeMeta", "ObjectMeta", "NamespaceSpec"):
        raise _unsupported(kind)
    raw = envelope.get("raw", b"")
    obj = _message(raw if isinstance(raw, bytes) else b"", kind)
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
