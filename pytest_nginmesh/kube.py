"""Kubernetes objects as plain dicts: loading manifests, identity, and a few typed accessors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .errors import ManifestError

Obj = dict[str, Any]

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "Node",
        "InitializerConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
    }
)


class ObjectKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.lower()}/{where}{self.name}"


def key_of(obj: Obj, default_namespace: str = "default") -> ObjectKey:
    kind = obj["kind"]
    meta = obj.get("metadata", {})
    namespace = "" if kind in CLUSTER_SCOPED_KINDS else meta.get("namespace") or default_namespace
    return ObjectKey(kind, namespace, meta["name"])


class _KubeLoader(yaml.SafeLoader):
    """YAML as the API server reads it: timestamps stay strings, as kubectl prints them."""


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_manifests(text: str, source: str = "<input>") -> list[Obj]:
    """Parse YAML or JSON text holding one or more objects or v1 Lists into a flat list of objects."""
    try:
        documents = list(yaml.load_all(text, Loader=_KubeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"{source}:{where} is not valid YAML or JSON ({problem}); fix the file") from e
    objects: list[Obj] = []
    for index, document in enumerate(documents):
        if document is None:
            continue
        objects.extend(_flatten(document, f"{source} document {index + 1}"))
    return objects


def _flatten(document: object, where: str) -> Iterable[Obj]:
    if not isinstance(document, dict):
        raise ManifestError(f"{where} is a {type(document).__name__}, not a Kubernetes object")
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in document:
        items = document.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{where}: 'items' of a {kind} must be a list")
        for i, item in enumerate(items):
            yield from _flatten(item, f"{where} item {i + 1}")
        return
    for required in ("apiVersion", "kind"):
        if not isinstance(document.get(required), str) or not document.get(required):
            raise ManifestError(f"{where} has no {required}: every object needs apiVersion, kind and metadata.name")
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ManifestError(f"{where} ({document['kind']}): metadata must be a mapping")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where} ({document['kind']}) has no metadata.name")
    yield document


def read_manifest_file(path: str) -> list[Obj]:
    """Read manifests from a file path, or from standard input when the path is ``-``."""
    if path == "-":
        return parse_manifests(sys.stdin.read(), "<stdin>")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ManifestError(f"{path}: no such file; give the path of a YAML or JSON manifest") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot be read ({e.__class__.__name__}); give a readable text file") from e
    return parse_manifests(text, path)


def as_list(items: Iterable[Obj], kind: str = "List") -> Obj:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": ""}, "items": list(items)}


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})


def selector_matches(selector: dict[str, str] | None, object_labels: dict[str, str]) -> bool:
    if not selector:
        return False
    return all(object_labels.get(k) == v for k, v in selector.items())


def dumps(obj: object, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
