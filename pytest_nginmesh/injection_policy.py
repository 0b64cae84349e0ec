"""Sidecar injection facts shared by the injector, the checks and the profiles: names, and who gets injected."""

from __future__ import annotations

from dataclasses import dataclass

from .kube import Obj, annotations_of

INJECT_ANNOTATION = "sidecar.istio.io/inject"
STATUS_ANNOTATION = "sidecar.istio.io/status"
INITIALIZER_NAME = "sidecar.initializer.istio.io"
PROXY_CONTAINER = "istio-proxy"
INIT_CONTAINER = "istio-init"
PROXY_PORT = 15001
PROXY_UID = 1337
INJECTED_KINDS = frozenset({"Deployment", "StatefulSet", "Job", "DaemonSet"})
# Pilot's injectRequired (istio/pilot platform/kube/inject/inject.go, 0.2.x; the same switch in istio/istio
# pilot/pkg/kube/inject/inject.go, 0.7.1): these values inject, "" follows the policy, anything else does not.
YAML_TRUE = frozenset({"y", "yes", "true", "on"})


@dataclass(frozen=True)
class InjectionPolicy:
    """Who a release's injector leaves alone, and where it reads the opt-out annotation."""

    ignored_namespaces: frozenset[str]
    # "workload": the annotation on the Deployment/Job/... itself (the Initializer sees the workload, never the
    # pod template's annotations); "pod": the annotation the pod carries (a webhook sees the pod).
    annotation_on: str
    # A webhook only sees pods of namespaces its namespaceSelector matches (label, value); None: every namespace.
    namespace_label: tuple[str, str] | None = None
    opt_in_values: frozenset[str] = YAML_TRUE

    def namespace_selected(self, namespace: Obj | None) -> bool:
        """Whether the injector sees this namespace at all (an unknown namespace is taken as selected)."""
        if self.namespace_label is None or namespace is None:
            return True
        key, value = self.namespace_label
        return (namespace.get("metadata", {}).get("labels") or {}).get(key) == value

    def requested(self, pod_or_workload: Obj, workload: Obj | None = None) -> str:
        """The opt-out annotation's value where this release reads it (lower case, "" when absent)."""
        source = pod_or_workload if self.annotation_on == "pod" else workload
        return str(annotations_of(source or {}).get(INJECT_ANNOTATION, "")).lower()

    def injects(self, namespace: str, requested: str, enabled: bool = True, host_network: bool = False) -> bool:
        """The release's decision for one object: ``requested`` as read by :meth:`requested`, ``enabled`` the
        injector config's policy (enabled: inject by default; disabled: only on request)."""
        if host_network or namespace in self.ignored_namespaces:
            return False
        if requested == "":
            return enabled
        return requested in self.opt_in_values


@dataclass(frozen=True)
class ProxyArgs:
    """What a release's injector puts on the istio-proxy command line beyond the mesh config's values."""

    discovery_address: str
    control_plane_auth_policy: bool  # whether --controlPlaneAuthPolicy is passed at all
    service_cluster_fallback: str = "istio-proxy"  # --serviceCluster when the pod has no app label


# No release named: the pod's own annotation decides, in every namespace.
POD_ANNOTATION_POLICY = InjectionPolicy(frozenset(), "pod")
