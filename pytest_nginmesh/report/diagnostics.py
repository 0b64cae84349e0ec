"""Diagnostics bundle: what a failed conformance test leaves behind for a person, written before any cleanup.

Pods as YAML, events, container logs (current and previous), each proxy's NGINX config, ``iptables-save`` of
every injected pod, the route rules in force and those the test applied, and a metrics scrape; bounded in
size and count, with Secret data and token-looking values redacted. Every piece that cannot be fetched is
named in ``index.yaml`` instead of raising: a bundle never hides the test's own failure.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ..cluster.base import Cluster
from ..kube import Obj, as_list, dumps
from ..mesh.injection import PROXY_CONTAINER
from ..mesh.manifests import BOOKINFO_NAMESPACE, CONTROL_PLANE_NAMESPACE
from ..profiles import Profile

MAX_BUNDLES = 10  # per session, as Istio's framework dumps at most 10 times
MAX_PODS = 30
MAX_FILE_BYTES = 256 * 1024  # the tail of a longer log is kept
REDACTED = "<redacted>"
SECRET_NAME = re.compile(r"(token|secret|passw|credential|api[-_]?key|private[-_]?key)", re.IGNORECASE)
SECRET_TEXT = [
    (re.compile(r"(?i)(authorization:\s*bearer\s+)\S+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"(?i)((?:token|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"), r"\1" + REDACTED),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL), REDACTED),
]
# Reads the config of the NGINX running in this pod, whatever the adapter: the nginx process sharing the
# exec's network namespace, its ``-c`` file (NGINX's default otherwise) and the conf.d beside it.
PROXY_CONFIG = r"""self=$(readlink /proc/self/ns/net)
for p in /proc/[0-9]*; do
  [ "$(cat "$p/comm" 2>/dev/null)" = nginx ] && [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$self" ] || continue
  conf=$(tr '\0' '\n' < "$p/cmdline" | sed -n '/^-c$/{n;p;q;}')
  conf=${conf:-/etc/nginx/nginx.conf}
  for f in "$conf" "$(dirname "$conf")"/conf.d/*.conf; do [ -f "$f" ] && { echo "# $f"; cat "$f"; }; done
  exit 0
done
echo "no nginx process in this pod's network namespace" >&2
exit 3
"""


def redact_text(text: str) -> str:
    for pattern, replacement in SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def redact_object(obj: Obj) -> Obj:
    """A copy with Secret data, and env values whose names look secret, replaced."""
    clean = copy.deepcopy(obj)
    if clean.get("kind") == "Secret":
        for key in ("data", "stringData"):
            if isinstance(clean.get(key), dict):
                clean[key] = dict.fromkeys(clean[key], REDACTED)
    spec = clean.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for item in container.get("env") or []:
            if "value" in item and SECRET_NAME.search(str(item.get("name", ""))):
                item["value"] = REDACTED
    return clean


def bounded(text: str) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_FILE_BYTES:
        return text
    kept = data[-MAX_FILE_BYTES:].decode("utf-8", "replace")
    return f"[{len(data) - MAX_FILE_BYTES} earlier bytes left out]\n{kept}"


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120] or "test"


@dataclass
class Bundle:
    """One test's diagnostics directory and what went into it (``files``) or could not (``errors``)."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def write(self, relative: str, text: str) -> Path:
        path = self.directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(bounded(redact_text(text)), encoding="utf-8")
        self.files.append(path)
        return path

    def gather(self, what: str, fetch: Callable[[], str], relative: str) -> None:
        try:
            self.write(relative, fetch())
        except Exception as e:  # a piece that cannot be fetched is recorded, never raised
            self.errors.append(f"{what}: {e.__class__.__name__}: {' '.join(str(e).split())[:300]}")


def write_bundle(cluster: Cluster, root: Path, test: str, namespaces: Iterable[str], profile: Profile,
                 applied: list[Obj], findings: list[str], scrape: Callable[[], str] | None) -> Bundle:
    """Gather the evidence of one failed test into ``root/<test>``; never raises for a piece that fails."""
    directory = root / safe_name(test)
    suffix = 1
    while directory.exists():
        suffix += 1
        directory = root / f"{safe_name(test)}-{suffix}"
    bundle = Bundle(directory)
    directory.mkdir(parents=True)
    wanted = list(dict.fromkeys([BOOKINFO_NAMESPACE, CONTROL_PLANE_NAMESPACE, *namespaces]))
    pods: list[Obj] = []
    for namespace in wanted:
        try:
            pods += cluster.list_pods(namespace)
        except Exception as e:  # told in index.yaml, never raised
            bundle.errors.append(f"pods of {namespace}: {e.__class__.__name__}: {e}")
    pods = pods[:MAX_PODS]
    bundle.write("pods.yaml", dumps(as_list([redact_object(p) for p in pods]), "yaml"))
    for namespace in wanted:
        bundle.gather(f"events of {namespace}", partial(events_yaml, cluster, namespace), f"events/{namespace}.yaml")
    for pod in pods:
        namespace, name = pod["metadata"].get("namespace", "default"), pod["metadata"]["name"]
        running = (pod.get("status") or {}).get("phase") == "Running"
        for container in (pod["spec"].get("initContainers") or []) + (pod["spec"].get("containers") or []):
            base = f"logs/{namespace}/{name}/{container['name']}"
            bundle.gather(f"log of {namespace}/{name}/{container['name']}",
                          partial(cluster.logs, namespace, name, container["name"]), f"{base}.log")
            if restarted(pod, container["name"]):
                bundle.gather(f"previous log of {namespace}/{name}/{container['name']}",
                              partial(cluster.logs, namespace, name, container["name"], previous=True),
                              f"{base}.previous.log")
        if running and any(c["name"] == PROXY_CONTAINER for c in pod["spec"].get("containers") or []):
            bundle.gather(f"iptables of {namespace}/{name}", partial(cluster.pod_iptables, namespace, name),
                          f"iptables/{namespace}/{name}.txt")
            bundle.gather(f"NGINX config of {namespace}/{name}", partial(proxy_config, cluster, namespace, name),
                          f"proxy-config/{namespace}/{name}.conf")
    bundle.gather("route rules in force", lambda: dumps(as_list([redact_object(o) for o in
                                                                 cluster.list_objects("RouteRule")]), "yaml"),
                  "route-rules.yaml")
    bundle.write("applied.yaml", dumps(as_list([redact_object(o) for o in applied]), "yaml"))
    if scrape is not None:
        bundle.gather("metrics scrape", scrape, "metrics.txt")
    index = {"test": test, "profile": profile.name, "findings": findings, "namespaces": wanted,
             "files": [str(p.relative_to(directory)) for p in bundle.files],
             "not collected": bundle.errors,
             "bounds": {"pods": MAX_PODS, "bytes per file": MAX_FILE_BYTES, "bundles per session": MAX_BUNDLES}}
    bundle.write("index.yaml", dumps(index, "yaml"))
    return bundle


def events_yaml(cluster: Cluster, namespace: str) -> str:
    return dumps(as_list(cluster.events(namespace)), "yaml")


def proxy_config(cluster: Cluster, namespace: str, pod: str) -> str:
    return cluster.exec(namespace, pod, ["sh", "-c", PROXY_CONFIG], container=PROXY_CONTAINER).check().stdout


def restarted(pod: Obj, container: str) -> bool:
    status = pod.get("status") or {}
    return any(c.get("name") == container and (c.get("restartCount") or 0) > 0
               for c in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []))
