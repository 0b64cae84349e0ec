"""What the ``embedded_api`` fixture hands a test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_nginmesh.cluster.local.apiserver import ApiServer
from pytest_nginmesh.cluster.local.rest.pki import Credentials
from pytest_nginmesh.cluster.local.rest.server import RestApi


@dataclass
class EmbeddedApi:
    """The REST API, the daemon state behind it, and how a client reaches it."""

    server: ApiServer
    rest: RestApi
    credentials: Credentials
    url: str
    kubeconfig: Path

    def token(self) -> str:
        return self.credentials.token()
