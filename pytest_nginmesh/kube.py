"""Kubernetes objects as plain dicts: loading manifests, identity, and a few typed accessors."""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .errors import ManifestError
from .validation import MAX_NESTING_DEPTH

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


def in_namespace(objects: Iterable[Obj], namespace: str) -> list[Obj]:
    """Copies of ``objects`` with every namespaced one that names no namespace placed in ``namespace``, as
    ``kubectl apply -n`` places them."""
    placed = []
    for obj in objects:
        copied = copy.deepcopy(obj)
        meta = copied.setdefault("metadata", {})
        if copied.get("kind") not in CLUSTER_SCOPED_KINDS and not meta.get("namespace"):
            meta["namespace"] = namespace
        placed.append(copied)
    return placed


# One apply is one request to the API server, and kube-apiserver takes request bodies of at most 3 MiB
# (MaxRequestBodyBytes in kubernetes/kubernetes staging/src/k8s.io/apiserver/pkg/server/config.go).
MAX_MANIFEST_BYTES = 3 * 1024 * 1024
# Aliases may add this many nodes to a document; beyond it an alias bomb (a few hundred bytes growing to
# billions of nodes) is refused before anything expands it.
MAX_ALIAS_EXPANSION = 100_000


class _KubeLoader(yaml.SafeLoader):
    """YAML as the API server reads it (timestamps stay strings, as kubectl prints them), bounded: nesting at most
    MAX_NESTING_DEPTH levels, aliases adding at most MAX_ALIAS_EXPANSION nodes, no alias inside its own anchor."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self.source = source
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING_DEPTH:
                line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
                raise ManifestError(f"{self.source}: line {line} nests deeper than {MAX_NESTING_DEPTH} levels; "
                                    "no Kubernetes object does: fix the file")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is None:
            return None
        distinct, expanded, depth = _node_counts(node, self.source)
        if expanded - distinct > MAX_ALIAS_EXPANSION:
            raise ManifestError(f"{self.source}: YAML aliases expand to more than {MAX_ALIAS_EXPANSION} extra nodes "
                                "(an alias bomb?); write the objects out without anchors and aliases")
        if depth > MAX_NESTING_DEPTH:
            raise ManifestError(f"{self.source}: YAML aliases nest deeper than {MAX_NESTING_DEPTH} levels; "
                                "write the objects out without anchors and aliases")
        return node


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _node_counts(root: yaml.Node, source: str) -> tuple[int, int, int]:
    """Distinct nodes, nodes once every alias is expanded, and the expanded nesting depth, of a composed document
    (aliases make it a graph whose nodes are shared: counted bottom-up, without recursion or expansion)."""
    expanded: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_counted = stack.pop()
        if id(node) in expanded:
            continue
        children = _children(node)
        if children_counted:
            open_nodes.discard(id(node))
            counts = [expanded[id(child)] for child in children]
            nesting = 0 if isinstance(node, yaml.ScalarNode) else 1 + max((d for _, d in counts), default=0)
            expanded[id(node)] = (1 + sum(size for size, _ in counts), nesting)
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ManifestError(f"{source}: line {child.start_mark.line + 1}: a YAML alias refers to the node "
                                    "that holds it; write the objects out without anchors and aliases")
            if id(child) not in expanded:
                stack.append((child, False))
    size, depth = expanded[id(root)]
    return len(expanded), size, depth


def load_documents(text: str, source: str = "<input>", max_bytes: int = MAX_MANIFEST_BYTES) -> list[object]:
    """The documents of YAML or JSON text, as the API server reads them, bounded: at most ``max_bytes`` of text,
    MAX_NESTING_DEPTH levels of nesting, MAX_ALIAS_EXPANSION nodes added by YAML aliases; anything beyond is a
    one-line ManifestError, raised before it can take time or memory."""
    if len(text) > max_bytes or len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise _too_big(source, max_bytes)
    loader = _KubeLoader(text, source)
    try:
        documents = []
        while loader.check_data():  # type: ignore[no-untyped-call]
            documents.append(loader.get_data())
        return documents
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ManifestError(f"{source}:{where} is not valid YAML or JSON ({problem}); fix the file") from e
    finally:
        loader.dispose()


def parse_manifests(text: str, source: str = "<input>", max_bytes: int = MAX_MANIFEST_BYTES) -> list[Obj]:
    """Parse YAML or JSON text holding one or more objects or v1 Lists into a flat list of objects (bounded as
    load_documents is)."""
    documents = load_documents(text, source, max_bytes)
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


def read_manifest_file(path: str, max_bytes: int = MAX_MANIFEST_BYTES) -> list[Obj]:
    """Read manifests from a file path, or from standard input when the path is ``-``; never more than
    ``max_bytes`` and one byte are read, so an endless input (``/dev/zero``) is refused as too big."""
    if path == "-":
        return parse_manifests(sys.stdin.read(max_bytes + 1), "<stdin>", max_bytes)
    try:
        with Path(path).open("rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise _too_big(path, max_bytes)
        text = data.decode("utf-8")
    except FileNotFoundError as e:
        raise ManifestError(f"{path}: no such file; give the path of a YAML or JSON manifest") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot be read ({e.__class__.__name__}); give a readable text file") from e
    return parse_manifests(text, path, max_bytes)


def _too_big(source: str, max_bytes: int) -> ManifestError:
    return ManifestError(f"{source} holds more than {max_bytes} bytes, the most a manifest may (the API server's "
                         "request limit); split it into smaller files")


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
