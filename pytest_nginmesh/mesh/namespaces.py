"""Namespaces the session makes for itself: labelled as its own and for injection, deleted with their pods."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator

from ..cluster.base import Cluster
from ..settings import Settings


def label_value(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")


@contextlib.contextmanager
def namespace_of_its_own(cluster: Cluster, settings: Settings, owner: str) -> Iterator[str]:
    """A fresh namespace (``owner`` in its ``test`` label), deleted afterwards, waiting until its pods are gone."""
    name = f"nginmesh-{secrets.token_hex(4)}"
    # Webhook releases inject only into namespaces labelled istio-injection=enabled; Initializers everywhere.
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": name, "labels": {"created-by": "pytest-nginmesh", "istio-injection": "enabled",
                                                       "test": label_value(owner)}}}
    cluster.apply([namespace])
    try:
        yield name
    finally:
        cluster.delete([namespace])
        cluster.wait_pods_gone(name, settings.timeouts.pod_ready)
