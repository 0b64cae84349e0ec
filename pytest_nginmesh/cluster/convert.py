"""Old manifests on new API servers: objects in API versions a server no longer serves, rewritten into the
versions that replaced them (what ``kubectl convert`` did). Istio 0.2 to 0.7 and the suites' own objects use
extensions/v1beta1, rbac v1beta1, apiextensions v1beta1 and admissionregistration v1beta1, which
Kubernetes 1.16 and 1.22 stopped serving."""

from __future__ import annotations

import copy
from collections.abc import Callable

from ..errors import ClusterError
from ..kube import Obj, key_of

Served = Callable[[str, str], bool]  # (apiVersion, kind) -> whether the server serves it

WORKLOADS = frozenset({"Deployment", "DaemonSet", "ReplicaSet", "StatefulSet"})
SUCCESSORS: dict[str, tuple[str, ...]] = {
    "Deployment": ("apps/v1",), "DaemonSet": ("apps/v1",), "ReplicaSet": ("apps/v1",), "StatefulSet": ("apps/v1",),
    "Ingress": ("networking.k8s.io/v1",),
    "CustomResourceDefinition": ("apiextensions.k8s.io/v1",),
    "MutatingWebhookConfiguration": ("admissionregistration.k8s.io/v1",),
    "ValidatingWebhookConfiguration": ("admissionregistration.k8s.io/v1",),
    "ClusterRole": ("rbac.authorization.k8s.io/v1",), "ClusterRoleBinding": ("rbac.authorization.k8s.io/v1",),
    "Role": ("rbac.authorization.k8s.io/v1",), "RoleBinding": ("rbac.authorization.k8s.io/v1",),
}


def served_version_of(obj: Obj, served: Served) -> Obj:
    """``obj`` as is when its apiVersion is served, else rewritten into the newest successor that is."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    if served(api_version, kind):
        return obj
    for successor in SUCCESSORS.get(kind, ()):
        if successor != api_version and served(successor, kind):
            return CONVERTERS.get(kind, relabel)(copy.deepcopy(obj), successor)
    raise ClusterError(f"{key_of(obj)}: the API server serves no {kind} in {api_version}, and no successor "
                       "this project knows of: update the manifest")


def relabel(obj: Obj, api_version: str) -> Obj:
    """Versions whose shape did not change (rbac)."""
    return {**obj, "apiVersion": api_version}


def workload(obj: Obj, api_version: str) -> Obj:
    """apps/v1 requires a selector; the old versions defaulted it to the pod template's labels."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("selector", {"matchLabels": dict(spec.get("template", {}).get("metadata", {}).get("labels") or {})})
    for dropped in ("rollbackTo", "templateGeneration"):
        spec.pop(dropped, None)
    return {**obj, "apiVersion": api_version}


def custom_resource_definition(obj: Obj, api_version: str) -> Obj:
    """v1 wants a version list with schemas; old CRDs had none, so their objects stay schemaless."""
    spec = obj["spec"]
    names = [v["name"] for v in spec.get("versions") or []] or [spec.pop("version")]
    spec.pop("version", None)
    spec.pop("validation", None)
    spec["versions"] = [{"name": name, "served": True, "storage": index == 0,
                         "schema": {"openAPIV3Schema": {"type": "object",
                                                        "x-kubernetes-preserve-unknown-fields": True}}}
                        for index, name in enumerate(names)]
    return {**obj, "apiVersion": api_version}


def webhook_configuration(obj: Obj, api_version: str) -> Obj:
    """v1 requires sideEffects and the review versions the webhook speaks (Istio's old injectors: v1beta1)."""
    for hook in obj.get("webhooks") or []:
        hook.setdefault("sideEffects", "None")
        hook.setdefault("admissionReviewVersions", ["v1beta1"])
    return {**obj, "apiVersion": api_version}


def ingress(obj: Obj, api_version: str) -> Obj:
    """networking.k8s.io/v1: backends name a service and a port object; every path has a type."""

    def backend(old: Obj) -> Obj:
        port = old.get("servicePort")
        return {"service": {"name": old.get("serviceName"),
                            "port": {"number": port} if isinstance(port, int) else {"name": str(port)}}}

    spec = obj.setdefault("spec", {})
    if "backend" in spec:
        spec["defaultBackend"] = backend(spec.pop("backend"))
    for rule in spec.get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            path["backend"] = backend(path["backend"])
            path.setdefault("pathType", "ImplementationSpecific")
    return {**obj, "apiVersion": api_version}


CONVERTERS: dict[str, Callable[[Obj, str], Obj]] = {
    **dict.fromkeys(WORKLOADS, workload),
    "CustomResourceDefinition": custom_resource_definition,
    "MutatingWebhookConfiguration": webhook_configuration,
    "ValidatingWebhookConfiguration": webhook_configuration,
    "Ingress": ingress,
}
