"""Mesh profiles: what an implementation and version promises (images, proxy port and uid, features)."""

from __future__ import annotations

from dataclasses import dataclass

from .checks.metrics import ISTIO_0_2, ISTIO_0_3, MetricNames
from .errors import UsageError
from .features import ALL
from .mesh.injection import PROXY_PORT, PROXY_UID

# What the Nginmesh agent's README claims for 0.2.12 / 0.3.0: fault delay is not among its claims.
NGINMESH_CLAIMS = ALL - {"fault-delay"}


@dataclass(frozen=True)
class Profile:
    """One implementation at one version, as the suites judge it."""

    name: str
    nginmesh_version: str
    istio_version: str
    proxy_image: str
    init_image: str
    injection: str  # "initializer" or "webhook"
    features: frozenset[str]
    metrics: MetricNames
    proxy_port: int = PROXY_PORT
    proxy_uid: int = PROXY_UID


PROFILES = {
    profile.name: profile
    for profile in (
        Profile("nginmesh-0.2.12", "0.2.12", "0.2.12", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer", NGINMESH_CLAIMS, ISTIO_0_2),
        Profile("nginmesh-0.3.0", "0.3.0", "0.3.0", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer", NGINMESH_CLAIMS, ISTIO_0_3),
        Profile("nginmesh-0.7.1", "0.7.1", "0.7.1", "nginmesh/nginmesh_proxy_debug:0.7.1",
                "docker.io/istio/proxy_init:0.7.1", "webhook", NGINMESH_CLAIMS, ISTIO_0_3),
        Profile("local", "0.2.12", "0.2.12", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer", ALL, ISTIO_0_3),
    )
}
DEFAULT_PROFILE = "local"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None
