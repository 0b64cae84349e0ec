"""Fetching the kind release that built a node image, checked against the checksum kind publishes beside
it, when neither ``--nginmesh-kind-bin`` nor kind on PATH exists. A pinned kind that does not match the
node image is what broke other plugins' CI; a kind that built the image is the one it is supported with."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests

from ..downloads import Fetch, default_cache_dir, requests_fetch, sha256_of
from ..errors import ClusterError, UsageError

KIND_DOWNLOADS = "https://github.com/kubernetes-sigs/kind/releases/download"
ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def kind_asset(system: str | None = None, machine: str | None = None) -> str:
    """The name of kind's binary for this machine, e.g. ``kind-linux-amd64``."""
    system = (system or platform.system()).lower()
    machine = machine or platform.machine()
    if machine not in ARCHITECTURES or system not in ("linux", "darwin"):
        raise UsageError(f"kind publishes no binary for {system}/{machine}: install kind and pass --nginmesh-kind-bin")
    return f"kind-{system}-{ARCHITECTURES[machine]}"


def download_kind(release: str, timeout: float, progress: Callable[[str], None], *,
                  cache_dir: Path | None = None, base_url: str = KIND_DOWNLOADS,
                  fetch: Fetch = requests_fetch) -> Path:
    """kind ``release`` from the cache, or downloaded and checked against its ``.sha256sum``; the binary
    only appears in the cache once it is whole and verified."""
    directory = (cache_dir or default_cache_dir().parent / "kind") / release
    binary = directory / "kind"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    asset = kind_asset()
    url = f"{base_url}/{release}/{asset}"
    directory.mkdir(parents=True, exist_ok=True)
    progress(f"downloading kind {release} ({url})")
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as scratch:
        part, sums = Path(scratch) / asset, Path(scratch) / f"{asset}.sha256sum"
        try:
            fetch(url, part, timeout)
            fetch(f"{url}.sha256sum", sums, timeout)
        except (requests.RequestException, OSError) as e:
            raise ClusterError(f"cannot download kind {release} from {url} ({e.__class__.__name__}): put kind on "
                               "PATH or pass --nginmesh-kind-bin") from None
        expected = sums.read_text().split()[0] if sums.read_text().split() else ""
        actual = sha256_of(part)
        if actual != expected:
            raise ClusterError(f"kind {release} from {url} has SHA-256 {actual}, its .sha256sum says "
                               f"{expected or 'nothing'}: not used; put kind on PATH or pass --nginmesh-kind-bin")
        part.chmod(0o755)
        part.rename(binary)  # atomic: a session running this concurrently sees no binary or a whole one
    return binary
