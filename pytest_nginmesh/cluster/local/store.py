"""The object store of the local API server: Kubernetes objects as dicts, with events and a change signal."""

from __future__ import annotations

import copy
import datetime
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ...kube import Obj, ObjectKey, key_of
from .system import write_private

MAX_EVENTS = 2000
MAX_CHANGES = 20000  # how far back a watch can resume, in changes


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Change(NamedTuple):
    """One change of the store, as a watch delivers it."""

    revision: int
    type: str  # ADDED, MODIFIED or DELETED
    object: Obj


class Store:
    """Thread-safe objects keyed by (kind, namespace, name); every change wakes the controllers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.changed = threading.Condition(threading.RLock())
        self._objects: dict[ObjectKey, Obj] = {}
        self._events: list[Obj] = []
        self._revision = 0
        self._changes: deque[Change] = deque(maxlen=MAX_CHANGES)

    @property
    def revision(self) -> int:
        return self._revision

    def get(self, key: ObjectKey) -> Obj | None:
        with self.changed:
            obj = self._objects.get(key)
            return copy.deepcopy(obj) if obj is not None else None

    def objects(self, kind: str | None = None, namespace: str | None = None) -> list[Obj]:
        with self.changed:
            return [
                copy.deepcopy(obj)
                for key, obj in sorted(self._objects.items())
                if (kind is None or key.kind == kind) and (namespace is None or key.namespace == namespace)
            ]

    def put(self, obj: Obj) -> tuple[Obj, str]:
        """Create or replace an object; returns it and 'created', 'configured' or 'unchanged'."""
        with self.changed:
            key = key_of(obj)
            old = self._objects.get(key)
            new = copy.deepcopy(obj)
            meta = new.setdefault("metadata", {})
            if key.namespace:
                meta["namespace"] = key.namespace
            if old is not None:
                old_meta = old["metadata"]
                for field in ("uid", "creationTimestamp", "resourceVersion", "generation"):
                    if field in old_meta:
                        meta[field] = old_meta[field]
                if "status" in old and "status" not in new:
                    new["status"] = copy.deepcopy(old["status"])
                if _comparable(old) == _comparable(new):
                    return copy.deepcopy(old), "unchanged"
                if "spec" in new and new.get("spec") != old.get("spec"):
                    meta["generation"] = int(old_meta.get("generation", 1)) + 1
                action = "configured"
            else:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = now()
                if "spec" in new:
                    meta["generation"] = 1
                action = "created"
            self._bump(meta)
            self._objects[key] = new
            self._record("ADDED" if old is None else "MODIFIED", new)
            return copy.deepcopy(new), action

    def update(self, key: ObjectKey, mutate: Callable[[Obj], None]) -> Obj | None:
        """Apply ``mutate`` to the stored object under the lock; None when it no longer exists."""
        with self.changed:
            obj = self._objects.get(key)
            if obj is None:
                return None
            before = copy.deepcopy(obj)
            mutate(obj)
            if obj != before:
                self._bump(obj["metadata"])
                self._record("MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, key: ObjectKey) -> Obj | None:
        """Remove the object; returned at the resourceVersion of its deletion, as etcd3's store returns it
        (kubernetes staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go: Delete decodes the object at the
        delete response's revision), so a client knows which version of the world lacks it."""
        with self.changed:
            obj = self._objects.pop(key, None)
            if obj is None:
                return None
            self._revision += 1
            deleted = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._revision)}}
            self._record("DELETED", deleted)
            return deleted

    def record_event(self, involved: Obj, reason: str, message: str, type_: str = "Normal") -> None:
        with self.changed:
            meta = involved.get("metadata", {})
            stamp = now()
            self._events.append({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}",
                             "namespace": meta.get("namespace") or "default"},
                "involvedObject": {"kind": involved.get("kind"), "name": meta.get("name"),
                                   "namespace": meta.get("namespace"), "uid": meta.get("uid")},
                "reason": reason,
                "message": message,
                "type": type_,
                "source": {"component": "nginmesh-local"},
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            })
            del self._events[:-MAX_EVENTS]
            self._revision += 1
            self._events[-1]["metadata"]["resourceVersion"] = str(self._revision)
            self._record("ADDED", self._events[-1])

    def events(self, namespace: str | None = None) -> list[Obj]:
        with self.changed:
            return [copy.deepcopy(e) for e in self._events
                    if namespace is None or e["metadata"]["namespace"] == namespace]

    def save(self) -> None:
        with self.changed:
            data = {"objects": list(self._objects.values()), "events": self._events}
            text = json.dumps(data)
        write_private(self.path, text)  # Secrets among them: root only

    def _bump(self, meta: Obj) -> None:
        self._revision += 1
        meta["resourceVersion"] = str(self._revision)

    def changes_since(self, revision: int) -> list[Change] | None:
        """The changes after ``revision``, oldest first; None when they are no longer all kept."""
        with self.changed:
            if self._changes and self._changes[0].revision > revision + 1 and revision < self._revision:
                return None
            return [c for c in self._changes if c.revision > revision]

    def _record(self, kind: str, obj: Obj) -> None:
        self._changes.append(Change(self._revision, kind, copy.deepcopy(obj)))
        self.changed.notify_all()


def _comparable(obj: Obj) -> Obj:
    trimmed = copy.deepcopy(obj)
    trimmed.pop("status", None)
    return trimmed
