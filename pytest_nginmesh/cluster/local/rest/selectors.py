"""Label and field selectors, parsed as k8s.io/apimachinery/pkg/labels and pkg/fields parse them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ....kube import Obj
from .status import bad_request

Predicate = Callable[[Obj], bool]

_TERM = re.compile(
    r"\s*(?:(?P<not>!)\s*(?P<absent>[^\s,!=()<>]+)"
    r"|(?P<key>[^\s,!=()<>]+)\s*(?:(?P<op>==|=|!=|<|>)\s*(?P<value>[^\s,!=()<>]*)"
    r"|(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)|))\s*(?:,|$)"
)

# Which fields kube-apiserver lets each kind select on, besides metadata.name and metadata.namespace
# (pkg/registry/core/*/strategy.go: PodToSelectableFields, EventToSelectableFields, …).
SELECTABLE: dict[str, tuple[str, ...]] = {
    "Pod": ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
            "status.phase", "status.podIP", "status.nominatedNodeName"),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
              "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
              "reason", "reportingComponent", "source", "type"),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
}


def label_selector(text: str) -> Predicate:
    """A predicate over an object's labels; a selector that does not parse is a 400."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TERM.match(text, position)
        if not match or match.end() == position:
            raise bad_request(f"unable to parse requirement: found '{text[position:]}', expected: key or operator")
        position = match.end()
        tests.append(_requirement(match))
    return lambda obj: all(test((obj.get("metadata") or {}).get("labels") or {}) for test in tests)


def _requirement(match: re.Match[str]) -> Callable[[dict[str, str]], bool]:
    if match["absent"]:
        key = match["absent"]
        return lambda labels: key not in labels
    key, op, value = match["key"], match["op"], match["value"]
    if match["setop"]:
        values = {v.strip() for v in match["values"].split(",") if v.strip()}
        if match["setop"] == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if op in ("=", "=="):
        return lambda labels: labels.get(key) == value
    if op == "!=":
        return lambda labels: labels.get(key) != value
    if op in ("<", ">"):
        try:
            bound = int(value)
        except ValueError:
            raise bad_request(f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}") from None
        return lambda labels: _compare(labels.get(key), op, bound)
    return lambda labels: key in labels


def _compare(value: str | None, op: str, bound: int) -> bool:
    try:
        number = int(value or "")
    except ValueError:
        return False
    return number < bound if op == "<" else number > bound


def field_selector(text: str, kind: str) -> Predicate:
    """A predicate over the fields kube-apiserver lets ``kind`` select on; others are a 400."""
    allowed = ("metadata.name", "metadata.namespace", *SELECTABLE.get(kind, ()))
    tests: list[Predicate] = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        match = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", term)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = match.groups()
        if field not in allowed:
            raise bad_request(f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                              if kind not in SELECTABLE else
                              f'field label not supported: {field}')
        tests.append(_field_test(field, op, value))
    return lambda obj: all(test(obj) for test in tests)


def _field_test(field: str, op: str, value: str) -> Predicate:
    def read(obj: Obj) -> str:
        current: Any = obj
        for part in field.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if field == "source" and isinstance(current, dict):
            current = current.get("component")
        return "" if current is None else str(current).lower() if isinstance(current, bool) else str(current)

    if op == "!=":
        return lambda obj: read(obj) != value
    return lambda obj: read(obj) == value
