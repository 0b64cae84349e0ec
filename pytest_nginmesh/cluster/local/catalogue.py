"""Which local program stands in for which container image, and the readiness probe it gets by default."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from ...kube import Obj

BOOKINFO_IMAGE = re.compile(r"^examples-bookinfo-(productpage|details|reviews|ratings)-(v\d+)$")


@dataclass(frozen=True)
class Program:
    """A local program for one container: its argv, and the readinessProbe it gets when the manifest has none
    (None: ready once running, as a container without a probe is)."""

    argv: list[str]
    default_probe: Obj | None


def _last_part(image: str) -> tuple[str, str]:
    """``docker.io/istio/pilot:0.2.12@sha256:…`` → (``pilot``, ``0.2.12``): the last path part without its digest,
    split at its tag (a registry's port is in an earlier part)."""
    name, _, image_tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")
    return name, image_tag


def repository(image: str) -> str:
    """``docker.io/istio/pilot:0.2.12`` → ``pilot``: the last path part, without tag or digest."""
    return _last_part(image)[0]


def tag(image: str) -> str:
    """``docker.io/istio/pilot:0.2.12`` → ``0.2.12``; ``latest`` when the reference names none."""
    return _last_part(image)[1] or "latest"


def _module(name: str, *args: str) -> list[str]:
    # -I: no PYTHONPATH, PYTHONHOME, PYTHONSTARTUP or user site from the container's env decides what code
    # runs; -u: unbuffered logs (-I also ignores PYTHONUNBUFFERED).
    return [sys.executable, "-I", "-u", "-m", f"pytest_nginmesh.workloads.{name}", *args]


# Probes of the catalogue's own programs: a kubelet's minimum period (1 s), so a pod is ready soon after its
# program answers. A manifest's readinessProbe replaces them.
def http_probe(port: int, path: str) -> Obj:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": 1}


def tcp_probe(port: int) -> Obj:
    return {"tcpSocket": {"port": port}, "periodSeconds": 1}


def _first_port_probe(ports: tuple[int, ...]) -> Obj | None:
    return tcp_probe(ports[0]) if ports else None


# The agent serves readiness where Istio's pilot-agent does (istio/istio pilot/cmd/pilot-agent/status/server.go:
# /healthz/ready on the status port, 15020): ready only while its NGINX master runs the config it applied, so
# a port held by orphaned workers never counts.
PROXY_STATUS_PORT = 15020
PROXY_READINESS = http_probe(PROXY_STATUS_PORT, "/healthz/ready")


def _declared_ports(container: Obj) -> tuple[int, ...]:
    return tuple(int(p["containerPort"]) for p in container.get("ports") or []
                 if p.get("protocol", "TCP") == "TCP")


PROXY_REPOSITORIES = frozenset({"proxy_debug", "proxy", "nginmesh_proxy_debug", "proxyv2"})


def is_proxy(container: Obj) -> bool:
    """Whether the container runs the Nginmesh agent (a sidecar or the ingress)."""
    return repository(container.get("image", "")) in PROXY_REPOSITORIES


def readiness_probe(container: Obj, program: Program) -> Obj | None:
    """The readinessProbe the kubelet runs: the manifest's, else the program's default."""
    probe = container.get("readinessProbe")
    return dict(probe) if probe else program.default_probe


def resolve(container: Obj) -> Program | None:
    """The program for a container spec, or None when its image is not in the catalogue."""
    image = container.get("image", "")
    repo = repository(image)
    args = [str(a) for a in container.get("args") or []]
    ports = _declared_ports(container)
    if repo in ("proxy_init", "nginmesh_proxy_init"):
        return Program(_module("proxy_init", *args), None)
    if repo in PROXY_REPOSITORIES:
        return Program(_module("agent", *args), PROXY_READINESS)
    if repo == "pilot":
        return Program(_module("pilot", *args), _first_port_probe(ports))
    if repo == "mixer":
        return Program(_module("mixer", *args), _first_port_probe(ports))
    if repo == "httpbin":
        port = ports[0] if ports else 8000
        return Program(_module("httpbin", "--port", str(port)), http_probe(port, "/status/200"))
    if repo == "sidecar_injector":
        # Istio 0.7's injection webhook, on the HTTPS port its Service names (443); its tag says which release.
        return Program(_module("sidecar_injector", *args, "--image-tag", tag(image)), tcp_probe(443))
    if repo == "examples-bookinfo-mongodb":
        port = ports[0] if ports else 27017
        return Program(_module("mongodb", "--port", str(port)), tcp_probe(port))
    if repo == "sidecar_initializer":
        # Each Istio release's injector writes its own command line: the tag says which (profiles.INJECTOR_ARGS).
        return Program(_module("initializer", *args, "--image-tag", tag(image)), _first_port_probe(ports))
    match = BOOKINFO_IMAGE.match(repo)
    if match:
        service, version = match.groups()
        port = ports[0] if ports else 9080
        # Bookinfo's code differs from release to release of its images: the tag says which release runs
        # (pytest_nginmesh/bookinfo.py). The services answer /health (istio samples/bookinfo/src/*: the health
        # route of each).
        return Program(_module("bookinfo", service, version, "--port", str(port), "--image-tag", tag(image)),
                       http_probe(port, "/health"))
    return None


def program_of(container: Obj) -> Program | None:
    """What the container runs: its image's program, or its ``command`` (with ``args``) when it has one, as a
    command replaces an image's entrypoint and default args on any runtime. Every image here has the node's own
    filesystem, so the command is found on it; a manifest's probe still applies, the image's default does not."""
    program = resolve(container)
    if program is None or not container.get("command"):
        return program
    return Program([str(part) for part in (*container["command"], *(container.get("args") or []))], None)


KNOWN_IMAGES = (
    "*/proxy_init, */proxy_debug, */pilot, */mixer, */sidecar_initializer, */sidecar_injector, */httpbin, "
    "*/examples-bookinfo-{productpage,details,reviews,ratings}-vN, */examples-bookinfo-mongodb"
)
