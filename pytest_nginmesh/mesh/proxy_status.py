"""The proxy status Pilot publishes through the Kubernetes API: the ConfigMap ``nginmesh-proxy-status`` in
istio-system names the mesh config version Pilot serves and the version each live proxy acked (what
``istioctl proxy-status`` shows), so anything that can read a ConfigMap can wait for convergence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..cluster.local.catalogue import is_proxy
from ..cluster.published_versions import (
    MESH_VERSION_KEY,
    PROXY_STATUS_CONFIGMAP,
    PROXY_STATUS_NAMESPACE,
    PROXY_STATUS_OBSERVED,
    PROXY_STATUS_WATCHED,
)
from ..errors import ForbiddenError
from ..kube import Obj

ACK_PATH = "/v1/ack"  # where the local Pilot takes the agents' acks


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


def status_config_map(data: dict[str, str], observed: int | None = None,
                      watched: Iterable[str] = ()) -> Obj:
    """The ConfigMap; ``observed`` (annotation PROXY_STATUS_OBSERVED) is the highest resourceVersion Pilot had seen
    when it wrote it, of the collections ``watched`` (annotation PROXY_STATUS_WATCHED, their API paths), so a client
    that wrote an object of one of them at resourceVersion R reads a mesh-version that includes its write once
    the annotation is >= R (a write elsewhere never shows there)."""
    meta: Obj = {"name": PROXY_STATUS_CONFIGMAP, "namespace": PROXY_STATUS_NAMESPACE}
    if observed is not None:
        meta["annotations"] = {PROXY_STATUS_OBSERVED: str(observed), PROXY_STATUS_WATCHED: ",".join(sorted(watched))}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}



def proxy_identity(pod: Obj) -> tuple[str, int] | None:
    """(containerID, restartCount) of the pod's running proxy container; None when none runs."""
    proxies = {c["name"] for c in (pod.get("spec") or {}).get("containers") or [] if is_proxy(c)}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") in proxies and "running" in (status.get("state") or {}) and status.get("containerID"):
            return str(status["containerID"]), int(status.get("restartCount", 0))
    return None


class AckBook:
    """The acks Pilot holds. An ack is taken only from the pod it names (its source address is that pod's IP, as
    an ADS stream comes from the proxy itself) and only while a proxy container runs there; it counts only as
    long as that same container (containerID and restartCount) runs, so the ack of a proxy that crashed never
    vouches for the one restarted in its place. The agent acks again at every poll, so an ack taken just before
    Pilot saw its container restart is replaced within one refresh period."""

    def __init__(self) -> None:
        self._acks: dict[tuple[str, str], tuple[ProxyAck, tuple[str, int]]] = {}
        self._lock = threading.Lock()

    def record(self, ack: ProxyAck, pod: Obj | None, peer_ip: str) -> bool:
        """Take the ack; False when it changes nothing. ForbiddenError names why it is refused."""
        where = f"{ack.namespace}/{ack.pod}"
        if pod is None or (pod.get("status") or {}).get("podIP") != peer_ip:
            raise ForbiddenError(f"config ack for pod {where} refused: it must come from that pod's own proxy "
                                 f"(it came from {peer_ip})")
        identity = proxy_identity(pod)
        if identity is None:
            raise ForbiddenError(f"config ack for pod {where} refused: no proxy container runs there")
        with self._lock:
            before = self._acks.get((ack.namespace, ack.pod))
            self._acks[(ack.namespace, ack.pod)] = (ack, identity)
        return before != (ack, identity)

    def live(self, pods: Mapping[tuple[str, str], Obj]) -> list[ProxyAck]:
        """The acks of proxies that still run (by namespace and pod); the others are dropped."""
        with self._lock:
            for key, (_, identity) in list(self._acks.items()):
                pod = pods.get(key)
                if pod is None or proxy_identity(pod) != identity:
                    del self._acks[key]
            return [ack for ack, _ in sorted(self._acks.values(), key=lambda e: (e[0].namespace, e[0].pod))]
