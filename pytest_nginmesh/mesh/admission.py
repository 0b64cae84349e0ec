"""The mesh's admission plug-ins for the embedded cluster (registered under the entry-point group
``pytest_nginmesh.admission``): RouteRules must be what Pilot 0.2.12 accepts, and re-applying an injected
workload keeps its sidecar, as a strategic merge would."""

from __future__ import annotations

from collections.abc import Callable

from ..kube import Obj, ObjectKey, annotations_of
from ..routerules import KIND as ROUTE_RULE_KIND
from ..routerules import parse_route_rule
from .injection import INJECT_CONFIG_MAP, INJECTED_KINDS, STATUS_ANNOTATION, InjectConfig, MeshConfig, inject
from .manifests import CONTROL_PLANE_NAMESPACE

Lookup = Callable[[ObjectKey], Obj | None]


class RouteRuleValidation:
    """Refuses a RouteRule Pilot 0.2.12 would refuse (pilot model/validation.go); `nginmesh check rules` warns
    beyond it."""

    name = "RouteRuleValidation"

    def mutate(self, obj: Obj, old: Obj | None, lookup: Lookup) -> Obj:
        return obj

    def validate(self, obj: Obj) -> None:
        if obj.get("kind") == ROUTE_RULE_KIND:
            parse_route_rule(obj)


class SidecarKept:
    """A replaced injected workload (a PUT of its manifest) keeps its sidecar: injected again with the current
    injector config, as the sidecar a strategic merge would have left in place."""

    name = "SidecarKept"

    def mutate(self, obj: Obj, old: Obj | None, lookup: Lookup) -> Obj:
        if obj.get("kind") not in INJECTED_KINDS or old is None:
            return obj
        template = (obj.get("spec") or {}).get("template") or {}
        if STATUS_ANNOTATION not in annotations_of((old.get("spec") or {}).get("template") or {}) or \
                STATUS_ANNOTATION in annotations_of(template):
            return obj
        configmap = lookup(ObjectKey("ConfigMap", CONTROL_PLANE_NAMESPACE, INJECT_CONFIG_MAP))
        if configmap is None:
            return obj
        config = InjectConfig.from_configmap(configmap)
        mesh = MeshConfig.from_configmap(lookup(ObjectKey("ConfigMap", CONTROL_PLANE_NAMESPACE,
                                                          config.mesh_config_map_name)))
        return inject(obj, config, mesh)

    def validate(self, obj: Obj) -> None:
        pass


def plugins() -> list[RouteRuleValidation | SidecarKept]:
    return [RouteRuleValidation(), SidecarKept()]
