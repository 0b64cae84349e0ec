"""The controllers of the local cluster: deployments make pods, services get addresses, endpoints and names."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import string
import threading
from collections.abc import Callable

from ...errors import NginmeshError
from ...kube import Obj, ObjectKey, key_of, labels_of, selector_matches
from .kubelet import Kubelet
from .network import Allocator, NodeNetwork, ServicePort
from .serviceaccounts import ensure_service_account
from .store import Store, now

NODE_PORTS = range(30000, 32768)


def template_hash(template: Obj) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def pending_initializers(obj: Obj) -> list[Obj]:
    return list(((obj.get("metadata") or {}).get("initializers") or {}).get("pending") or [])


def pod_from_template(deployment: Obj, hash_: str) -> Obj:
    template = copy.deepcopy(deployment["spec"]["template"])
    meta = deployment["metadata"]
    suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
    owner = f"{meta['name']}-{hash_}"
    spec = template.get("spec") or {}
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{owner}-{suffix}",
            "generateName": f"{owner}-",
            "namespace": meta["namespace"],
            "labels": {**(template.get("metadata", {}).get("labels") or {}), "pod-template-hash": hash_},
            "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
            "ownerReferences": [{
                "apiVersion": "extensions/v1beta1", "kind": "ReplicaSet", "name": owner,
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": spec,
        "status": {"phase": "Pending"},
    }


def mark_deleted(store: Store, key: ObjectKey) -> None:
    def mark(pod: Obj) -> None:
        pod["metadata"].setdefault("deletionTimestamp", now())

    store.update(key, mark)


def owner_uid(pod: Obj) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def is_ready(pod: Obj) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and not pod["metadata"].get(
        "deletionTimestamp")


class Controllers:
    """One reconcile pass brings the running state closer to the stored objects."""

    def __init__(self, store: Store, kubelet: Kubelet, network: NodeNetwork, ca_pem: str,
                 admit_pod: Callable[[Obj], Obj]) -> None:
        self.store = store
        self.ca_pem = ca_pem
        # A ReplicaSet controller creates pods through the API, so they pass admission (the ServiceAccount
        # plug-in, webhooks); a refusal leaves the Deployment short of pods and an event saying why.
        self.admit_pod = admit_pod
        self.kubelet = kubelet
        self.network = network
        self.service_ips = Allocator(network.addresses.service_cidr)
        self.node_ports: set[int] = set()
        self._programmed: list[ServicePort] | None = None
        self._hosts_written: dict[str, dict[str, list[str]]] = {}
        self.pod_networks: dict[str, tuple[str, str, str]] = {}
        self._hosts_lock = threading.Lock()
        kubelet.on_pod_added = self.on_pod_network
        kubelet.on_pod_removed = self.forget_pod_network

    def reconcile(self) -> None:
        self._service_accounts()
        self._deployments()
        self.kubelet.sync()
        self._services()

    def _service_accounts(self) -> None:
        for namespace in self.store.objects("Namespace"):
            ensure_service_account(self.store, namespace["metadata"]["name"], self.ca_pem)

    # -- deployments --------------------------------------------------------------------------------
    def _deployments(self) -> None:
        deployments = {d["metadata"]["uid"]: d for d in self.store.objects("Deployment")}
        pods_by_owner: dict[str, list[Obj]] = {}
        for pod in self.store.objects("Pod"):
            uid = owner_uid(pod)
            if uid is None or pod["metadata"].get("deletionTimestamp"):
                continue
            if uid not in deployments:
                mark_deleted(self.store, key_of(pod))
                continue
            pods_by_owner.setdefault(uid, []).append(pod)
        for uid, deployment in deployments.items():
            if pending_initializers(deployment):
                continue
            self._scale(deployment, pods_by_owner.get(uid, []))

    def _scale(self, deployment: Obj, pods: list[Obj]) -> None:
        hash_ = template_hash(deployment["spec"]["template"])
        current = [p for p in pods if labels_of(p).get("pod-template-hash") == hash_]
        for pod in pods:
            if pod not in current:
                mark_deleted(self.store, key_of(pod))
        wanted = int(deployment["spec"].get("replicas", 1))
        for _ in range(wanted - len(current)):
            try:
                admitted = self.admit_pod(pod_from_template(deployment, hash_))
            except NginmeshError as e:
                self.store.record_event(deployment, "FailedCreate", f"Error creating: {e}", "Warning")
                break
            pod, _action = self.store.put(admitted)
            current.append(pod)
            self.store.record_event(deployment, "ScalingReplicaSet", f"Created pod {pod['metadata']['name']}")
        for pod in current[wanted:]:
            mark_deleted(self.store, key_of(pod))
        ready = sum(1 for p in current[:wanted] if is_ready(p))
        status = {"observedGeneration": deployment["metadata"].get("generation", 1),
                  "replicas": len(pods), "updatedReplicas": min(wanted, len(current)),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "conditions": [{"type": "Available", "status": "True" if ready >= wanted else "False",
                                  "reason": "MinimumReplicasAvailable" if ready >= wanted else
                                  "MinimumReplicasUnavailable"}]}
        self.store.update(key_of(deployment), lambda d: d.__setitem__("status", status))

    # -- services -----------------------------------------------------------------------------------
    def _services(self) -> None:
        services = self.store.objects("Service")
        pods = self.store.objects("Pod")
        ports: list[ServicePort] = []
        for service in services:
            service = self._allocate(service)
            endpoints = self._endpoints(service, pods)
            ports.extend(self._service_ports(service, endpoints))
        if ports != self._programmed:
            self.network.program_services(ports)
            self._programmed = ports
        self._write_hosts(services)

    def _allocate(self, service: Obj) -> Obj:
        spec = service.setdefault("spec", {})
        changed = False
        if not spec.get("clusterIP"):
            spec["clusterIP"] = self.service_ips.allocate()
            changed = True
        elif spec["clusterIP"] != "None" and spec["clusterIP"] not in self.service_ips.used:
            self.service_ips.allocate(spec["clusterIP"])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if port.get("nodePort"):
                    self.node_ports.add(int(port["nodePort"]))
                    continue
                port["nodePort"] = next(p for p in NODE_PORTS if p not in self.node_ports)
                self.node_ports.add(port["nodePort"])
                changed = True
        if changed:
            if spec.get("type") == "LoadBalancer":
                service["status"] = {"loadBalancer": {}}
            self.store.update(key_of(service), lambda s: s.update(spec=spec, status=service.get("status", {})))
        return service

    def release(self, service: Obj) -> None:
        spec = service.get("spec") or {}
        if spec.get("clusterIP") not in (None, "None"):
            self.service_ips.release(spec["clusterIP"])
        for port in spec.get("ports") or []:
            self.node_ports.discard(port.get("nodePort"))

    def _endpoints(self, service: Obj, pods: list[Obj]) -> Obj:
        namespace = service["metadata"]["namespace"]
        selector = service["spec"].get("selector")
        ready: list[Obj] = []
        not_ready: list[Obj] = []
        target_ports: list[int] = []
        for pod in pods:
            if pod["metadata"]["namespace"] != namespace or not selector_matches(selector, labels_of(pod)):
                continue
            ip = pod.get("status", {}).get("podIP")
            if not ip:
                continue
            address = {"ip": ip, "nodeName": pod["spec"].get("nodeName"),
                       "targetRef": {"kind": "Pod", "name": pod["metadata"]["name"], "namespace": namespace,
                                     "uid": pod["metadata"]["uid"]}}
            (ready if is_ready(pod) else not_ready).append(address)
            target_ports = [self._target_port(port, pod) for port in service["spec"].get("ports") or []]
        subsets = []
        if ready or not_ready:
            subset: Obj = {"ports": [{"name": p.get("name", ""), "port": t, "protocol": p.get("protocol", "TCP")}
                                     for p, t in zip(service["spec"].get("ports") or [], target_ports,
                                                     strict=True)]}
            if ready:
                subset["addresses"] = ready
            if not_ready:
                subset["notReadyAddresses"] = not_ready
            subsets.append(subset)
        endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": service["metadata"]["name"], "namespace": namespace,
                                  "labels": labels_of(service)},
                     "subsets": subsets}
        if not selector:  # their owner writes them, as the API server does the kubernetes Service's
            return self.store.get(ObjectKey("Endpoints", namespace, service["metadata"]["name"])) or endpoints
        self.store.put(endpoints)
        return endpoints

    @staticmethod
    def _target_port(port: Obj, pod: Obj) -> int:
        target = port.get("targetPort", port["port"])
        if isinstance(target, int) or str(target).isdigit():
            return int(str(target))
        for container in pod["spec"].get("containers") or []:
            for declared in container.get("ports") or []:
                if declared.get("name") == target:
                    return int(declared["containerPort"])
        return int(port["port"])

    @staticmethod
    def _service_ports(service: Obj, endpoints: Obj) -> list[ServicePort]:
        spec = service["spec"]
        if spec.get("clusterIP") in (None, "None"):
            return []
        result = []
        for index, port in enumerate(spec.get("ports") or []):
            addresses: list[tuple[str, int]] = []
            for subset in endpoints["subsets"]:
                target = subset["ports"][index]["port"]
                addresses += [(a["ip"], target) for a in subset.get("addresses") or []]
            result.append(ServicePort(
                namespace=service["metadata"]["namespace"], service=service["metadata"]["name"],
                name=str(port.get("name", "")), protocol=str(port.get("protocol", "TCP")), port=int(port["port"]),
                cluster_ip=spec["clusterIP"], node_port=port.get("nodePort"), endpoints=tuple(addresses)))
        return result

    # -- names --------------------------------------------------------------------------------------
    def _write_hosts(self, services: list[Obj]) -> None:
        with self._hosts_lock:
            self._write_hosts_locked(services)

    def _write_hosts_locked(self, services: list[Obj]) -> None:
        for netns, (namespace, pod_name, pod_ip) in list(self.pod_networks.items()):
            names: dict[str, list[str]] = {}
            for service in services:
                ip = service["spec"].get("clusterIP")
                if not ip or ip == "None":
                    continue
                name, ns = service["metadata"]["name"], service["metadata"]["namespace"]
                aliases = [f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"]
                names[ip] = ([name] if ns == namespace else []) + aliases
            if self._hosts_written.get(netns) != names:
                self.network.write_hosts(netns, pod_name, pod_ip, names)
                self._hosts_written[netns] = names

    def on_pod_network(self, namespace: str, netns: str, pod_name: str, pod_ip: str) -> None:
        """Called by the kubelet once a pod has its namespace, before any container starts."""
        self.pod_networks[netns] = (namespace, pod_name, pod_ip)
        self._write_hosts(self.store.objects("Service"))

    def forget_pod_network(self, netns: str) -> None:
        with self._hosts_lock:
            self.pod_networks.pop(netns, None)
            self._hosts_written.pop(netns, None)

