"""The MutatingAdmissionWebhook admission plug-in, as kube-apiserver runs it (kubernetes/kubernetes
staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/mutating): for each MutatingWebhookConfiguration (by
name) and each webhook in it whose rules match the request and whose namespaceSelector matches the object's
namespace, POST an AdmissionReview to the webhook over HTTPS (verified with its caBundle, for the name
``<service>.<namespace>.svc``) and apply the JSONPatch it answers with. A webhook that cannot be called fails the
request under failurePolicy Fail (v1's default) and is skipped under Ignore (v1beta1's default)."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import logging
import socket
import ssl
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ...errors import ManifestError
from ...kube import Obj, ObjectKey

log = logging.getLogger("nginmesh.local")

Lookup = Callable[[ObjectKey], Obj | None]
# admissionregistration v1 ValidatingWebhook.TimeoutSeconds: 1 to 30, default 10 (v1beta1: 30).
MAX_TIMEOUT = 30
REVIEW_VERSIONS = ("v1", "v1beta1")  # the AdmissionReview versions this API server sends, preferred first


class WebhookError(Exception):
    """A webhook could not be called, or answered with something that is no AdmissionReview."""


class JsonPatchError(ValueError):
    pass


def apply_json_patch(document: Obj, operations: list[Any]) -> Obj:
    """RFC 6902 on a copy of ``document``: add, remove, replace, move, copy and test."""
    result: Any = copy.deepcopy(document)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise JsonPatchError(f"not a JSON Patch operation: {op!r}")
        kind, path = op["op"], _pointer(op["path"])
        if kind in ("add", "replace", "test"):
            if "value" not in op:
                raise JsonPatchError(f"{kind} {op['path']} has no value")
            value = copy.deepcopy(op["value"])
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(result, _pointer(op["from"])))
            if kind == "move":
                result = _remove(result, _pointer(op["from"]))
        elif kind != "remove":
            raise JsonPatchError(f"unknown JSON Patch op {kind!r}")
        if kind == "remove":
            result = _remove(result, path)
        elif kind == "test":
            if _get(result, path) != value:
                raise JsonPatchError(f"test {op['path']} failed")
        elif kind == "replace":
            _get(result, path)  # the target must exist
            result = _remove(result, path)
            result = _add(result, path, value)
        else:
            result = _add(result, path, value)
    if not isinstance(result, dict):
        raise JsonPatchError("the patched document is no object")
    return result


def _pointer(text: object) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise JsonPatchError(f"not a JSON pointer: {text!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in text.split("/")[1:]] if text else []


def _parent(document: Any, path: list[str]) -> Any:
    return _get(document, path[:-1])


def _get(document: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(document, dict) and part in document:
            document = document[part]
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            raise JsonPatchError(f"path /{'/'.join(path)} does not exist")
    return document


def _add(document: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent, last = _parent(document, path), path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise JsonPatchError(f"cannot add at /{'/'.join(path)}")
    return document


def _remove(document: Any, path: list[str]) -> Any:
    if not path:
        raise JsonPatchError("cannot remove the whole document")
    _get(document, path)
    parent, last = _parent(document, path), path[-1]
    del parent[int(last) if isinstance(parent, list) else last]
    return document


def label_selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels and matchExpressions, ANDed); an empty or absent one matches all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if not {"In": present and labels.get(key) in values, "NotIn": not present or labels.get(key) not in values,
                "Exists": present, "DoesNotExist": not present}.get(operator, False):
            return False
    return True


def _listed(values: list[str] | None, value: str) -> bool:
    return "*" in (values or []) or value in (values or [])


class MutatingWebhooks:
    """Calls the webhooks the MutatingWebhookConfigurations in the store name, for one object at a time."""

    def __init__(self, lookup: Lookup, configurations: Callable[[], list[Obj]],
                 resource_of: Callable[[Obj], tuple[str, str, str] | None]) -> None:
        self.lookup = lookup
        self.configurations = configurations
        self.resource_of = resource_of  # (group, version, plural) of an object, None when not served

    def mutate(self, obj: Obj, old: Obj | None) -> Obj:
        resource = self.resource_of(obj)
        if resource is None:
            return obj
        operation = "CREATE" if old is None else "UPDATE"
        for configuration in sorted(self.configurations(), key=lambda c: c["metadata"]["name"]):
            for hook in configuration.get("webhooks") or []:
                if self._applies(hook, obj, resource, operation):
                    # admissionregistration v1beta1 defaults failurePolicy to Ignore, v1 to Fail.
                    default_policy = "Ignore" if configuration.get("apiVersion", "").endswith("v1beta1") else "Fail"
                    obj = self._call({"failurePolicy": default_policy, **hook}, obj, old, resource, operation)
        return obj

    def _applies(self, hook: Obj, obj: Obj, resource: tuple[str, str, str], operation: str) -> bool:
        group, version, plural = resource
        if not any(_listed(rule.get("operations"), operation) and _listed(rule.get("apiGroups"), group)
                   and _listed(rule.get("apiVersions"), version) and _listed(rule.get("resources"), plural)
                   for rule in hook.get("rules") or []):
            return False
        namespace = (obj.get("metadata") or {}).get("namespace")
        if namespace and hook.get("namespaceSelector"):
            found = self.lookup(ObjectKey("Namespace", "", namespace)) or {}
            if not label_selector_matches(hook["namespaceSelector"], (found.get("metadata") or {}).get("labels") or {}):
                return False
        return label_selector_matches(hook.get("objectSelector"), (obj.get("metadata") or {}).get("labels") or {})

    def _call(self, hook: Obj, obj: Obj, old: Obj | None, resource: tuple[str, str, str], operation: str) -> Obj:
        name = hook.get("name", "")
        try:
            return self._review(hook, obj, old, resource, operation)
        except WebhookError as e:
            if hook["failurePolicy"] == "Ignore":
                log.warning("admission webhook %s ignored (failurePolicy Ignore): %s", name, e)
                return obj
            raise ManifestError(f'Internal error occurred: failed calling admission webhook "{name}": {e}') from e

    def _review(self, hook: Obj, obj: Obj, old: Obj | None, resource: tuple[str, str, str], operation: str) -> Obj:
        name = hook.get("name", "")
        versions = [v for v in hook.get("admissionReviewVersions") or ["v1beta1"] if v in REVIEW_VERSIONS]
        if not versions:
            raise WebhookError(f"it speaks no AdmissionReview version this server sends ({', '.join(REVIEW_VERSIONS)})")
        review_version = f"admission.k8s.io/{versions[0]}"
        group, version, plural = resource
        request_uid = str(uuid.uuid4())
        review = {"apiVersion": review_version, "kind": "AdmissionReview", "request": {
            "uid": request_uid, "kind": {"group": group, "version": version, "kind": obj["kind"]},
            "resource": {"group": group, "version": version, "resource": plural},
            "namespace": (obj.get("metadata") or {}).get("namespace", ""),
            "name": (obj.get("metadata") or {}).get("name", ""), "operation": operation,
            "userInfo": {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": False}}
        answer = self._post(hook, review)
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict):
            raise WebhookError("the answer holds no AdmissionReview response")
        if versions[0] == "v1" and response.get("uid") != request_uid:
            raise WebhookError(f"the response's uid {response.get('uid')!r} is not the request's")
        if not response.get("allowed"):
            message = ((response.get("status") or {}).get("message")) or "no reason given"
            raise ManifestError(f'admission webhook "{name}" denied the request: {message}')
        if not response.get("patch"):
            return obj
        if response.get("patchType", "JSONPatch") != "JSONPatch":
            raise WebhookError(f"patchType {response.get('patchType')!r}: only JSONPatch is supported")
        try:
            operations = json.loads(base64.b64decode(response["patch"]))
            patched = apply_json_patch(obj, operations if isinstance(operations, list) else [operations])
        except (ValueError, TypeError) as e:
            raise WebhookError(f"its patch does not apply: {e}") from e
        log.info("admission webhook %s patched %s %s", name, obj["kind"], (obj.get("metadata") or {}).get("name"))
        return patched

    def _post(self, hook: Obj, review: Obj) -> object:
        client = hook.get("clientConfig") or {}
        timeout = min(MAX_TIMEOUT, max(1, int(hook.get("timeoutSeconds") or MAX_TIMEOUT)))
        try:
            ca = base64.b64decode(client.get("caBundle") or "").decode() or None
            context = ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()
        except (ValueError, ssl.SSLError) as e:
            raise WebhookError(f"its caBundle is no PEM certificate: {e}") from e
        address, server_name, path = self._address(client)
        body = json.dumps(review).encode()
        try:
            with socket.create_connection(address, timeout=timeout) as raw, \
                    context.wrap_socket(raw, server_hostname=server_name) as tls:
                connection = http.client.HTTPConnection(server_name, timeout=timeout)
                connection.sock = tls
                connection.request("POST", f"{path}?timeout={timeout}s", body,
                                   {"Content-Type": "application/json", "Accept": "application/json"})
                reply = connection.getresponse()
                data = reply.read()
        except (OSError, http.client.HTTPException) as e:
            raise WebhookError(f"Post https://{server_name}:{address[1]}{path}: {e}") from e
        if reply.status != 200:
            raise WebhookError(f"it answered HTTP {reply.status}: {data[:200]!r}")
        try:
            return json.loads(data)
        except ValueError as e:
            raise WebhookError(f"its answer is not JSON: {e}") from e

    def _address(self, client: Obj) -> tuple[tuple[str, int], str, str]:
        """((host, port) to connect to, the name its certificate must carry, the path)."""
        if client.get("url"):
            url = urlsplit(str(client["url"]))
            if url.scheme != "https" or not url.hostname:
                raise WebhookError(f"url {client['url']!r} is not an https URL")
            return (url.hostname, url.port or 443), url.hostname, url.path or "/"
        service = client.get("service") or {}
        namespace, name = str(service.get("namespace") or ""), str(service.get("name") or "")
        found = self.lookup(ObjectKey("Service", namespace, name)) if namespace and name else None
        cluster_ip = ((found or {}).get("spec") or {}).get("clusterIP")
        if not cluster_ip or cluster_ip == "None":
            raise WebhookError(f'service "{namespace}/{name}" not found or has no cluster IP')
        # kube-proxy rejects a connection to a service without endpoints at once; without them, say so rather
        # than wait for a connection nothing answers.
        endpoints = self.lookup(ObjectKey("Endpoints", namespace, name)) or {}
        if not any(subset.get("addresses") for subset in endpoints.get("subsets") or []):
            raise WebhookError(f'no endpoints available for service "{name}"')
        return (cluster_ip, int(service.get("port") or 443)), f"{name}.{namespace}.svc", str(service.get("path") or "/")
