"""A Bookinfo-on-Nginmesh-0.2.12 cluster as the seed recorded it, for loading into RecordedApiServer.

Recorded: the injected pod reviews-v3-5fff595d9b-zsb2q (tests/data/seed-reviews-v3-pod.json, verbatim), the
istio-system services' types, cluster IPs and ports (``kubectl get svc``: istio-ingress LoadBalancer with its
EXTERNAL-IP pending, NodePorts 32765 and 31969), the kubernetes service, and the two kubeadm nodes (kube-1, the
master at 10.12.5.15, and kube-2 at 10.12.5.31, kubelet v1.9.0). Derived: the other Bookinfo pods (copies of the
recorded one with their names, labels, images and IPs changed), the istio-system pods, Deployments, ReplicaSets,
Endpoints and the rest, in the shapes that cluster served. uids, hashes and digests of derived objects are
deterministic stand-ins. The node addresses are not reachable from the test machine, as from any laptop outside
that cluster's network.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

SEED_POD = Path(__file__).resolve().parent.parent / "data" / "seed-reviews-v3-pod.json"
BOOKINFO_TAG = "0.2.3"
ISTIO_TAG = "0.2.12"
CREATED = "2018-01-02T02:33:36Z"
NODES = {"kube-1": "10.12.5.15", "kube-2": "10.12.5.31"}
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _uid(text: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kubefake:{text}"))


def _safe(text: str, size: int) -> str:
    number, out = _digest(text), ""
    for _ in range(size):
        number, index = divmod(number, len(_SAFE))
        out += _SAFE[index]
    return out


def seed_pod() -> Obj:
    """The recorded pod, as kubectl printed it."""
    pod: Obj = json.loads(SEED_POD.read_text())
    return pod


def _meta(name: str, namespace: str | None, labels: dict[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name, "uid": _uid(f"{namespace}/{name}"), "creationTimestamp": CREATED}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return meta


def _owner(kind: str, name: str, uid: str) -> Obj:
    return {"apiVersion": "extensions/v1beta1", "blockOwnerDeletion": True, "controller": True, "kind": kind,
            "name": name, "uid": uid}


def _container_status(name: str, image: str, pod: str) -> Obj:
    repository = image.rsplit(":", 1)[0]
    return {"containerID": f"docker://{hashlib.sha256(f'{pod}/{name}'.encode()).hexdigest()}", "image": image,
            "imageID": f"docker-pullable://{repository}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
            "lastState": {}, "name": name, "ready": True, "restartCount": 0,
            "state": {"running": {"startedAt": "2018-01-02T02:36:05Z"}}}


def _workload(namespace: str, app: str, version: str | None, pod: Obj, rs_hash: str, template_hash: str,
              rs_uid: str | None = None) -> list[Obj]:
    """A Deployment, its ReplicaSet, and ``pod`` renamed to belong to them."""
    deployment_name = f"{app}-{version}" if version else app
    labels = {"app": app, "version": version} if version else {"istio": app.removeprefix("istio-")}
    rs_name = f"{deployment_name}-{rs_hash}"
    deployment_meta = _meta(deployment_name, namespace, labels) | {"generation": 1}
    rs_meta = _meta(rs_name, namespace, labels | {"pod-template-hash": template_hash}) | {"generation": 1}
    if rs_uid:
        rs_meta["uid"] = rs_uid
    rs_meta["ownerReferences"] = [_owner("Deployment", deployment_name, deployment_meta["uid"])]
    template = {"metadata": {"labels": labels}, "spec": {
        "containers": [c for c in pod["spec"]["containers"] if c["name"] != "istio-proxy"]}}
    deployment = {"apiVersion": "extensions/v1beta1", "kind": "Deployment", "metadata": deployment_meta,
                  "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template},
                  "status": {"availableReplicas": 1, "observedGeneration": 1, "readyReplicas": 1, "replicas": 1,
                             "updatedReplicas": 1}}
    replica_set = {"apiVersion": "extensions/v1beta1", "kind": "ReplicaSet", "metadata": rs_meta,
                   "spec": {"replicas": 1, "selector": {"matchLabels": labels | {"pod-template-hash": template_hash}},
                            "template": template},
                   "status": {"availableReplicas": 1, "fullyLabeledReplicas": 1, "observedGeneration": 1,
                              "readyReplicas": 1, "replicas": 1}}
    pod["metadata"]["generateName"] = f"{rs_name}-"
    pod["metadata"]["labels"] = labels | {"pod-template-hash": template_hash}
    pod["metadata"]["ownerReferences"] = [_owner("ReplicaSet", rs_name, rs_meta["uid"])]
    return [deployment, replica_set, pod]


def _bookinfo_pod(seed: Obj, app: str, version: str, ip: str) -> Obj:
    """The recorded reviews-v3 pod, made into another Bookinfo workload's."""
    pod = copy.deepcopy(seed)
    rs_hash = _safe(f"{app}-{version}", 10)
    name = f"{app}-{version}-{rs_hash}-{_safe(f'{app}-{version}-pod', 5)}"
    image = f"istio/examples-bookinfo-{app}-{version}:{BOOKINFO_TAG}"
    pod["metadata"].update(name=name, uid=_uid(f"default/{name}"),
                           selfLink=f"/api/v1/namespaces/default/pods/{name}")
    app_container = pod["spec"]["containers"][0]
    app_container.update(name=app, image=image)
    proxy_args = pod["spec"]["containers"][1]["args"]
    proxy_args[proxy_args.index("--serviceCluster") + 1] = app
    statuses = pod["status"]["containerStatuses"]
    pod["status"]["containerStatuses"] = [_container_status("istio-proxy", statuses[0]["image"], name),
                                          _container_status(app, image, name)]
    pod["status"]["podIP"] = ip
    return pod


def _system_pod(seed: Obj, app: str, containers: list[tuple[str, str, list[str]]], ip: str) -> Obj:
    """An istio-system pod (not injected), in the recorded pod's shape."""
    name = f"{app}-{_safe(app, 10)}-{_safe(app + '-pod', 5)}"
    pod = copy.deepcopy(seed)
    token = f"{app}-service-account-token-{_safe(app + '-token', 5)}"
    mount = {"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": token, "readOnly": True}
    pod["metadata"] = _meta(name, "istio-system") | {"selfLink": f"/api/v1/namespaces/istio-system/pods/{name}"}
    spec = pod["spec"]
    del spec["initContainers"]
    spec["containers"] = [{"args": args, "image": image, "imagePullPolicy": "IfNotPresent", "name": cname,
                           "resources": {}, "terminationMessagePath": "/dev/termination-log",
                           "terminationMessagePolicy": "File", "volumeMounts": [mount]}
                          for cname, image, args in containers]
    spec["serviceAccount"] = spec["serviceAccountName"] = f"{app}-service-account"
    spec["volumes"] = [{"name": token, "secret": {"defaultMode": 420, "secretName": token}}]
    status = pod["status"]
    del status["initContainerStatuses"]
    status["containerStatuses"] = [_container_status(cname, image, name) for cname, image, _ in containers]
    status["podIP"] = ip
    return pod


def _service(namespace: str, name: str, cluster_ip: str, ports: list[Obj], selector: dict[str, str],
             kind: str = "ClusterIP") -> Obj:
    for port in ports:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port["port"])
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace, dict(selector)),
            "spec": {"clusterIP": cluster_ip, "ports": ports, "selector": selector, "sessionAffinity": "None",
                     "type": kind} | ({"externalTrafficPolicy": "Cluster"} if kind == "LoadBalancer" else {}),
            "status": {"loadBalancer": {}}}  # LoadBalancer without a cloud provider: EXTERNAL-IP <pending>


def _endpoints(service: Obj, pods: list[Obj]) -> Obj:
    meta = service["metadata"]
    selector = service["spec"]["selector"]
    members = [p for p in pods if p["metadata"]["namespace"] == meta["namespace"]
               and all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
    addresses = [{"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"],
                  "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"], "name": p["metadata"]["name"],
                                "uid": p["metadata"]["uid"], "resourceVersion": p["metadata"]["resourceVersion"]}}
                 for p in members]
    ports = [{"name": p["name"], "port": p["targetPort"], "protocol": p["protocol"]} if p.get("name") else
             {"port": p["targetPort"], "protocol": p["protocol"]} for p in service["spec"]["ports"]]
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": _meta(meta["name"], meta["namespace"],
                                                                        meta.get("labels")),
            "subsets": [{"addresses": addresses, "ports": ports}] if addresses else []}


def _node(name: str, address: str, master: bool) -> Obj:
    labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/hostname": name}
    spec: Obj = {"externalID": name, "podCIDR": f"192.168.{0 if master else 1}.0/24"}
    if master:
        labels["node-role.kubernetes.io/master"] = ""
        spec["taints"] = [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/master"}]
    condition = {"lastHeartbeatTime": "2018-01-02T02:50:00Z", "lastTransitionTime": "2018-01-02T02:10:00Z"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": _meta(name, None, labels) | {"annotations": {
                "node.alpha.kubernetes.io/ttl": "0", "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
            "spec": spec,
            "status": {
                "addresses": [{"address": address, "type": "InternalIP"}, {"address": name, "type": "Hostname"}],
                "allocatable": {"cpu": "4", "memory": "8072896Ki", "pods": "110"},
                "capacity": {"cpu": "4", "memory": "8175296Ki", "pods": "110"},
                "conditions": [
                    condition | {"message": "kubelet has sufficient disk space available", "reason":
                                 "KubeletHasSufficientDisk", "status": "False", "type": "OutOfDisk"},
                    condition | {"message": "kubelet has sufficient memory available", "reason":
                                 "KubeletHasSufficientMemory", "status": "False", "type": "MemoryPressure"},
                    condition | {"message": "kubelet has no disk pressure", "reason": "KubeletHasNoDiskPressure",
                                 "status": "False", "type": "DiskPressure"},
                    condition | {"message": "kubelet is posting ready status. AppArmor enabled", "reason":
                                 "KubeletReady", "status": "True", "type": "Ready"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"architecture": "amd64", "bootID": _uid(f"boot/{name}"),
                             "containerRuntimeVersion": "docker://1.13.1", "kernelVersion": "4.4.0-104-generic",
                             "kubeProxyVersion": "v1.9.0", "kubeletVersion": "v1.9.0",
                             "machineID": hashlib.md5(name.encode()).hexdigest(),
                             "operatingSystem": "linux", "osImage": "Ubuntu 16.04.3 LTS",
                             "systemUUID": _uid(f"system/{name}").upper()}}}


def _crd(plural: str, kind: str) -> Obj:
    name = f"{plural}.config.istio.io"
    return {"apiVersion": "apiextensions.k8s.io/v1beta1", "kind": "CustomResourceDefinition",
            "metadata": _meta(name, None) | {"generation": 1},
            "spec": {"group": "config.istio.io", "version": "v1alpha2", "scope": "Namespaced",
                     "names": {"plural": plural, "singular": plural.removesuffix("ies") + "y"
                               if plural.endswith("ies") else plural.removesuffix("s"),
                               "kind": kind, "listKind": f"{kind}List"}},
            "status": {"acceptedNames": {"kind": kind, "listKind": f"{kind}List", "plural": plural},
                       "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                                       "message": "the initial names have been accepted",
                                       "lastTransitionTime": CREATED}]}}


def bookinfo_objects() -> list[Obj]:
    """Namespaces, nodes, Istio 0.2.12 (Nginmesh sidecar) in istio-system and Bookinfo in default."""
    seed = seed_pod()
    objects: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, None),
                           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
                          for name in ("default", "istio-system", "kube-public", "kube-system")]
    objects += [_node(name, address, master=name == "kube-1") for name, address in NODES.items()]
    pods: list[Obj] = []
    pod_versions = iter(range(3600, 3757, 9))  # the derived pods were recorded just before the seed's 3757

    ips = iter(f"192.168.79.{n}" for n in range(130, 160))
    for app, version in (("details", "v1"), ("productpage", "v1"), ("ratings", "v1"), ("reviews", "v1"),
                         ("reviews", "v2"), ("reviews", "v3")):
        if (app, version) == ("reviews", "v3"):  # the recorded one, as it is
            rs = seed["metadata"]["ownerReferences"][0]
            objects += _workload("default", app, version, copy.deepcopy(seed), rs["name"].rsplit("-", 1)[1],
                                 seed["metadata"]["labels"]["pod-template-hash"], rs["uid"])
            pods.append(objects[-1])
            continue
        pod = _bookinfo_pod(seed, app, version, next(ips))
        pod["metadata"]["resourceVersion"] = str(next(pod_versions))
        rs_hash = pod["metadata"]["name"].split("-")[-2]
        objects += _workload("default", app, version, pod, rs_hash, str(_digest(rs_hash) % 2**32))
        pods.append(objects[-1])

    istio = f"docker.io/istio/{{}}:{ISTIO_TAG}"
    system = {
        "istio-ca": [("istio-ca", istio.format("istio-ca"), ["--istio-ca-storage-namespace=istio-system",
                                                             "--grpc-port=8060", "--grpc-hostname=istio-ca"])],
        "istio-ingress": [("istio-ingress", f"nginmesh/proxy_debug:{ISTIO_TAG}",
                           ["proxy", "ingress", "-v", "2", "--discoveryAddress", "istio-pilot:15003",
                            "--discoveryRefreshDelay", "1s", "--drainDuration", "45s", "--parentShutdownDuration",
                            "1m0s", "--connectTimeout", "10s", "--serviceCluster", "istio-ingress",
                            "--zipkinAddress", "zipkin:9411", "--statsdUdpAddress", "istio-mixer:9125",
                            "--proxyAdminPort", "15000", "--controlPlaneAuthPolicy", "NONE"])],
        "istio-mixer": [("statsd-to-prometheus", "prom/statsd-exporter:v0.5.0",
                         ["-statsd.mapping-config=/etc/statsd/mapping.conf"]),
                        ("mixer", istio.format("mixer"), ["--configStoreURL=k8s://", "--configDefaultNamespace="
                                                          "istio-system", "--zipkinURL=http://zipkin:9411/api/v1/spans",
                                                          "--logtostderr", "-v", "2"])],
        "istio-pilot": [("discovery", istio.format("pilot"), ["discovery", "-v", "2", "--admission-service",
                                                              "istio-pilot-external"])],
        "istio-sidecar-initializer": [("initializer", istio.format("sidecar_initializer"),
                                       ["--port=8083", "--namespace=istio-system", "-v=2"])],
    }
    for app, containers in system.items():
        pod = _system_pod(seed, app, containers, next(ips))
        pod["metadata"]["resourceVersion"] = str(next(pod_versions))
        rs_hash = pod["metadata"]["name"].split("-")[-2]
        objects += _workload("istio-system", app, None, pod, rs_hash, str(_digest(rs_hash) % 2**32))
        pods.append(objects[-1])

    services = [
        _service("default", "kubernetes", "10.96.0.1", [{"name": "https", "port": 443, "targetPort": 6443}], {}),
        *(_service("default", app, f"10.{100 + i}.{40 + i * 7}.{20 + i * 11}", [{"name": "http", "port": 9080}],
                   {"app": app}) for i, app in enumerate(("details", "productpage", "ratings", "reviews"))),
        _service("istio-system", "istio-ingress", "10.111.158.10",
                 [{"name": "http", "port": 80, "nodePort": 32765}, {"name": "https", "port": 443, "nodePort": 31969}],
                 {"istio": "ingress"}, kind="LoadBalancer"),
        _service("istio-system", "istio-mixer", "10.107.135.31",
                 [{"name": "tcp-plain", "port": 9091}, {"name": "tcp-mtls", "port": 15004},
                  {"name": "http-monitoring", "port": 9093}, {"name": "configapi", "port": 9094},
                  {"name": "statsd-prom", "port": 9102}, {"name": "statsd-udp", "port": 9125, "protocol": "UDP"},
                  {"name": "prometheus", "port": 42422}], {"istio": "mixer"}),
        _service("istio-system", "istio-pilot", "10.111.110.65",
                 [{"name": "http-discovery", "port": 15003}, {"name": "http-admission-webhook", "port": 443}],
                 {"istio": "pilot"}),
    ]
    services[0]["metadata"]["labels"] = {"component": "apiserver", "provider": "kubernetes"}
    services[0]["spec"].pop("selector")
    services[0]["spec"]["sessionAffinity"] = "ClientIP"
    kubernetes_endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": _meta("kubernetes", "default"),
                            "subsets": [{"addresses": [{"ip": NODES["kube-1"]}],
                                         "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}
    objects += services + [kubernetes_endpoints] + [_endpoints(s, pods) for s in services[1:]]

    objects += [_crd("routerules", "RouteRule"), _crd("destinationpolicies", "DestinationPolicy"),
                _crd("egressrules", "EgressRule")]
    objects.append({"apiVersion": "admissionregistration.k8s.io/v1alpha1", "kind": "InitializerConfiguration",
                    "metadata": _meta("istio-sidecar", None),
                    "initializers": [{"name": "sidecar.initializer.istio.io", "rules": [
                        {"apiGroups": ["*"], "apiVersions": ["*"],
                         "resources": ["deployments", "statefulsets", "jobs", "daemonsets"]}]}]})
    for number, obj in enumerate(objects, start=1):  # recorded before the seed pod's 3757, in this order
        obj["metadata"].setdefault("resourceVersion", str(1000 + number * 10))
    return objects
