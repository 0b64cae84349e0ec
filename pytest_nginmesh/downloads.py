"""Downloads the project makes (release tarballs, kind): streamed into a file, checked by sha256, cached."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import requests

Fetch = Callable[[str, Path, float], None]
CHUNK = 1 << 16


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-nginmesh" / "releases"


def requests_fetch(url: str, dest: Path, timeout: float) -> None:
    """Stream ``url`` into ``dest``; a connect or read stalled for ``timeout`` seconds fails."""
    with requests.get(url, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        with dest.open("wb") as out:
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
