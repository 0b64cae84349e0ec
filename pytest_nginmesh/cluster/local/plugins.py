"""Admission plug-ins the daemon loads from the installed packages, so what a layer above the cluster knows (the
mesh's RouteRule validation, say) is checked at admission without the cluster importing it: a package names
them under the entry-point group ``pytest_nginmesh.admission`` as a callable returning the plug-ins, as
kube-apiserver's admission chain runs plug-ins it is configured with."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol

from ...kube import Obj, ObjectKey

ENTRY_POINT_GROUP = "pytest_nginmesh.admission"
log = logging.getLogger("nginmesh.local")

Lookup = Callable[[ObjectKey], Obj | None]


class AdmissionPlugin(Protocol):
    """One step of admission: ``mutate`` first (a changed copy, or the object itself), then ``validate``, which
    raises pytest_nginmesh.errors.ManifestError with a one-line reason to refuse."""

    name: str

    def mutate(self, obj: Obj, old: Obj | None, lookup: Lookup) -> Obj: ...

    def validate(self, obj: Obj) -> None: ...


def installed_plugins() -> list[AdmissionPlugin]:
    """Every plug-in registered under ENTRY_POINT_GROUP, in entry-point name order."""
    plugins: list[AdmissionPlugin] = []
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
        plugins.extend(point.load()())
    log.info("admission plug-ins: %s", ", ".join(p.name for p in plugins) or "none")
    return plugins
