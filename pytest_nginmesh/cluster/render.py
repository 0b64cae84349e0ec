"""kind and kubeadm configurations for a cluster that runs a mesh profile: API server admission flags mostly."""

from __future__ import annotations

from typing import Any

import yaml

from ..profiles import Profile
from .versions import (
    KubeVersion,
    check_profile_supports,
    kind_kubeadm_api_version,
    kubeadm_api_version,
)
from .versions import node_image as pinned_node_image

KIND_API_VERSION = "kind.x-k8s.io/v1alpha4"
CALICO_POD_SUBNET = "192.168.0.0/16"
# Before 1.10 --admission-control replaced the whole (ordered) plugin list: this is the list of the
# Nginmesh 0.2 install guide's kubeadm-conf, which worked on 1.9.
SEED_ADMISSION_CONTROL = ("Initializers,NamespaceLifecycle,LimitRanger,ServiceAccount,PersistentVolumeLabel,"
                          "DefaultStorageClass,ValidatingAdmissionWebhook,ResourceQuota,DefaultTolerationSeconds,"
                          "MutatingAdmissionWebhook")
# From 1.10 the flag adds to the default-on plugins (MutatingAdmissionWebhook among them), but an extraArg
# replaces kubeadm's own value, which is NodeRestriction.
INITIALIZER_PLUGINS = "Initializers,NodeRestriction"
# The API server reads a runtime-config key without a value as true; say it.
INITIALIZER_RUNTIME_CONFIG = "admissionregistration.k8s.io/v1alpha1=true"
ENABLE_ADMISSION_PLUGINS_ADDED = KubeVersion(1, 10)

Doc = dict[str, Any]


def admission_args(v: KubeVersion, profile: Profile) -> dict[str, str]:
    """The API server flags the profile's sidecar injection needs at Kubernetes ``v`` (empty: none)."""
    check_profile_supports(profile, v)
    before_plugin_flags = v.minor_version < ENABLE_ADMISSION_PLUGINS_ADDED.minor_version
    if profile.injection == "initializer":
        plugins = ({"admission-control": SEED_ADMISSION_CONTROL} if before_plugin_flags
                   else {"enable-admission-plugins": INITIALIZER_PLUGINS})
        return {**plugins, "runtime-config": INITIALIZER_RUNTIME_CONFIG}
    if before_plugin_flags:
        return {"admission-control": SEED_ADMISSION_CONTROL.removeprefix("Initializers,")}
    return {}


def kubernetes_version_field(v: KubeVersion) -> str:
    """kubeadm's kubernetesVersion: the exact release, or the newest stable one of the minor."""
    return f"v{v}" if v.patch is not None else f"stable-{v.major}.{v.minor}"


def api_server_fields(api_version: str, args: dict[str, str]) -> Doc:
    """The extra API server args in the shape of a kubeadm config API version."""
    if not args:
        return {}
    if api_version.endswith(("v1alpha1", "v1alpha2", "v1alpha3")):
        return {"apiServerExtraArgs": dict(args)}
    if api_version.endswith("v1beta4"):
        return {"apiServer": {"extraArgs": [{"name": name, "value": value} for name, value in args.items()]}}
    return {"apiServer": {"extraArgs": dict(args)}}


def kubeadm_config(v: KubeVersion, profile: Profile, *, advertise_address: str | None = None,
                   pod_subnet: str = CALICO_POD_SUBNET) -> list[Doc]:
    """The documents for ``kubeadm init --config`` in the config API kubeadm of version ``v`` speaks."""
    api_version = kubeadm_api_version(v)
    cluster: Doc = {"apiVersion": api_version, "kind": "ClusterConfiguration",
                    "kubernetesVersion": kubernetes_version_field(v),
                    "networking": {"podSubnet": pod_subnet},
                    **api_server_fields(api_version, admission_args(v, profile))}
    if api_version.endswith(("v1alpha1", "v1alpha2")):
        cluster["kind"] = "MasterConfiguration"
        if advertise_address:
            cluster["api"] = {"advertiseAddress": advertise_address}
        return [cluster]
    if not advertise_address:
        return [cluster]
    endpoint = "apiEndpoint" if api_version.endswith("v1alpha3") else "localAPIEndpoint"
    init = {"apiVersion": api_version, "kind": "InitConfiguration", endpoint: {"advertiseAddress": advertise_address}}
    return [init, cluster]


def kind_config(v: KubeVersion, profile: Profile, node_image: str | None = None) -> Doc:
    """A one-node kind Cluster at Kubernetes ``v`` whose API server has the profile's admission flags."""
    args = admission_args(v, profile)
    image = node_image or pinned_node_image(v).image
    api_version = kind_kubeadm_api_version(v)
    config: Doc = {"apiVersion": KIND_API_VERSION, "kind": "Cluster",
                   "nodes": [{"role": "control-plane", "image": image}]}
    if args:
        kind = "MasterConfiguration" if api_version.endswith("v1alpha2") else "ClusterConfiguration"
        patch = {"apiVersion": api_version, "kind": kind, **api_server_fields(api_version, args)}
        config["kubeadmConfigPatches"] = [to_yaml(patch)]
    return config


class Dumper(yaml.SafeDumper):
    """Safe YAML, with multi-line strings (kind's patches) as literal blocks a person can read."""


def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


Dumper.add_representer(str, represent_str)


def to_yaml(docs: Doc | list[Doc]) -> str:
    """YAML text of one document, or of several separated by ``---``."""
    if isinstance(docs, dict):
        return yaml.dump(docs, Dumper=Dumper, sort_keys=False, default_flow_style=False)
    return yaml.dump_all(docs, Dumper=Dumper, sort_keys=False, default_flow_style=False)
