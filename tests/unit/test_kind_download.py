"""Fetching kind when none is at hand: verified against its published checksum, cached, never half-written."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pytest_nginmesh.cluster.kind_download import download_kind, kind_asset
from pytest_nginmesh.errors import ClusterError, UsageError

BINARY = b"#!/bin/sh\necho kind v0.9.0\n"


class Releases:
    """kind's release downloads, served from loopback; ``files`` maps paths to bodies, ``hits`` counts GETs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        releases = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                releases.hits.append(self.path)
                body = releases.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def publish(self, release: str, body: bytes, checksum: str | None = None) -> None:
        asset = kind_asset()
        self.files[f"/{release}/{asset}"] = body
        digest = checksum or hashlib.sha256(body).hexdigest()
        self.files[f"/{release}/{asset}.sha256sum"] = f"{digest}  {asset}\n".encode()


@pytest.fixture
def releases() -> Iterator[Releases]:
    served = Releases()
    yield served
    served.server.shutdown()
    served.server.server_close()


def fetch(releases: Releases, tmp_path: Path, release: str = "v0.9.0") -> Path:
    return download_kind(release, 5.0, lambda line: None, cache_dir=tmp_path / "cache", base_url=releases.url)


def test_downloaded_verified_and_cached(releases: Releases, tmp_path: Path) -> None:
    releases.publish("v0.9.0", BINARY)
    binary = fetch(releases, tmp_path)
    assert binary == tmp_path / "cache" / "v0.9.0" / "kind"
    assert binary.read_bytes() == BINARY and binary.stat().st_mode & 0o111
    assert fetch(releases, tmp_path) == binary
    assert len(releases.hits) == 2, "the second call uses the cache"


def test_a_checksum_mismatch_leaves_nothing(releases: Releases, tmp_path: Path) -> None:
    releases.publish("v0.9.0", BINARY, checksum="0" * 64)
    with pytest.raises(ClusterError, match=r"has SHA-256 [0-9a-f]{64}, its \.sha256sum says 0{64}: not used"):
        fetch(releases, tmp_path)
    assert list((tmp_path / "cache" / "v0.9.0").iterdir()) == []


def test_a_missing_release_names_the_fix(releases: Releases, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=r"cannot download kind v9\.9\.9 from .* \(HTTPError\): put kind on PATH"):
        fetch(releases, tmp_path, "v9.9.9")
    assert list((tmp_path / "cache" / "v9.9.9").iterdir()) == []


@pytest.mark.parametrize(("system", "machine", "asset"), [("Linux", "x86_64", "kind-linux-amd64"),
                                                          ("Linux", "aarch64", "kind-linux-arm64"),
                                                          ("Darwin", "arm64", "kind-darwin-arm64")])
def test_asset_names(system: str, machine: str, asset: str) -> None:
    assert kind_asset(system, machine) == asset


def test_no_binary_for_this_machine() -> None:
    with pytest.raises(UsageError, match="kind publishes no binary for linux/riscv64"):
        kind_asset("Linux", "riscv64")
