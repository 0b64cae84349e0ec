"""Kubernetes' published OpenAPI definitions: the documents ``kubectl apply`` validates against, and strict checks.

The definitions are Kubernetes' own (``api/openapi-spec`` of kubernetes/kubernetes, as the kubernetes-validate
package ships them in JSON Schema form). Served as OpenAPI v3 (``/openapi/v3`` and one document per group
version, as kube-apiserver serves them): every write operation declares the ``fieldValidation`` parameter,
so kubectl (1.27+) leaves validation to the server, which answers unknown fields as kube-apiserver does.
"""

from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from typing import Any

from ....kube import Obj
from .resources import BUILTIN, Registry, Resource
from .status import ApiError

DEFINITIONS_VERSION = "v1.33.0-local"
REF_PREFIX = "#/components/schemas/"


@functools.cache
def definitions() -> dict[str, Obj]:
    """Kubernetes' OpenAPI definitions (JSON Schema form), keyed by definition name."""
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema" / DEFINITIONS_VERSION
    document: Obj = json.loads((root / "_definitions.json").read_text())
    return dict(document["$defs"])


@functools.cache
def _definition_of_kind() -> dict[str, str]:
    """Kind → definition name, preferring v1 (older group versions share their successor's shape)."""
    found: dict[str, str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            if gvk["kind"] not in found or gvk.get("version") == "v1":
                found[gvk["kind"]] = name
    return found


@functools.cache
def _definition_of_gvk() -> dict[tuple[str, str, str], str]:
    return {(gvk.get("group", ""), gvk["version"], gvk["kind"]): name for name, schema in definitions().items()
            for gvk in schema.get("x-kubernetes-group-version-kind") or []}


def schema_for_kind(kind: str) -> Obj | None:
    """The newest shape of a kind: enough for merge keys, which older group versions share."""
    name = _definition_of_kind().get(kind)
    return definitions()[name] if name else None


def exact_definition(resource: Resource) -> str | None:
    """The definition of exactly this group version kind; None for versions Kubernetes 1.33 no longer has."""
    return _definition_of_gvk().get((resource.group, resource.version, resource.kind))


def resolve(schema: Obj | None) -> Obj | None:
    while schema is not None and "$ref" in schema:
        schema = definitions().get(schema["$ref"].rsplit("/", 1)[-1])
    return schema


def field_schema(schema: Obj | None, name: str) -> Obj | None:
    """The schema of one field of an object schema (a property, or the schema of a map's values)."""
    schema = resolve(schema)
    if schema is None:
        return None
    properties = schema.get("properties") or {}
    if name in properties:
        return dict(properties[name])
    extra = schema.get("additionalProperties")
    return dict(extra) if isinstance(extra, dict) else None


def unknown_fields(obj: Any, schema: Obj | None, path: str = "") -> list[str]:
    """Dotted paths of fields the schema does not know (maps and preserve-unknown objects excepted)."""
    schema = resolve(schema)
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(obj, dict):
        properties = schema.get("properties")
        if properties is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for key, value in obj.items():
                    found += unknown_fields(value, extra, f"{path}.{key}" if path else key)
            return found
        for key, value in obj.items():
            where = f"{path}.{key}" if path else key
            if key not in properties:
                if not (path == "" and key in ("apiVersion", "kind")):
                    found.append(where)
                continue
            found += unknown_fields(value, properties[key], where)
    elif isinstance(obj, list):
        items = schema.get("items")
        for index, value in enumerate(obj):
            found += unknown_fields(value, items if isinstance(items, dict) else None, f"{path}[{index}]")
    return found


def check_fields(obj: Obj, resource: Resource, mode: str) -> list[str]:
    """``fieldValidation``: Strict raises a 400 as kube-apiserver does, Warn returns warnings, Ignore nothing."""
    definition = exact_definition(resource) if resource in BUILTIN else None
    if mode not in ("Strict", "Warn") or definition is None:
        return []
    unknown = unknown_fields(obj, definitions()[definition])
    messages = [f'unknown field "{field}"' for field in unknown]
    if messages and mode == "Strict":
        raise ApiError(400, "BadRequest", "strict decoding error: " + ", ".join(messages))
    return messages


def _v3(schema: Any) -> Any:
    """A JSON Schema (2020-12 style, as shipped) as an OpenAPI 3.0 schema: refs, nullable types."""
    if isinstance(schema, list):
        return [_v3(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted: Obj = {}
    for key, value in schema.items():
        if key == "$ref":
            converted[key] = REF_PREFIX + str(value).rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            kinds = [t for t in value if t != "null"]
            converted["type"] = kinds[0] if kinds else "object"
            if "null" in value:
                converted["nullable"] = True
        elif key in ("properties", "patternProperties"):
            converted[key] = {name: _v3(sub) for name, sub in value.items()}
        else:
            converted[key] = _v3(value)
    return converted


def _references(schema: Any, into: set[str]) -> None:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in into and name in definitions():
                into.add(name)
                _references(definitions()[name], into)
        for value in schema.values():
            _references(value, into)
    elif isinstance(schema, list):
        for value in schema:
            _references(value, into)


def _operation(resource: Resource, action: str, verb: str, schema_ref: Obj, writes: bool) -> Obj:
    parameters = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                  {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": True}}] \
        if writes else []
    operation: Obj = {
        "operationId": f"{verb}{resource.kind}", "parameters": parameters,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": resource.group, "version": resource.version,
                                            "kind": resource.kind},
    }
    if writes:
        media = ("application/json-patch+json", "application/merge-patch+json",
                 "application/strategic-merge-patch+json") if action == "patch" else ("application/json",)
        operation["requestBody"] = {"content": {m: {"schema": schema_ref} for m in media}}
    return operation


def _resource_schema(resource: Resource, needed: set[str]) -> tuple[str, Obj]:
    """The name and schema of a resource's kind, carrying its group version kind as kube-apiserver's do.

    A group version Kubernetes 1.33 no longer serves (extensions/v1beta1 Deployment) gets the newest shape of
    its kind under a name of its own: kubectl reads its merge keys from it.
    """
    gvk = [{"group": resource.group, "version": resource.version, "kind": resource.kind}]
    exact = exact_definition(resource) if resource in BUILTIN else None
    newest = _definition_of_kind().get(resource.kind) if resource in BUILTIN else None
    if exact is not None:
        _references(definitions()[exact], needed)
        return exact, {**_v3(definitions()[exact]), "x-kubernetes-group-version-kind": gvk}
    if newest is not None:
        _references(definitions()[newest], needed)
        name = f"io.k8s.legacy.{resource.group or 'core'}.{resource.version}.{resource.kind}"
        return name, {**_v3(definitions()[newest]), "x-kubernetes-group-version-kind": gvk}
    name = f"{resource.group}.{resource.version}.{resource.kind}"
    return name, {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                  "x-kubernetes-group-version-kind": gvk}


def group_version_document(registry: Registry, group: str, version: str) -> Obj | None:
    """The OpenAPI v3 document of one group version, with every schema its resources use."""
    served = [r for r in registry.resources if (r.group, r.version) == (group, version)]
    if not served:
        return None
    schemas: dict[str, Any] = {}
    needed: set[str] = set()
    paths: Obj = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for resource in served:
        name, schema = _resource_schema(resource, needed)
        schemas[name] = schema
        ref = {"$ref": REF_PREFIX + name}
        base = f"{prefix}/namespaces/{{namespace}}/{resource.plural}" if resource.namespaced else \
            f"{prefix}/{resource.plural}"
        paths[base] = {"get": _operation(resource, "list", "list", ref, False),
                       "post": _operation(resource, "post", "create", ref, True)}
        paths[f"{base}/{{name}}"] = {"get": _operation(resource, "get", "read", ref, False),
                                     "put": _operation(resource, "put", "replace", ref, True),
                                     "patch": _operation(resource, "patch", "patch", ref, True),
                                     "delete": _operation(resource, "delete", "delete", ref, False)}
    for definition in needed - set(schemas):
        schemas[definition] = _v3(definitions()[definition])
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": DEFINITIONS_VERSION},
            "paths": paths, "components": {"schemas": schemas}}


def root_document(registry: Registry) -> Obj:
    """``/openapi/v3``: each group version's document path, with a hash of its content for caching."""
    paths: Obj = {}
    for resource in registry.resources:
        key = f"apis/{resource.group}/{resource.version}" if resource.group else f"api/{resource.version}"
        if key in paths:
            continue
        signature = json.dumps([(r.kind, r.plural, r.namespaced) for r in registry.resources
                                if (r.group, r.version) == (resource.group, resource.version)])
        digest = hashlib.sha256((DEFINITIONS_VERSION + signature).encode()).hexdigest()[:32].upper()
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
