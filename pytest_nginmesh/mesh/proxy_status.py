"""The proxy status Pilot publishes through the Kubernetes API: the ConfigMap ``nginmesh-proxy-status`` in
istio-system names the mesh config version Pilot serves and the version each live proxy acked (what
``istioctl proxy-status`` shows), so anything that can read a ConfigMap can wait for convergence."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ..kube import Obj
from .manifests import CONTROL_PLANE_NAMESPACE

PROXY_STATUS_CONFIG_MAP = "nginmesh-proxy-status"
MESH_VERSION_KEY = "mesh-version"


@dataclass(frozen=True)
class ProxyAck:
    """What one live proxy last told Pilot: the version it runs, and the version it refused with why."""

    namespace: str
    pod: str
    version: str
    rejected_version: str = ""
    rejection: str = ""


def proxy_key(namespace: str, pod: str) -> str:
    """The ConfigMap key of a proxy; namespace and pod names are DNS labels/subdomains, so the key is a valid
    ConfigMap key (``[-._a-zA-Z0-9]+``) and splits at its first dot."""
    return f"{namespace}.{pod}"


def status_data(mesh_version: str, acks: Iterable[ProxyAck]) -> dict[str, str]:
    """The ConfigMap's data: ``mesh-version``, and ``<namespace>.<pod>`` → JSON of each proxy's ack."""
    data = {MESH_VERSION_KEY: mesh_version}
    for ack in acks:
        entry = {"version": ack.version}
        if ack.rejected_version:
            lines = ack.rejection.strip().splitlines()
            entry |= {"rejectedVersion": ack.rejected_version, "rejection": lines[0] if lines else "rejected"}
        data[proxy_key(ack.namespace, ack.pod)] = json.dumps(entry, sort_keys=True)
    return data


def status_config_map(data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": PROXY_STATUS_CONFIG_MAP, "namespace": CONTROL_PLANE_NAMESPACE},
            "data": data}
