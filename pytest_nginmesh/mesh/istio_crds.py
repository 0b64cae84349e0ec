"""The CustomResourceDefinitions Pilot registers at start, so the API serves the Istio config kinds (and
``kubectl get routerules`` works). Istio 0.2.12 Pilot: model/config.go IstioConfigTypes (route-rule,
ingress-rule, egress-rule, destination-policy) and adapter/config/crd/client.go RegisterResources (group
config.istio.io, version v1alpha2, namespaced, kind/singular/plural from the kebab-case type)."""

from __future__ import annotations

from ..kube import Obj

GROUP, VERSION = "config.istio.io", "v1alpha2"
CONFIG_TYPES = ("route-rule", "ingress-rule", "egress-rule", "destination-policy")


def crd(config_type: str) -> Obj:
    kind = "".join(part.capitalize() for part in config_type.split("-"))
    singular = kind.lower()
    plural = _plural(singular)
    return {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}"},
            "spec": {"group": GROUP, "version": VERSION, "scope": "Namespaced",
                     "names": {"kind": kind, "singular": singular, "plural": plural}}}


def _plural(singular: str) -> str:
    """routerule → routerules, destinationpolicy → destinationpolicies (the schemas' Plural without dashes)."""
    return singular[:-1] + "ies" if singular.endswith("y") else singular + "s"


def istio_crds() -> list[Obj]:
    return [crd(t) for t in CONFIG_TYPES]
