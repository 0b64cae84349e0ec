"""The Kubernetes REST API of the embedded cluster, over HTTPS: discovery, CRUD, selectors, watch, patch, Table.

Requests map onto the cluster's store and admission through a small ``Backend``, so the same API serves the
running daemon and in-process tests. Errors are the ``Status`` objects kube-apiserver answers with.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import io
import ipaddress
import json
import logging
import random
import socketserver
import ssl
import string
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ....errors import ClusterError, ManifestError, NotFoundError
from ....kube import Obj, ObjectKey, load_documents
from ....settings import Timeouts
from ....validation import Invalid
from ..controllers import pending_initializers
from ..serviceaccounts import token_user
from ..store import Store
from . import openapi, protobuf, status, subresources
from .patch import apply_patch
from .pki import Credentials
from .resources import BUILTIN, Registry, Resource
from .selectors import field_selector, label_selector
from .status import ApiError
from .tables import table
from .websocket import accept_key

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's default --max-request-bytes for JSON/YAML bodies
# The rest of a bigger body is read and dropped, up to this, so that the client reads its 413, not a broken pipe.
MAX_DISCARDED_BODY = 64 * 1024 * 1024
# How long a client may take to finish the TLS handshake, to send a request's head or body, or to start its next
# request on a kept connection: a client that stops sending frees its thread (kube-apiserver bounds the same with
# ReadHeaderTimeout and its request timeout, staging/src/k8s.io/apiserver/pkg/server/secure_serving.go).
READ_TIMEOUT = Timeouts().api_request
MAX_WATCH = 1800.0
OPEN_PATHS = ("/healthz", "/livez", "/readyz", "/version")
NAMESPACE_SUBRESOURCES = ("status", "finalize")
# The version this API describes itself as: the OpenAPI definitions it patches and validates with.
VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0+nginmesh.local", "gitCommit": "", "gitTreeState": "",
           "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"}


class Backend(Protocol):
    """What the REST API needs of a cluster: its store, its admission, and its way of deleting."""

    store: Store

    def admit(self, obj: Obj, old: Obj | None) -> Obj:
        """Validate (raising ManifestError) and mutate an object about to be stored."""

    def remove(self, key: ObjectKey) -> Obj | None:
        """Delete with the cluster's semantics (pods terminate, namespaces empty first); the object as it was."""

    def exec_argv(self, namespace: str, pod: str, container: str | None, command: list[str]
                  ) -> tuple[list[str], dict[str, str]]:
        """The host argv and environment that run ``command`` in a container, as the kubelet runs it."""

    def log_file(self, namespace: str, pod: str, container: str | None, previous: bool) -> Path:
        """Where a container's log (or its previous instance's) is."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]  # the last value of each parameter
    headers: dict[str, str]  # names in lower case
    body: bytes = b""
    repeated: dict[str, list[str]] = field(default_factory=dict)  # every value, for command=…&command=…


@dataclass
class Response:
    code: int
    body: Any
    stream: Iterator[bytes] | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    upgrade: Callable[[io.BufferedIOBase, io.BufferedIOBase], None] | None = None  # a WebSocket session after 101


def proxied_service(name: str) -> tuple[str, str]:
    """A services/proxy path's ``name``, ``name:port`` or ``scheme:name:port`` as (name, port name or number;
    "" for the first port), as kube-apiserver splits it (kubernetes/apimachinery pkg/util/net/port_split.go,
    SplitSchemeNamePort)."""
    parts = name.split(":")
    if len(parts) == 3:
        return parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    return name, ""


@dataclass(frozen=True)
class Target:
    """What a resource path names: the resource, a namespace, a name, a subresource."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None

    def key(self, name: str | None = None) -> ObjectKey:
        return ObjectKey(self.resource.kind, self.namespace or "" if self.resource.namespaced else "",
                         name or self.name or "")


class RestApi:
    """Answers Kubernetes REST requests against a backend."""

    def __init__(self, backend: Backend, credentials: Credentials | None, stopping: threading.Event,
                 exec_timeout: float = 3600.0, proxy_timeout: float = 30.0) -> None:
        self.backend = backend
        self.exec_timeout = exec_timeout
        self.proxy_timeout = proxy_timeout
        self.store = backend.store
        self.credentials = credentials
        self.stopping = stopping
        self._write_lock = threading.Lock()

    def registry(self) -> Registry:
        return Registry(self.store.objects("CustomResourceDefinition"))

    # -- entry ----------------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            if request.path.rstrip("/") not in OPEN_PATHS and not self.authenticated(request):
                raise status.unauthorized()
            return self._route(request)
        except ApiError as e:
            return Response(e.code, e.status())
        except Exception as e:  # a bug must answer a Status, never drop the connection
            log.exception("%s %s failed", request.method, request.path)
            return Response(500, ApiError(500, "InternalError", f"an error on the server ({e!r}) has prevented the "
                                          "request from succeeding").status())

    def authenticated(self, request: Request) -> bool:
        """The admin token, or a service account's token (its token Secret's). Who is authenticated may do
        anything, as kube-apiserver with --authorization-mode=AlwaysAllow."""
        if self.credentials is None:
            return True
        authorization = request.headers.get("authorization")
        return self.credentials.accepts(authorization) or token_user(self.store, authorization) is not None

    def _route(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        registry = self.registry()
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, "ok", content_type="text/plain")
        if path == "/version":
            return Response(200, VERSION)
        if path == "/api":
            return Response(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            return Response(200, registry.group_list())
        if parts[:2] == ["openapi", "v3"]:
            return self._openapi(registry, parts[2:], path)
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 2:
            if len(parts) == 2:
                found = registry.group(parts[1])
                if found is None:
                    raise status.path_not_found(path)
                return Response(200, found)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise status.path_not_found(path)
        if not rest:
            listing = registry.resource_list(group, version)
            if listing is None:
                raise status.path_not_found(path)
            return Response(200, listing)
        watch_path = rest[0] == "watch"
        if watch_path:
            rest = rest[1:]
        target = self._target(registry, group, version, rest, path)
        if watch_path or request.query.get("watch") in ("1", "true"):
            return self._watch(request, target)
        return self._verb(request, target)

    @staticmethod
    def _openapi(registry: Registry, parts: list[str], path: str) -> Response:
        if not parts:
            return Response(200, openapi.root_document(registry))
        if parts[0] == "api" and len(parts) == 2:
            document = openapi.group_version_document(registry, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            document = openapi.group_version_document(registry, parts[1], parts[2])
        else:
            document = None
        if document is None:
            raise status.path_not_found(path)
        return Response(200, document)

    def _target(self, registry: Registry, group: str, version: str, rest: list[str], path: str) -> Target:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in NAMESPACE_SUBRESOURCES):
            namespace, rest = rest[1], rest[2:]
        resource = registry.find(group, version, rest[0])
        if resource is None or (namespace is not None and not resource.namespaced):
            raise status.path_not_found(path)
        name = rest[1] if len(rest) >= 2 else None
        sub = "/".join(rest[2:]) or None
        if sub is not None and sub.split("/")[0] not in resource.subresources:
            raise status.path_not_found(path)
        return Target(resource, namespace, name, sub)

    # -- verbs ----------------------------------------------------------------------------------------
    def _verb(self, request: Request, target: Target) -> Response:
        method = request.method
        if target.name is None:
            if method == "GET":
                return self._list(request, target)
            if method == "POST":
                return self._create(request, target)
            if method == "DELETE":
                return self._delete_collection(request, target)
            raise status.method_not_supported(target.resource.plural, target.resource.group, method.lower())
        if target.subresource == "exec":
            return self._exec(request, target)
        if target.subresource == "log" and method == "GET":
            return self._log(request, target)
        if target.subresource is not None and target.subresource.split("/")[0] == "proxy":
            return self._proxy(request, target)
        if target.subresource in (None, "status"):
            if method == "GET":
                return Response(200, self._read(target))
            if method == "PUT":
                return self._update(target, self._body(request), target.subresource == "status",
                                    request.query.get("fieldValidation", ""))
            if method == "PATCH":
                return self._patch(request, target)
            if method == "DELETE" and target.subresource is None:
                return self._delete(target)
        raise status.method_not_supported(target.resource.plural, target.resource.group, method.lower())

    def _body(self, request: Request) -> Obj:
        if len(request.body) > MAX_BODY:
            raise status.too_large(MAX_BODY)
        media = request.headers.get("content-type", "application/json").split(";", 1)[0].strip()
        body: object
        try:
            if media == protobuf.MEDIA_TYPE:
                body = protobuf.decode(request.body)
            elif media in ("application/yaml", "application/apply-patch+yaml"):
                documents = load_documents(request.body.decode("utf-8"), "the request body", MAX_BODY)
                body = documents[0] if len(documents) == 1 else None
            elif media in ("application/json", ""):
                body = json.loads(request.body or b"null")
            else:
                raise status.unsupported_media_type(media)
        except (ValueError, ManifestError, RecursionError) as e:
            raise status.bad_request(f"error decoding request body: {str(e).splitlines()[0]}") from None
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request must be a JSON object")
        return body

    def _served(self, obj: Obj, resource: Resource) -> Obj:
        """The stored object as this group version serves it."""
        served = copy.deepcopy(obj)
        served["apiVersion"] = resource.group_version
        served["kind"] = resource.kind
        if resource.kind == "Deployment" and resource.group == "apps" and resource.version == "v1":
            spec = served.setdefault("spec", {})
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            spec.setdefault("selector", {"matchLabels": labels})
        return served

    def _objects(self, target: Target) -> list[Obj]:
        if target.resource.kind == "Event":
            return self.store.events(target.namespace)
        return self.store.objects(target.resource.kind, target.namespace)

    def _read(self, target: Target) -> Obj:
        obj = self._stored(target)
        if obj is None:
            raise status.not_found(target.resource.plural, target.resource.group, target.name or "")
        return self._served(obj, target.resource)

    def _stored(self, target: Target) -> Obj | None:
        if target.resource.kind == "Event":
            return next((e for e in self.store.events(target.namespace)
                         if e["metadata"]["name"] == target.name), None)
        return self.store.get(target.key())

    def _selected(self, request: Request, target: Target) -> list[Obj]:
        return self._filter(request, target, self._objects(target))

    @staticmethod
    def _filter(request: Request, target: Target, objects: list[Obj]) -> list[Obj]:
        if request.query.get("includeUninitialized") not in ("true", "1"):
            # Lists and watches hide objects an initializer still holds unless asked (kubernetes/kubernetes#36721,
            # Kubernetes 1.7-1.13); a get by name shows them.
            objects = [o for o in objects if not pending_initializers(o)]
        if request.query.get("labelSelector"):
            matches = label_selector(request.query["labelSelector"])
            objects = [o for o in objects if matches(o)]
        if request.query.get("fieldSelector"):
            fields = field_selector(request.query["fieldSelector"], target.resource.kind)
            objects = [o for o in objects if fields(o)]
        return objects

    def _list(self, request: Request, target: Target) -> Response:
        resource = target.resource
        objects = [self._served(o, resource) for o in self._selected(request, target)]
        version = str(self.store.revision)
        if "as=Table" in request.headers.get("accept", ""):
            return Response(200, table(resource.kind, objects, version, request.query.get("includeObject", "Metadata"),
                                       resource.printer_columns))
        return Response(200, {"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                              "metadata": {"resourceVersion": version}, "items": objects})

    def _check_namespace(self, target: Target, obj: Obj) -> None:
        meta = obj.setdefault("metadata", {})
        if not target.resource.namespaced:
            meta.pop("namespace", None)
            return
        given = meta.get("namespace")
        if given and target.namespace and given != target.namespace:
            raise status.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
        meta["namespace"] = target.namespace or given or "default"
        namespace = self.store.get(ObjectKey("Namespace", "", meta["namespace"]))
        if namespace is None:
            raise status.not_found("namespaces", "", meta["namespace"])
        if (namespace.get("metadata") or {}).get("deletionTimestamp"):
            raise status.forbidden(f'{target.resource.plural} "{meta.get("name", "")}" is forbidden: unable to '
                                   f'create new content in namespace {meta["namespace"]} because it is being '
                                   "terminated")

    def _check_kind(self, target: Target, obj: Obj) -> None:
        resource = target.resource
        if obj.get("kind") and obj["kind"] != resource.kind:
            raise status.bad_request(f"the object provided is unrecognized (must be of type {resource.kind}): "
                                     f"{obj['kind']}")
        obj["kind"] = resource.kind
        obj.setdefault("apiVersion", resource.group_version)

    def _admit(self, target: Target, obj: Obj, old: Obj | None) -> Obj:
        try:
            return self.backend.admit(obj, old)
        except Invalid as e:
            ((_, errors),) = e.refused
            raise status.invalid(target.resource.kind, target.resource.group,
                                 (obj.get("metadata") or {}).get("name", ""), [str(x) for x in errors]) from None
        except ManifestError as e:
            raise status.invalid(target.resource.kind, target.resource.group,
                                 (obj.get("metadata") or {}).get("name", ""), [str(e)]) from None

    def _create(self, request: Request, target: Target) -> Response:
        obj = self._body(request)
        self._check_kind(target, obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise status.invalid(target.resource.kind, target.resource.group, "",
                                     ["metadata.name: Required value: name or generateName is required"])
            meta["name"] = prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        self._check_namespace(target, obj)
        warnings = openapi.check_fields(obj, target.resource, request.query.get("fieldValidation", ""))
        for dropped in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"):
            meta.pop(dropped, None)
        with self._write_lock:
            key = ObjectKey(target.resource.kind, meta.get("namespace", ""), meta["name"])
            if self.store.get(key) is not None:
                raise status.already_exists(target.resource.plural, target.resource.group, meta["name"])
            if request.query.get("dryRun") == "All":
                return _warned(Response(201, self._served(self._admit(target, obj, None), target.resource)), warnings)
            stored, _ = self.store.put(self._admit(target, obj, None))
        return _warned(Response(201, self._served(stored, target.resource)), warnings)

    def _update(self, target: Target, obj: Obj, status_only: bool, field_validation: str) -> Response:
        self._check_kind(target, obj)
        warnings = openapi.check_fields(obj, target.resource, field_validation)
        meta = obj.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != target.name:
            raise status.bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL "
                                     f"({target.name})")
        meta["name"] = target.name
        self._check_namespace(target, obj)
        with self._write_lock:
            old = self._stored(target)
            if old is None:
                raise status.not_found(target.resource.plural, target.resource.group, target.name or "")
            wanted = meta.get("resourceVersion")
            if wanted and wanted != old["metadata"].get("resourceVersion"):
                raise status.conflict(target.resource.plural, target.resource.group, target.name or "")
            if status_only:
                new_status = copy.deepcopy(obj.get("status"))
                stored = self.store.update(target.key(), lambda o: o.__setitem__("status", new_status))
            else:
                if "status" in target.resource.subresources or "status" not in obj:
                    obj["status"] = copy.deepcopy(old.get("status")) if "status" in old else obj.get("status")
                    if obj["status"] is None:
                        obj.pop("status")
                stored, _ = self.store.put(self._admit(target, obj, old))
        if stored is None:
            raise status.not_found(target.resource.plural, target.resource.group, target.name or "")
        return _warned(Response(200, self._served(stored, target.resource)), warnings)

    def _patch(self, request: Request, target: Target) -> Response:
        if len(request.body) > MAX_BODY:
            raise status.too_large(MAX_BODY)
        current = self._read(target)
        patched = apply_patch(request.headers.get("content-type", ""), current, request.body, target.resource.kind,
                              target.resource not in BUILTIN)
        meta = patched.setdefault("metadata", {})
        # A patch is checked against the stored resourceVersion only when it sets one itself.
        if meta.get("resourceVersion") == current["metadata"].get("resourceVersion"):
            meta.pop("resourceVersion", None)
        return self._update(target, patched, target.subresource == "status", request.query.get("fieldValidation", ""))

    def _delete(self, target: Target) -> Response:
        with self._write_lock:
            if self._stored(target) is None:
                raise status.not_found(target.resource.plural, target.resource.group, target.name or "")
            removed = self.backend.remove(target.key())
        if removed is None:
            raise status.not_found(target.resource.plural, target.resource.group, target.name or "")
        return Response(200, self._served(removed, target.resource))

    def _delete_collection(self, request: Request, target: Target) -> Response:
        removed = []
        for obj in self._selected(request, target):
            name = obj["metadata"]["name"]
            namespace = obj["metadata"].get("namespace")
            one = Target(target.resource, namespace, name, None)
            with contextlib.suppress(ApiError):
                removed.append(self._delete(one).body)
        resource = target.resource
        return Response(200, {"kind": f"{resource.kind}List", "apiVersion": resource.group_version,
                              "metadata": {"resourceVersion": str(self.store.revision)}, "items": removed})

    # -- streams: exec, log, proxy ------------------------------------------------------------------------
    def _pod(self, target: Target) -> Obj:
        pod = self._stored(target)
        if pod is None:
            raise status.not_found("pods", "", target.name or "")
        return pod

    def _exec(self, request: Request, target: Target) -> Response:
        self._pod(target)
        if request.headers.get("upgrade", "").lower() != "websocket":
            raise status.bad_request("Upgrade request required: exec is served over WebSocket "
                                     f"({', '.join(subresources.PROTOCOLS)}); SPDY is not")
        protocol = subresources.choose_protocol(request.headers.get("sec-websocket-protocol", ""))
        command = request.repeated.get("command") or []
        if not command:
            raise status.bad_request("you must specify at least 1 command")
        container = request.query.get("container")
        try:
            argv, env = self.backend.exec_argv(target.namespace or "default", target.name or "", container, command)
        except NotFoundError as e:
            raise status.ApiError(404, "NotFound", str(e)) from None
        except ClusterError as e:
            raise status.bad_request(str(e)) from None
        streams = {name for name in ("stdin", "stdout", "stderr") if request.query.get(name) in ("1", "true")}
        key = request.headers.get("sec-websocket-key", "")
        headers = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Accept": accept_key(key), "Sec-WebSocket-Protocol": protocol}

        def session(reader: io.BufferedIOBase, writer: io.BufferedIOBase) -> None:
            subresources.run_exec(reader, writer, protocol, argv, env, command, streams, self.exec_timeout)

        return Response(101, None, headers=headers, upgrade=session)

    def _log(self, request: Request, target: Target) -> Response:
        pod = self._pod(target)
        container = request.query.get("container")
        names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if container is None and len(names) > 1:
            raise status.bad_request(f"a container name must be specified for pod {target.name}, choose one of: "
                                     f"[{' '.join(names)}]")
        try:
            path = self.backend.log_file(target.namespace or "default", target.name or "", container,
                                         request.query.get("previous") in ("1", "true"))
        except NotFoundError as e:
            raise status.bad_request(str(e)) from None
        if not path.exists():
            which = "previous terminated container" if request.query.get("previous") in ("1", "true") else "container"
            raise status.bad_request(f'{which} "{container or names[0]}" in pod "{target.name}" not found')
        tail = request.query.get("tailLines")
        limit = request.query.get("limitBytes")
        try:
            tail_lines = int(tail) if tail else None
            limit_bytes = int(limit) if limit else None
        except ValueError:
            raise status.bad_request("tailLines and limitBytes must be integers") from None
        uid = pod["metadata"].get("uid")

        def alive() -> bool:
            current = self.store.get(target.key())
            return not self.stopping.is_set() and current is not None and current["metadata"].get("uid") == uid

        chunks = subresources.log_chunks(path, tail_lines, request.query.get("follow") in ("1", "true"), alive,
                                         limit_bytes)
        return Response(200, None, stream=chunks, content_type="text/plain")

    def _proxy(self, request: Request, target: Target) -> Response:
        name, wanted = proxied_service(target.name or "")
        service = self.store.get(target.key(name)) if target.resource.kind == "Service" else None
        if service is None:
            raise status.not_found("services", "", name)
        spec = service.get("spec") or {}
        ports = spec.get("ports") or []
        port = next((p for p in ports if wanted in (str(p.get("port")), p.get("name"))), None) if wanted else \
            (ports[0] if ports else None)
        if port is None or not spec.get("clusterIP") or spec["clusterIP"] == "None":
            raise status.ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{target.name}"')
        rest = "/" + (target.subresource or "proxy").split("/", 1)[1] if "/" in (target.subresource or "") else "/"
        query = "&".join(f"{k}={v}" for k, values in request.repeated.items() for v in values)
        code, body, content_type = subresources.proxy_to_service(
            spec["clusterIP"], int(port["port"]), request.method, rest, query, request.headers, request.body,
            self.proxy_timeout)
        return Response(code, body, content_type=content_type)

    # -- watch ----------------------------------------------------------------------------------------
    def _watch(self, request: Request, target: Target) -> Response:
        if target.name is not None:
            selector = f"metadata.name={target.name}"
            given = request.query.get("fieldSelector")
            request.query["fieldSelector"] = f"{given},{selector}" if given else selector
            target = Target(target.resource, target.namespace, None, None)
        self._selected(request, target)  # a bad selector is a 400 before the stream starts
        try:
            timeout = min(float(request.query.get("timeoutSeconds", MAX_WATCH)), MAX_WATCH)
        except ValueError:
            raise status.bad_request("timeoutSeconds must be a number") from None
        since = request.query.get("resourceVersion", "")
        return Response(200, None, stream=self._events(request, target, since, timeout))

    def _events(self, request: Request, target: Target, since: str, timeout: float) -> Iterator[bytes]:
        """Every change of the watched objects after ``since`` (all current objects first when there is none)."""
        deadline = time.monotonic() + timeout
        matching: set[tuple[str, str]] = set()
        if since in ("", "0"):
            with self.store.changed:
                revision = self.store.revision
                current = self._selected(request, target)
            for obj in current:
                matching.add(_identity(obj))
                yield _event("ADDED", self._served(obj, target.resource))
        else:
            revision = _number(since)
        while not self.stopping.is_set() and time.monotonic() < deadline:
            changes = self.store.changes_since(revision)
            if changes is None:
                yield _event("ERROR", status.ApiError(410, "Expired", f"too old resource version: {since} "
                                                      f"({self.store.revision})").status())
                return
            for change in changes:
                revision = change.revision
                obj = change.object
                if obj.get("kind") != target.resource.kind or (
                        target.namespace and obj["metadata"].get("namespace") != target.namespace):
                    continue
                identity = _identity(obj)
                selected = bool(self._filter(request, target, [obj]))
                # A deletion goes to a watcher whose selector its last state matches, even one that started
                # after the object's last change (``kubectl delete --wait`` watches from its list of the
                # marked pod); an object that stops matching goes as DELETED to a watcher that saw it match.
                if (change.type == "DELETED" and selected) or (not selected and identity in matching):
                    matching.discard(identity)
                    yield _event("DELETED", self._served(obj, target.resource))
                    continue
                if change.type == "DELETED" or not selected:
                    continue
                kind = "MODIFIED" if identity in matching or change.type == "MODIFIED" else "ADDED"
                matching.add(identity)
                yield _event(kind, self._served(obj, target.resource))
            with self.store.changed:
                if self.store.revision == revision:
                    self.store.changed.wait(min(1.0, max(0.0, deadline - time.monotonic())))


def _identity(obj: Obj) -> tuple[str, str]:
    return obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


def _warned(response: Response, warnings: list[str]) -> Response:
    """Warnings go back as RFC 7234 ``Warning`` headers, which kubectl prints."""
    if warnings:
        response.headers["Warning"] = ", ".join(f'299 - "{w}"' for w in warnings)
    return response


def _number(version: str) -> int:
    try:
        return int(version)
    except ValueError:
        return 0


def _event(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HttpsServer
    timeout = READ_TIMEOUT
    # Headers and body leave in separate writes: with Nagle's algorithm the body waits for the client's
    # delayed ACK of the headers (40 ms on Linux) on every kept-alive request.
    disable_nagle_algorithm = True
    rfile: io.BufferedReader

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are not logged: watches and polls would drown the daemon's log."""

    def _handle(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        repeated = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        query = {k: v[-1] for k, v in repeated.items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            body = self._body(headers.get("content-length") or "0")
        except status.ApiError as e:
            self._send(Response(e.code, e.status()), close=True)
            return
        response = self.server.api.handle(Request(self.command, url.path, query, headers, body, repeated))
        self._send(response)

    def _body(self, content_length: str) -> bytes:
        """The request body, of at most MAX_BODY bytes, all arrived within READ_TIMEOUT."""
        try:
            length = int(content_length)
        except ValueError:
            raise status.bad_request(f"invalid Content-Length {content_length!r}") from None
        if length < 0:
            raise status.bad_request(f"invalid Content-Length {content_length!r}: it is negative")
        if length > MAX_BODY:
            self._discard(length)
            raise status.too_large(MAX_BODY)
        deadline = time.monotonic() + self.timeout
        chunks, remaining = [], length
        try:
            while remaining > 0:
                if time.monotonic() > deadline:
                    raise TimeoutError
                chunk = self.rfile.read1(min(remaining, 1024 * 1024))
                if not chunk:
                    raise status.bad_request(f"the request body ended after {length - remaining} of {length} bytes")
                chunks.append(chunk)
                remaining -= len(chunk)
        except TimeoutError:
            raise status.timed_out() from None
        return b"".join(chunks)

    def _discard(self, length: int) -> None:
        remaining = min(length, MAX_DISCARDED_BODY)
        deadline = time.monotonic() + self.timeout
        with contextlib.suppress(TimeoutError):  # a client that stops sending gets its 413 all the same
            while remaining > 0 and time.monotonic() < deadline:
                chunk = self.rfile.read1(min(remaining, 1024 * 1024))
                if not chunk:
                    return
                remaining -= len(chunk)

    def _send(self, response: Response, close: bool = False) -> None:
        if response.upgrade is not None:
            self.send_response(101)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            self.connection.settimeout(None)  # a WebSocket session idles as long as its stdin does; exec bounds it
            response.upgrade(self.rfile, self.wfile)
            return
        if response.stream is not None:
            self.send_response(response.code)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for chunk in response.stream:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True
            return
        body = response.body
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(response.code)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class HttpsServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """One listening address of the API, TLS with the cluster's serving certificate."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: RestApi, credentials: Credentials,
                 allowed: tuple[ipaddress.IPv4Network, ...] = ()) -> None:
        self.api = api
        self.allowed = allowed
        super().__init__(address, _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(credentials.server_cert, credentials.server_key)
        context.set_alpn_protocols(["http/1.1"])
        # The handshake happens in the connection's own thread (finish_request), bounded: one client that never
        # sends its hello must not hold the thread that accepts everyone else's.
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_Handler.timeout)
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address[0], e)
            return
        super().finish_request(request, client_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Only loopback and the cluster's own networks reach the API; anything else is dropped unanswered."""
        address = ipaddress.ip_address(client_address[0])
        return address.is_loopback or any(address in network for network in self.allowed)


def serve(api: RestApi, credentials: Credentials, hosts: list[str], port: int,
          start: Callable[[Callable[[], None]], Any], allowed: tuple[ipaddress.IPv4Network, ...] = ()
          ) -> list[HttpsServer]:
    """Listen on ``port`` (0: any free one, then the same for the others) of each host; return the servers."""
    servers: list[HttpsServer] = []
    for host in hosts:
        server = HttpsServer((host, port), api, credentials, allowed)
        port = server.server_address[1]
        start(server.serve_forever)
        servers.append(server)
    return servers

