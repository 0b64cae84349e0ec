"""The sidecar injector's mutation, as Istio's Initializer applies it, driven by the istio-inject ConfigMap."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import ManifestError
from ..injection_policy import (
    INIT_CONTAINER,
    INITIALIZER_NAME,
    INJECT_ANNOTATION,
    INJECTED_KINDS,
    PROXY_CONTAINER,
    PROXY_PORT,
    PROXY_UID,
    STATUS_ANNOTATION,
    InjectionPolicy,
    ProxyArgs,
)
from ..kube import Obj, annotations_of
from ..profiles import DEFAULT_PROFILE, PROFILES

__all__ = ["INITIALIZER_NAME", "INIT_CONTAINER", "INJECTED_KINDS", "INJECT_ANNOTATION", "PROXY_CONTAINER",
           "PROXY_PORT", "PROXY_UID", "STATUS_ANNOTATION", "InjectConfig", "MeshConfig", "inject",
           "wants_injection"]
# The embedded cluster injects as its profile says (the Istio 0.2.12 Initializer's policy).
LOCAL = PROFILES[DEFAULT_PROFILE]

INJECT_CONFIG_MAP = "istio-inject"  # in the control plane namespace, read by the Initializer


@dataclass(frozen=True)
class MeshConfig:
    """The parts of the ``istio`` mesh ConfigMap the injector reads."""

    discovery_address: str = "istio-pilot.istio-system:15003"
    zipkin_address: str = "zipkin.istio-system:9411"
    statsd_udp_address: str = "istio-mixer.istio-system:9125"
    proxy_listen_port: int = PROXY_PORT
    proxy_admin_port: int = 15000
    drain_duration: str = "45s"
    parent_shutdown_duration: str = "1m0s"
    discovery_refresh_delay: str = "1s"
    connect_timeout: str = "10s"
    control_plane_auth_policy: str = "NONE"

    @classmethod
    def from_configmap(cls, configmap: Obj | None, args: ProxyArgs = LOCAL.proxy_args) -> MeshConfig:
        """The mesh ConfigMap's values; what it leaves out is the release's default (``args``)."""
        default = cls(discovery_address=args.discovery_address)
        if configmap is None:
            return default
        mesh = _yaml_key(configmap, "mesh")
        proxy = mesh.get("defaultConfig") or {}
        return cls(
            discovery_address=proxy.get("discoveryAddress", default.discovery_address),
            zipkin_address=proxy.get("zipkinAddress", default.zipkin_address),
            statsd_udp_address=proxy.get("statsdUdpAddress", default.statsd_udp_address),
            proxy_listen_port=int(mesh.get("proxyListenPort", default.proxy_listen_port)),
            proxy_admin_port=int(proxy.get("proxyAdminPort", default.proxy_admin_port)),
            drain_duration=proxy.get("drainDuration", default.drain_duration),
            parent_shutdown_duration=proxy.get("parentShutdownDuration", default.parent_shutdown_duration),
            discovery_refresh_delay=proxy.get("discoveryRefreshDelay", default.discovery_refresh_delay),
            connect_timeout=proxy.get("connectTimeout", default.connect_timeout),
            control_plane_auth_policy=proxy.get("controlPlaneAuthPolicy", default.control_plane_auth_policy),
        )


@dataclass(frozen=True)
class InjectConfig:
    """The ``config`` key of the ``istio-inject`` ConfigMap."""

    policy: str
    namespaces: tuple[str, ...]
    initializer_name: str
    init_image: str
    proxy_image: str
    verbosity: int
    version: str
    mesh_config_map_name: str
    image_pull_policy: str
    debug_mode: bool
    include_ip_ranges: str = ""

    @classmethod
    def from_configmap(cls, configmap: Obj) -> InjectConfig:
        config = _yaml_key(configmap, "config")
        params = config.get("params") or {}
        try:
            policy = str(config.get("policy", "enabled"))
            if policy not in ("enabled", "disabled"):
                raise ValueError(f"policy {policy!r} is neither enabled nor disabled")
            namespaces = config.get("namespaces") or [""]
            if not isinstance(namespaces, list):
                raise ValueError(f"namespaces must be a list, not {namespaces!r}")
            debug_mode = params.get("debugMode", False)
            if not isinstance(debug_mode, bool):
                raise ValueError(f"debugMode must be true or false, not {debug_mode!r}")
            return cls(
                policy=policy,
                namespaces=tuple(str(n) for n in namespaces),
                initializer_name=str(config.get("initializerName", INITIALIZER_NAME)),
                init_image=str(params["initImage"]),
                proxy_image=str(params["proxyImage"]),
                verbosity=int(params.get("verbosity", 2)),
                version=str(params.get("version", "unknown")),
                mesh_config_map_name=str(params.get("meshConfigMapName", "istio")),
                image_pull_policy=str(params.get("imagePullPolicy", "IfNotPresent")),
                debug_mode=debug_mode,
                include_ip_ranges=str(params.get("includeIPRanges", "")),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ManifestError(f"configmap istio-inject: bad injector config ({e}); see fixtures/istio") from e

    @property
    def status(self) -> str:
        return f"injected-version-{self.version}"


def _yaml_key(configmap: Obj, key: str) -> dict[str, Any]:
    raw = (configmap.get("data") or {}).get(key)
    if raw is None:
        return {}
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        name = configmap.get("metadata", {}).get("name")
        raise ManifestError(f"configmap {name}: key {key!r} is not valid YAML") from e
    return value if isinstance(value, dict) else {}


def wants_injection(workload: Obj, config: InjectConfig, policy: InjectionPolicy = LOCAL.injection_policy) -> bool:
    """Whether the Initializer injects this workload (Deployment, StatefulSet, Job or DaemonSet)."""
    if workload.get("kind") not in INJECTED_KINDS:
        return False
    template = workload.get("spec", {}).get("template", {})
    if STATUS_ANNOTATION in {**annotations_of(workload), **annotations_of(template)}:
        return False
    namespace = workload.get("metadata", {}).get("namespace") or "default"
    if "" not in config.namespaces and namespace not in config.namespaces:
        return False
    return policy.injects(namespace, policy.requested(template, workload), enabled=config.policy == "enabled",
                          host_network=bool(template.get("spec", {}).get("hostNetwork")))


def inject(workload: Obj, config: InjectConfig, mesh: MeshConfig, args: ProxyArgs = LOCAL.proxy_args) -> Obj:
    """Return a copy of the workload with the sidecar, init container, volumes and status annotation, the proxy's
    command line as the release's injector writes it (``args``)."""
    result = copy.deepcopy(workload)
    template = result.setdefault("spec", {}).setdefault("template", {})
    for meta in (result.setdefault("metadata", {}), template.setdefault("metadata", {})):
        meta.setdefault("annotations", {})[STATUS_ANNOTATION] = config.status
    spec = template.setdefault("spec", {})
    app_labels = template["metadata"].get("labels") or {}
    service_cluster = app_labels.get("app") or args.service_cluster_fallback
    spec.setdefault("initContainers", []).append(init_container(config, mesh))
    spec.setdefault("containers", []).append(proxy_container(config, mesh, service_cluster, args))
    service_account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec.setdefault("volumes", []).extend(
        [
            {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
            {
                "name": "istio-certs",
                "secret": {"secretName": f"istio.{service_account}", "optional": True, "defaultMode": 420},
            },
        ]
    )
    return result


def init_container(config: InjectConfig, mesh: MeshConfig) -> Obj:
    args = ["-p", str(mesh.proxy_listen_port), "-u", str(PROXY_UID)]
    if config.include_ip_ranges:
        args += ["-i", config.include_ip_ranges]
    return {
        "name": INIT_CONTAINER,
        "image": config.init_image,
        "imagePullPolicy": config.image_pull_policy,
        "args": args,
        "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}, "privileged": True},
    }


def proxy_container(config: InjectConfig, mesh: MeshConfig, service_cluster: str,
                    args: ProxyArgs = LOCAL.proxy_args) -> Obj:
    security: Obj = {"runAsUser": PROXY_UID}
    if config.debug_mode:
        security = {"privileged": True, "readOnlyRootFilesystem": False, "runAsUser": PROXY_UID}
    # -v only when verbosity > 0 (istio/pilot platform/kube/inject/inject.go, injectIntoSpec).
    verbosity = ["-v", str(config.verbosity)] if config.verbosity > 0 else []
    auth_policy = ["--controlPlaneAuthPolicy", mesh.control_plane_auth_policy] if args.control_plane_auth_policy else []
    return {
        "name": PROXY_CONTAINER,
        "image": config.proxy_image,
        "imagePullPolicy": config.image_pull_policy,
        "args": [
            "proxy", "sidecar",
            *verbosity,
            "--configPath", "/etc/istio/proxy",
            "--binaryPath", "/usr/local/bin/envoy",
            "--serviceCluster", service_cluster,
            "--drainDuration", mesh.drain_duration,
            "--parentShutdownDuration", mesh.parent_shutdown_duration,
            "--discoveryAddress", mesh.discovery_address,
            "--discoveryRefreshDelay", mesh.discovery_refresh_delay,
            "--zipkinAddress", mesh.zipkin_address,
            "--connectTimeout", mesh.connect_timeout,
            "--statsdUdpAddress", mesh.statsd_udp_address,
            "--proxyAdminPort", str(mesh.proxy_admin_port),
            *auth_policy,
        ],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            _field_env("INSTANCE_IP", "status.podIP"),
        ],
        "securityContext": security,
        "volumeMounts": [
            {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
            {"name": "istio-certs", "mountPath": "/etc/certs/", "readOnly": True},
        ],
    }


def _field_env(name: str, path: str) -> Obj:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}
