"""Objects a test applies for itself and removes again, waiting for the data plane both times."""

from __future__ import annotations

from pathlib import Path

from .. import observe
from ..cluster.base import Cluster
from ..kube import Obj, as_list, dumps, in_namespace, key_of, read_manifest_file
from .manifests import BOOKINFO_NAMESPACE, load_fixture


class AppliedObjects:
    """Apply route rules (or any objects) for one test, in ``namespace`` unless they name one; ``remove_all``
    deletes them in reverse order."""

    def __init__(self, cluster: Cluster, convergence_timeout: float, namespace: str = BOOKINFO_NAMESPACE) -> None:
        self.cluster = cluster
        self.timeout = convergence_timeout
        self.namespace = namespace
        self.applied: list[Obj] = []

    def apply(self, *sources: str | Path | Obj) -> list[Obj]:
        """Apply fixture files (relative to ``fixtures/``), paths or objects; return once proxies have them."""
        objects: list[Obj] = []
        for source in sources:
            if isinstance(source, dict):
                objects.append(source)
            else:
                path = Path(source)
                objects += read_manifest_file(str(path)) if path.is_absolute() else load_fixture(path.as_posix())
        objects = in_namespace(objects, self.namespace)
        names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
        with observe.step(f"apply {names}"):
            observe.attach("applied objects", dumps(as_list(objects), "yaml"))
            self.cluster.apply(objects)
            self.applied += objects
        with observe.step("converge: every proxy runs the new config"):
            self.cluster.wait_converged(self.timeout)
        return objects

    def remove_all(self) -> None:
        unique = {key_of(o): o for o in self.applied}
        if unique:
            self.cluster.delete(list(reversed(unique.values())))
            self.applied.clear()
            with observe.step("converge: every proxy runs the config without them"):
                self.cluster.wait_converged(self.timeout)
