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


def create_namespace(cluster: Cluster, settings: Settings, owner: str) -> str:
    """A fresh namespace (``owner`` in its ``test`` label) that the profile's injector sees; its name."""
    name = f"nginmesh-{secrets.token_hex(4)}"
    labels = {"created-by": "pytest-nginmesh", "test": label_value(owner)}
    selected = settings.mesh_profile.injection_policy.namespace_label  # a webhook's namespaceSelector; None: all
    if selected is not None:
        labels[selected[0]] = selected[1]
    cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}])
    return name


def delete_namespace(cluster: Cluster, settings: Settings, name: str) -> None:
    """Delete the namespace and wait until its pods are gone."""
    cluster.delete([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    cluster.wait_pods_gone(name, settings.timeouts.pod_ready)


@contextlib.contextmanager
def namespace_of_its_own(cluster: Cluster, settings: Settings, owner: str) -> Iterator[str]:
    """A fresh namespace (``create_namespace``), deleted afterwards (``delete_namespace``)."""
    name = create_namespace(cluster, settings, owner)
    try:
        yield name
    finally:
        delete_namespace(cluster, settings, name)
