"""Which local program stands in for which container image, and the ports that tell it is ready."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from ...kube import Obj

BOOKINFO_IMAGE = re.compile(r"^examples-bookinfo-(productpage|details|reviews|ratings)-(v\d+)$")


@dataclass(frozen=True)
class Program:
    """A local program for one container: its argv and the TCP ports it listens on when ready."""

    argv: list[str]
    ready_ports: tuple[int, ...]


def repository(image: str) -> str:
    """``docker.io/istio/pilot:0.2.12`` → ``pilot``: the last path part, without tag or digest."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _module(name: str, *args: str) -> list[str]:
    return [sys.executable, "-m", f"pytest_nginmesh.workloads.{name}", *args]


def _declared_ports(container: Obj) -> tuple[int, ...]:
    return tuple(int(p["containerPort"]) for p in container.get("ports") or []
                 if p.get("protocol", "TCP") == "TCP")


PROXY_REPOSITORIES = frozenset({"proxy_debug", "proxy", "nginmesh_proxy_debug", "proxyv2"})


def is_proxy(container: Obj) -> bool:
    """Whether the container runs the Nginmesh agent (a sidecar or the ingress)."""
    return repository(container.get("image", "")) in PROXY_REPOSITORIES


def resolve(container: Obj) -> Program | None:
    """The program for a container spec, or None when its image is not in the catalogue."""
    image = container.get("image", "")
    repo = repository(image)
    args = [str(a) for a in container.get("args") or []]
    ports = _declared_ports(container)
    if repo in ("proxy_init", "nginmesh_proxy_init"):
        return Program(_module("proxy_init", *args), ())
    if repo in PROXY_REPOSITORIES:
        extra = (15001,) if "sidecar" in args else ()
        return Program(_module("agent", *args), ports + extra)
    if repo == "pilot":
        return Program(_module("pilot", *args), ports)
    if repo == "mixer":
        return Program(_module("mixer", *args), ports)
    if repo == "httpbin":
        return Program(_module("httpbin", "--port", str(ports[0] if ports else 8000)), ports)
    if repo == "sidecar_initializer":
        return Program(_module("initializer", *args), ports)
    match = BOOKINFO_IMAGE.match(repo)
    if match:
        service, version = match.groups()
        port = ports[0] if ports else 9080
        return Program(_module("bookinfo", service, version, "--port", str(port)), ports)
    return None


KNOWN_IMAGES = (
    "*/proxy_init, */proxy_debug, */pilot, */mixer, */sidecar_initializer, */httpbin, "
    "*/examples-bookinfo-{productpage,details,reviews,ratings}-vN"
)
