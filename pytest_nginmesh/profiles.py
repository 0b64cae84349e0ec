"""Mesh profiles: what an implementation and version promises (images, proxy port and uid, features)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .mesh.injection import PROXY_PORT, PROXY_UID


@dataclass(frozen=True)
class Profile:
    """One implementation at one version, as the suites judge it."""

    name: str
    nginmesh_version: str
    istio_version: str
    proxy_image: str
    init_image: str
    injection: str  # "initializer" or "webhook"
    proxy_port: int = PROXY_PORT
    proxy_uid: int = PROXY_UID


PROFILES = {
    profile.name: profile
    for profile in (
        Profile("nginmesh-0.2.12", "0.2.12", "0.2.12", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer"),
        Profile("nginmesh-0.3.0", "0.3.0", "0.3.0", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer"),
        Profile("local", "0.2.12", "0.2.12", "nginmesh/proxy_debug:0.2.12", "nginmesh/proxy_init:0.2.12",
                "initializer"),
    )
}
DEFAULT_PROFILE = "local"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown profile {name!r}: choose one of {', '.join(PROFILES)}") from None
