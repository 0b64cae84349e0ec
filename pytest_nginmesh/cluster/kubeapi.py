"""Talking to a Kubernetes API server: kubeconfig loading with guards, raw JSON requests, resource discovery.

Objects travel as the plain dicts the server sends (timestamps stay strings, unknown fields stay), the
same shape the local cluster speaks, so checks never see client-library model classes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from ..errors import ClusterError, NotFoundError, UsageError
from ..kube import Obj

DEFAULT_KUBECONFIG = Path("~/.kube/config")
# Connecting is quick when the server is there at all; the rest of the budget is for answering.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class KubeconfigChoice:
    """Which kubeconfig file and context a run talks to."""

    path: Path
    context: str
    server: str


def choose_kubeconfig(kubeconfig: Path | None, context: str | None,
                      allowed_contexts: frozenset[str] = frozenset()) -> KubeconfigChoice:
    """Resolve the kubeconfig and context, refusing (one line, nothing touched) what cannot or must not be used."""
    if kubeconfig is None:
        from_env = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        kubeconfig = Path(from_env) if from_env else DEFAULT_KUBECONFIG
    path = kubeconfig.expanduser()
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"kubeconfig {path} does not exist: pass --nginmesh-kubeconfig PATH") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"kubeconfig {path} is unreadable ({e.__class__.__name__}): "
                         "check its permissions or pass another with --nginmesh-kubeconfig") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"kubeconfig {path} is not valid YAML{where}: "
                         "pass a kubeconfig written by kubectl, kind or kubeadm") from None
    if not isinstance(document, dict):
        raise UsageError(f"kubeconfig {path} is not a kubeconfig (no contexts): pass another with "
                         "--nginmesh-kubeconfig")
    contexts = {c.get("name"): c.get("context") or {} for c in document.get("contexts") or [] if isinstance(c, dict)}
    chosen = context or document.get("current-context") or ""
    if not chosen:
        raise UsageError(f"kubeconfig {path} has no current-context: pass --nginmesh-context "
                         f"(one of {', '.join(sorted(map(str, contexts))) or 'none'})")
    if chosen not in contexts:
        raise UsageError(f"context {chosen!r} is not in kubeconfig {path}: choose one of "
                         f"{', '.join(sorted(map(str, contexts))) or 'none (the file has no contexts)'}")
    if allowed_contexts and chosen not in allowed_contexts:
        raise UsageError(f"context {chosen!r} is not on --nginmesh-allowed-contexts "
                         f"({', '.join(sorted(allowed_contexts))}): add it there if this cluster may be tested")
    clusters = {c.get("name"): c.get("cluster") or {} for c in document.get("clusters") or [] if isinstance(c, dict)}
    server = str((clusters.get(contexts[chosen].get("cluster")) or {}).get("server") or "")
    if not server:
        raise UsageError(f"context {chosen!r} of kubeconfig {path} names no cluster server: fix the kubeconfig")
    return KubeconfigChoice(path, chosen, server)


@dataclass(frozen=True)
class Resource:
    """Where the API serves one kind."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class KubeApi:
    """Raw JSON requests with bounded timeouts and one-line errors, plus kind → resource discovery."""

    def __init__(self, choice: KubeconfigChoice, request_timeout: float) -> None:
        self.choice = choice
        self.request_timeout = request_timeout
        # Not Configuration(): that would start from the process-wide default some other code may have set.
        configuration = type.__call__(k8s_client.Configuration)
        configuration.retries = 0  # a dead server must fail within the timeout, not after urllib3's retries
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(choice.path), context=choice.context, client_configuration=configuration,
                persist_config=False)
        except (k8s_config.ConfigException, OSError, ValueError, TypeError) as e:
            raise UsageError(f"kubeconfig {choice.path} context {choice.context!r} cannot be used: "
                             f"{str(e).splitlines()[0]}") from None
        self.client = k8s_client.ApiClient(configuration)
        self._resources: dict[str, dict[str, Resource]] = {}

    @property
    def timeout(self) -> tuple[float, float]:
        return min(CONNECT_TIMEOUT, self.request_timeout), self.request_timeout

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None, body: object = None,
                content_type: str = "application/json", raw: bool = False,
                timeout: float | None = None) -> Any:
        """One API request; returns the decoded JSON (or text with ``raw``). Failures raise ClusterError."""
        serialized = self.client.param_serialize(
            method, path, query_params=list((query or {}).items()),
            header_params={"Accept": "*/*" if raw else "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"])
        limit = (min(CONNECT_TIMEOUT, timeout), timeout) if timeout else self.timeout
        try:
            response = self.client.call_api(*serialized, _request_timeout=limit)
            data = response.read()  # type: ignore[no-untyped-call]
        except k8s_client.ApiException as e:
            if e.status:
                raise status_error(e.status, str(e.body or ""), f"{method} {path}") from None
            raise ClusterError(f"API server {self.choice.server} unreachable ({describe_transport_error(e)}): "
                               "is the cluster running, and is this its kubeconfig?") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ClusterError(f"API server {self.choice.server} unreachable ({describe_transport_error(e)}): "
                               "is the cluster running, and is this its kubeconfig?") from None
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data or "")
        if not 200 <= response.status < 300:
            raise status_error(response.status, text, f"{method} {path}")
        if raw:
            return text
        return json.loads(text) if text else None

    def resource(self, api_version: str, kind: str) -> Resource:
        """The resource serving ``kind`` in ``api_version`` (discovered once per group version)."""
        if api_version not in self._resources:
            path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            try:
                listing = self.request("GET", path)
            except NotFoundError:
                raise ClusterError(f"the API server does not serve {api_version} (needed for {kind}): "
                                   "is the CRD installed, or the API enabled (--runtime-config)?") from None
            self._resources[api_version] = {
                r["kind"]: Resource(api_version, r["kind"], r["name"], bool(r.get("namespaced")))
                for r in listing.get("resources") or [] if "/" not in r["name"]}
        try:
            return self._resources[api_version][kind]
        except KeyError:
            raise ClusterError(f"the API server serves no {kind} in {api_version}: "
                               "is its CRD installed, or is the apiVersion right?") from None

    def forget_resources(self) -> None:
        """Drop discovery results (after CRDs were created)."""
        self._resources.clear()

    def serves(self, api_version: str, kind: str) -> bool:
        try:
            self.resource(api_version, kind)
        except ClusterError:
            return False
        return True


def status_error(code: int, text: str, what: str) -> ClusterError:
    """The API's Status as an error of ours, with its message."""
    try:
        status = json.loads(text)
    except ValueError:
        status = {}
    if not isinstance(status, dict):
        status = {}
    message = str(status.get("message") or text.strip().splitlines()[0] if text.strip() else f"HTTP {code}")
    error = NotFoundError if code == 404 else ClusterError
    return error(f"{what}: {message} (HTTP {code}{', ' + status['reason'] if status.get('reason') else ''})",
                 status)


def describe_transport_error(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    inner = reason if isinstance(reason, BaseException) else error
    text = str(inner).split(": ", 1)[-1] if str(inner) else inner.__class__.__name__
    return f"{inner.__class__.__name__}: {text}"[:160]


def as_obj(value: Any) -> Obj:
    if not isinstance(value, dict):
        raise ClusterError(f"the API server sent {type(value).__name__} where an object was expected")
    return value
