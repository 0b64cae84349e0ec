"""The resources the embedded API server serves, and the discovery documents that describe them.

Names, short names, scopes and verbs are those of kube-apiserver (``kubectl api-resources`` on a real
cluster); the older group versions are those the Istio 0.2/0.3 and Bookinfo manifests use.
Custom resources come from the CustomResourceDefinitions in the store, as on a real server.
"""

from __future__ import annotations

from dataclasses import dataclass

from ....kube import Obj

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
READ_VERBS = ("get", "list", "watch")


@dataclass(frozen=True)
class Resource:
    """One resource of one group version."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[Obj, ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def discovery(self) -> list[Obj]:
        """The APIResource entries of this resource and its subresources."""
        entries: list[Obj] = [{
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": list(self.verbs),
            **({"shortNames": list(self.short_names)} if self.short_names else {}),
            **({"categories": list(self.categories)} if self.categories else {}),
        }]
        for sub in self.subresources:
            sub_kind, verbs = _SUBRESOURCES[sub]
            entries.append({"name": f"{self.plural}/{sub}", "singularName": "", "namespaced": self.namespaced,
                            "kind": sub_kind or self.kind, "verbs": list(verbs)})
        return entries


_SUBRESOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "status": ("", ("get", "patch", "update")),
    "log": ("Pod", ("get",)),
    "exec": ("PodExecOptions", ("create", "get")),
    "proxy": ("ServiceProxyOptions", ("create", "delete", "get", "patch", "update")),
}


def _core(kind: str, plural: str, namespaced: bool = True, short: tuple[str, ...] = (),
          subresources: tuple[str, ...] = (), categories: tuple[str, ...] = ()) -> Resource:
    return Resource("", "v1", kind, plural, namespaced, short, ALL_VERBS, subresources, categories)


_WORKLOAD = ("status",)
_ALL = ("all",)

BUILTIN: tuple[Resource, ...] = (
    _core("Namespace", "namespaces", False, ("ns",), ("status",)),
    _core("Node", "nodes", False, ("no",), ("status",)),
    _core("Pod", "pods", True, ("po",), ("status", "log", "exec"), _ALL),
    _core("Service", "services", True, ("svc",), ("status", "proxy"), _ALL),
    _core("Endpoints", "endpoints", True, ("ep",)),
    _core("ConfigMap", "configmaps", True, ("cm",)),
    _core("Secret", "secrets"),
    _core("ServiceAccount", "serviceaccounts", True, ("sa",)),
    _core("Event", "events", True, ("ev",)),
    Resource("apps", "v1", "Deployment", "deployments", True, ("deploy",), ALL_VERBS, _WORKLOAD, _ALL),
    Resource("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ALL_VERBS, _WORKLOAD, _ALL),
    Resource("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ALL_VERBS, _WORKLOAD, _ALL),
    Resource("apps", "v1", "StatefulSet", "statefulsets", True, ("sts",), ALL_VERBS, _WORKLOAD, _ALL),
    # The Deployment and Ingress API versions of the Istio 0.2/0.3 era, as on Kubernetes 1.7-1.15; short names
    # stay with the preferred versions, so kubectl resolves "deploy" and "ing" without a warning.
    Resource("apps", "v1beta1", "Deployment", "deployments", True, (), ALL_VERBS, _WORKLOAD),
    Resource("apps", "v1beta2", "Deployment", "deployments", True, (), ALL_VERBS, _WORKLOAD),
    Resource("extensions", "v1beta1", "Deployment", "deployments", True, (), ALL_VERBS, _WORKLOAD),
    Resource("extensions", "v1beta1", "Ingress", "ingresses", True, (), ALL_VERBS, _WORKLOAD),
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses", True, ("ing",), ALL_VERBS, _WORKLOAD),
    Resource("batch", "v1", "Job", "jobs", True, (), ALL_VERBS, _WORKLOAD, _ALL),
    Resource("admissionregistration.k8s.io", "v1alpha1", "InitializerConfiguration",
             "initializerconfigurations", False),
    Resource("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
             "mutatingwebhookconfigurations", False),
    Resource("admissionregistration.k8s.io", "v1beta1", "MutatingWebhookConfiguration",
             "mutatingwebhookconfigurations", False),
    Resource("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", False,
             ("crd", "crds"), ALL_VERBS, ("status",)),
    Resource("apiextensions.k8s.io", "v1beta1", "CustomResourceDefinition", "customresourcedefinitions", False,
             ("crd", "crds"), ALL_VERBS, ("status",)),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Resource("rbac.authorization.k8s.io", "v1beta1", "ClusterRole", "clusterroles", False),
    Resource("rbac.authorization.k8s.io", "v1beta1", "ClusterRoleBinding", "clusterrolebindings", False),
    Resource("rbac.authorization.k8s.io", "v1beta1", "Role", "roles", True),
    Resource("rbac.authorization.k8s.io", "v1beta1", "RoleBinding", "rolebindings", True),
)

# The group version a group prefers, as kube-apiserver orders them (newest stable first).
PREFERRED = {"apps": "v1", "extensions": "v1beta1", "networking.k8s.io": "v1", "batch": "v1",
             "admissionregistration.k8s.io": "v1", "apiextensions.k8s.io": "v1",
             "rbac.authorization.k8s.io": "v1"}


def served_resource(obj: Obj) -> tuple[str, str, str] | None:
    """(group, version, plural) of a built-in object at the API version it names; None for any other kind."""
    group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
    return next(((r.group, r.version, r.plural) for r in BUILTIN if (r.group, r.version, r.kind) ==
                 (group, version, obj.get("kind"))), None)


def from_crd(crd: Obj) -> list[Resource]:
    """The resources a CustomResourceDefinition (v1 or v1beta1 shape) serves."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind, plural = names.get("kind"), names.get("plural")
    if not kind or not plural or not spec.get("group"):
        return []
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)] or [{"name": spec.get("version")}]
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    resources = []
    for version in versions:
        if not version.get("name"):
            continue
        columns = tuple(version.get("additionalPrinterColumns") or spec.get("additionalPrinterColumns") or ())
        subresources = tuple(sorted((version.get("subresources") or spec.get("subresources") or {}).keys()))
        resources.append(Resource(spec["group"], version["name"], kind, plural, namespaced,
                                  tuple(names.get("shortNames") or ()), ALL_VERBS,
                                  tuple(s for s in subresources if s == "status"),
                                  tuple(names.get("categories") or ()), columns))
    return resources


class Registry:
    """Every resource served now: the built-in ones and those of the stored CRDs."""

    def __init__(self, crds: list[Obj]) -> None:
        self.resources: list[Resource] = list(BUILTIN)
        for crd in crds:
            self.resources += from_crd(crd)

    def find(self, group: str, version: str, plural: str) -> Resource | None:
        for resource in self.resources:
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Each named group and its versions, the preferred one first."""
        groups: dict[str, list[str]] = {}
        for resource in self.resources:
            if resource.group and resource.version not in groups.setdefault(resource.group, []):
                groups[resource.group].append(resource.version)
        return {group: sorted(versions, key=lambda v: v != PREFERRED.get(group, versions[0]))
                for group, versions in groups.items()}

    def resource_list(self, group: str, version: str) -> Obj | None:
        served = [r for r in self.resources if (r.group, r.version) == (group, version)]
        if not served:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [entry for r in served for entry in r.discovery()]}

    def group_list(self) -> Obj:
        groups = []
        for group, versions in self.group_versions().items():
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def group(self, name: str) -> Obj | None:
        for group in self.group_list()["groups"]:
            if group["name"] == name:
                return {"kind": "APIGroup", "apiVersion": "v1", **group}
        return None
