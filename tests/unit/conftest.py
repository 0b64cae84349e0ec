"""Fixtures shared by the unit tests: throwaway network namespaces named ``nmunit_<random>``, and the FAKE
Kubernetes API server holding the seed's recorded cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from kubefake import RecordedApiServer, bookinfo_objects

NETNS_PREFIX = "nmunit_"


@pytest.fixture
def make_netns() -> Iterator[Callable[[], str]]:
    """A factory of fresh network namespaces; every namespace it made is deleted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 ('ip') is not installed")
    created: list[str] = []

    def make() -> str:
        name = NETNS_PREFIX + uuid.uuid4().hex[:12]
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True, timeout=10)


@pytest.fixture
def server() -> Iterator[RecordedApiServer]:
    """The FAKE API server (tests/kubefake) serving the seed's recorded Bookinfo cluster."""
    with RecordedApiServer() as fake:
        fake.load(bookinfo_objects())
        yield fake
