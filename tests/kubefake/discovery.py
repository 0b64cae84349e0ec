"""The recorded discovery documents of a Kubernetes 1.13 API server, and the resource table they imply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "k8s-api"

# extensions/v1beta1 serves the same stored objects as apps/v1 (one etcd key, two API versions).
_SHARED_STORAGE = {("extensions", "deployments"): "apps", ("extensions", "replicasets"): "apps",
                   ("extensions", "daemonsets"): "apps"}


@dataclass(frozen=True)
class ResourceType:
    """One top-level resource of one group version, as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    custom: bool  # served from a CustomResourceDefinition: only those have a singularName in 1.13
    subresources: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """How error messages name the resource: ``pods``, ``deployments.apps``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage(self) -> tuple[str, str]:
        """Where the objects live: one place for every group version that serves the same resource."""
        return _SHARED_STORAGE.get((self.group, self.plural), self.group), self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def path(self, namespace: str | None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{where}/{self.plural}" + (f"/{name}" if name else "")


class Discovery:
    """The discovery documents keyed by the path that serves them, and the resources they list."""

    def __init__(self, data_dir: Path = DATA_DIR) -> None:
        self.documents: dict[str, dict[str, Any]] = {}
        for file in sorted(data_dir.glob("*.json")):
            document = json.loads(file.read_text())
            if file.stem == "version":
                self.version: dict[str, Any] = document
            elif file.stem in ("api", "apis"):
                self.documents[f"/{file.stem}"] = document
            elif file.stem == "api-v1":
                self.documents["/api/v1"] = document
            else:  # apis-<group>-<version>
                group, version = file.stem.removeprefix("apis-").rsplit("-", 1)
                self.documents[f"/apis/{group}/{version}"] = document
        for group in self.documents["/apis"]["groups"]:
            self.documents[f"/apis/{group['name']}"] = {"kind": "APIGroup", "apiVersion": "v1", **group}
        self.resources: dict[tuple[str, str, str], ResourceType] = {}
        for path, document in self.documents.items():
            if document.get("kind") == "APIResourceList":
                self._add_resources(path, document["resources"])

    def _add_resources(self, path: str, entries: list[dict[str, Any]]) -> None:
        parts = path.strip("/").split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        subresources: dict[str, set[str]] = {}
        for entry in entries:
            if "/" in entry["name"]:
                parent, sub = entry["name"].split("/", 1)
                subresources.setdefault(parent, set()).add(sub)
        for entry in entries:
            if "/" in entry["name"]:
                continue
            self.resources[(group, version, entry["name"])] = ResourceType(
                group=group, version=version, plural=entry["name"], kind=entry["kind"],
                namespaced=entry["namespaced"], verbs=frozenset(entry["verbs"]),
                custom=bool(entry.get("singularName")),
                subresources=frozenset(subresources.get(entry["name"], ())))

    def resource(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.resources.get((group, version, plural))

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for resource in self.resources.values():
            if resource.group == group and resource.version == version and resource.kind == kind:
                return resource
        return None

    def serves_group_version(self, group: str, version: str) -> bool:
        return (f"/apis/{group}/{version}" if group else f"/api/{version}") in self.documents
