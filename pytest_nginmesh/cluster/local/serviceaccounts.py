"""In-cluster API access as Kubernetes 1.7-1.9 gives it: a ``default`` ServiceAccount per namespace with a token
Secret, the ServiceAccount admission plug-in that mounts it into pods, the API server's check of those tokens,
and the ``kubernetes`` Service in ``default`` that leads pods to the API server."""

from __future__ import annotations

import base64
import copy
import hmac
import secrets

from ...kube import Obj, ObjectKey
from .store import Store

# kubernetes/kubernetes release-1.9: pkg/serviceaccount/util.go (ServiceAccountUsernamePrefix),
# pkg/apis/core/types.go (SecretTypeServiceAccountToken and its keys, ServiceAccountNameKey/UIDKey annotations),
# plugin/pkg/admission/serviceaccount/admission.go (DefaultServiceAccountName, DefaultAPITokenMountPath).
DEFAULT_SERVICE_ACCOUNT = "default"
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"
USER_PREFIX = "system:serviceaccount:"
# The master's bootstrap controller (pkg/master/controller.go): Service and Endpoints "kubernetes" in "default",
# port "https" 443 to the API server's secure port.
API_SERVICE = ObjectKey("Service", "default", "kubernetes")
API_PORT_NAME = "https"
API_SERVICE_PORT = 443
# ConfigMap and Secret volumes' default mode (k8s.io/api core/v1 SecretVolumeSource.DefaultMode: 0644).
DEFAULT_MODE = 0o644


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def token_secret_of(store: Store, namespace: str, account: str = DEFAULT_SERVICE_ACCOUNT) -> Obj | None:
    """The token Secret the ServiceAccount lists, when it exists."""
    service_account = store.get(ObjectKey("ServiceAccount", namespace, account))
    for ref in (service_account or {}).get("secrets") or []:
        secret = store.get(ObjectKey("Secret", namespace, str(ref.get("name"))))
        if secret is not None and secret.get("type") == TOKEN_SECRET_TYPE:
            return secret
    return None


def ensure_service_account(store: Store, namespace: str, ca_pem: str) -> Obj | None:
    """The namespace's ``default`` ServiceAccount and its token Secret (token, ca.crt, namespace), made now if
    missing, as the service-account and token controllers do; returns the Secret (None once the namespace is
    gone)."""
    with store.changed:  # one token per account, and none for a namespace deleted meanwhile
        if store.get(ObjectKey("Namespace", "", namespace)) is None:
            return None
        return token_secret_of(store, namespace) or _create_token(store, namespace, ca_pem)


def _create_token(store: Store, namespace: str, ca_pem: str) -> Obj:
    service_account = store.get(ObjectKey("ServiceAccount", namespace, DEFAULT_SERVICE_ACCOUNT))
    if service_account is None:
        service_account, _ = store.put({"apiVersion": "v1", "kind": "ServiceAccount",
                                        "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace}})
    # The token controller names the Secret <account>-token-<5 random characters> (names.SimpleNameGenerator).
    name = f"{DEFAULT_SERVICE_ACCOUNT}-token-{secrets.token_hex(3)[:5]}"
    secret, _ = store.put({
        "apiVersion": "v1", "kind": "Secret", "type": TOKEN_SECRET_TYPE,
        "metadata": {"name": name, "namespace": namespace,
                     "annotations": {NAME_ANNOTATION: DEFAULT_SERVICE_ACCOUNT,
                                     UID_ANNOTATION: service_account["metadata"]["uid"]}},
        "data": {"token": _b64(secrets.token_urlsafe(32)), "ca.crt": _b64(ca_pem), "namespace": _b64(namespace)},
    })
    store.update(ObjectKey("ServiceAccount", namespace, DEFAULT_SERVICE_ACCOUNT),
                 lambda sa: sa.__setitem__("secrets", [*(sa.get("secrets") or []), {"name": name}]))
    return secret


def mount_token(pod: Obj, store: Store, ca_pem: str) -> Obj:
    """The ServiceAccount admission plug-in: the pod runs as its namespace's ``default`` account unless it names
    one, and gets that account's token Secret as a volume mounted read-only at TOKEN_MOUNT_PATH in every container
    that has nothing there yet; ``automountServiceAccountToken: false`` (pod or account) leaves it alone."""
    pod = copy.deepcopy(pod)
    spec = pod.setdefault("spec", {})
    account = spec.setdefault("serviceAccountName", spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT)
    spec["serviceAccount"] = account
    namespace = pod["metadata"].get("namespace", "default")
    service_account = store.get(ObjectKey("ServiceAccount", namespace, account)) or {}
    if False in (spec.get("automountServiceAccountToken"), service_account.get("automountServiceAccountToken")):
        return pod
    if account == DEFAULT_SERVICE_ACCOUNT:
        secret: Obj | None = ensure_service_account(store, namespace, ca_pem)
    else:
        secret = token_secret_of(store, namespace, account)
    if secret is None:
        return pod  # an account without a token: the pod runs without API credentials
    volume_name = secret["metadata"]["name"]
    volumes = spec.setdefault("volumes", [])
    if not any((v.get("secret") or {}).get("secretName") == volume_name for v in volumes):
        volumes.append({"name": volume_name, "secret": {"secretName": volume_name, "defaultMode": DEFAULT_MODE}})
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        mounts = container.setdefault("volumeMounts", [])
        if not any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts):
            mounts.append({"name": volume_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
    return pod


def token_user(store: Store, authorization: str | None) -> str | None:
    """``system:serviceaccount:<namespace>:<account>`` when the bearer token is a service-account token."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    wanted = presented.strip().encode()
    for secret in store.objects("Secret"):
        if secret.get("type") != TOKEN_SECRET_TYPE:
            continue
        try:
            token = base64.b64decode((secret.get("data") or {}).get("token", ""), validate=True)
        except ValueError:
            continue
        if token and hmac.compare_digest(token, wanted):
            meta = secret["metadata"]
            return f"{USER_PREFIX}{meta['namespace']}:{(meta.get('annotations') or {}).get(NAME_ANNOTATION, '')}"
    return None


def api_service(cluster_ip: str, host_ip: str, port: int) -> list[Obj]:
    """The ``kubernetes`` Service (no selector) and its Endpoints: 443 to the API server on the node link."""
    name, namespace = API_SERVICE.name, API_SERVICE.namespace
    labels = {"component": "apiserver", "provider": "kubernetes"}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "namespace": namespace, "labels": labels},
               "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "sessionAffinity": "None",
                        "ports": [{"name": API_PORT_NAME, "port": API_SERVICE_PORT, "protocol": "TCP",
                                   "targetPort": port}]}}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
                 "subsets": [{"addresses": [{"ip": host_ip}],
                              "ports": [{"name": API_PORT_NAME, "port": port, "protocol": "TCP"}]}]}
    return [service, endpoints]
