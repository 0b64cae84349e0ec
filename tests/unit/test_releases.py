"""Getting a release's manifests (pytest_nginmesh.mesh.releases): download, cache, checksums, safe extraction.

The tarballs are small real ones built here in each release's documented layout, served from a loopback
HTTP server (the default requests-based fetch) or read from a local directory (an injected fetch).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from pytest_nginmesh.errors import UsageError
from pytest_nginmesh.mesh import releases
from pytest_nginmesh.mesh.releases import (
    ReleaseError,
    ReleaseStore,
    get_release,
    injector_script_argv,
    parse_sha256sums,
)
from pytest_nginmesh.profiles import get_profile

# Each release's tarballs as documented (see releases.py), written out independently of the code under test.
ISTIO_FILES = ("install/kubernetes/istio.yaml", "install/kubernetes/istio-auth.yaml",
               "samples/bookinfo/kube/bookinfo.yaml", "bin/istioctl")
NGINMESH_FILES = {
    "0.2.12": ("install/kubernetes/istio-initializer.yaml", "samples/kubernetes/bookinfo.yaml",
               "samples/kubernetes/cleanup.sh"),
    "0.3.0": ("install/kubernetes/istio-initializer.yaml", "samples/kubernetes/bookinfo.yaml",
              "samples/kubernetes/cleanup.sh"),
    "0.7.1": ("install/kubernetes/install-sidecar.sh", "install/kubernetes/generate-sidecar-config.sh",
              "install/kubernetes/istio/istio-sidecar-injector.yaml",
              "install/kubernetes/templates/nginmesh-sidecar-injector-configmap.yaml.tmpl"),
}


def tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A .tar.gz of the given files (and symbolic links name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def release_tarballs(version: str) -> dict[str, bytes]:
    """name -> bytes of the two tarballs of a release, each file holding its own path."""
    istio, nginmesh = f"istio-{version}", f"nginmesh-{version}"
    return {
        f"istio-{version}-linux.tar.gz": tar_gz({f"{istio}/{f}": f"{istio}/{f}\n".encode() for f in ISTIO_FILES}),
        f"nginmesh-{version}.tar.gz": tar_gz(
            {f"{nginmesh}/{f}": f"{nginmesh}/{f}\n".encode() for f in NGINMESH_FILES[version]}),
    }


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Server:
    """Loopback HTTP server of ``files``; ``drop`` names files whose body is cut off halfway."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)
    base: str = ""


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.rsplit("/", 1)[-1]
            state.requests.append(name)
            data = state.files.get(name)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if name in state.drop:
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def serve_release(monkeypatch: pytest.MonkeyPatch, server: Server, version: str) -> dict[str, bytes]:
    """Put the release's tarballs on the server and point its pinned URLs there."""
    tarballs = release_tarballs(version)
    server.files.update(tarballs)
    release = releases.RELEASES[version]
    monkeypatch.setitem(releases.RELEASES, version, replace(
        release,
        istio=replace(release.istio, url=f"{server.base}/{version}/{release.istio.name}"),
        nginmesh=replace(release.nginmesh, url=f"{server.base}/{version}/{release.nginmesh.name}"),
    ))
    return tarballs


def no_network(url: str, dest: Path, timeout: float) -> None:
    raise AssertionError(f"the network was used: {url}")


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name.endswith(".part") or ".tar.gz" in p.name)


EXPECTED: dict[str, dict[str, list[str] | str | None]] = {
    "0.2.12": {
        "control_plane": ["istio-0.2.12/install/kubernetes/istio.yaml"],
        "injector": ["nginmesh-0.2.12/install/kubernetes/istio-initializer.yaml"],
        "injector_script": None,
        "bookinfo": ["nginmesh-0.2.12/samples/kubernetes/bookinfo.yaml"],
    },
    "0.3.0": {
        "control_plane": ["istio-0.3.0/install/kubernetes/istio.yaml"],
        "injector": ["nginmesh-0.3.0/install/kubernetes/istio-initializer.yaml"],
        "injector_script": None,
        "bookinfo": ["nginmesh-0.3.0/samples/kubernetes/bookinfo.yaml"],
    },
    "0.7.1": {
        "control_plane": ["istio-0.7.1/install/kubernetes/istio.yaml"],
        "injector": ["nginmesh-0.7.1/install/kubernetes/istio/istio-sidecar-injector.yaml",
                     "nginmesh-0.7.1/install/kubernetes/templates/nginmesh-sidecar-injector-configmap.yaml.tmpl"],
        "injector_script": "nginmesh-0.7.1/install/kubernetes/install-sidecar.sh",
        "bookinfo": ["istio-0.7.1/samples/bookinfo/kube/bookinfo.yaml"],
    },
}


def check_located(manifests: releases.ReleaseManifests, version: str) -> None:
    expected = EXPECTED[version]
    root = manifests.root

    def relative(paths: list[Path]) -> list[str]:
        for path in paths:
            assert path.read_text() == f"{path.relative_to(root)}\n"  # the file really came out of the tarball
        return [str(p.relative_to(root)) for p in paths]

    assert manifests.version == version
    assert relative(manifests.control_plane) == expected["control_plane"]
    assert relative(manifests.injector) == expected["injector"]
    script = manifests.injector_script
    assert (str(script.relative_to(root)) if script else None) == expected["injector_script"]
    assert relative(manifests.bookinfo) == expected["bookinfo"]


@pytest.mark.parametrize("version", ["0.2.12", "0.3.0", "0.7.1"])
def test_download_extract_and_locate_each_release(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    serve_release(monkeypatch, server, version)
    lines: list[str] = []
    manifests = ReleaseStore(cache_dir=tmp_path / "cache", progress=lines.append).manifests(version)
    check_located(manifests, version)
    assert manifests.root == tmp_path / "cache" / version
    release = releases.RELEASES[version]
    assert server.requests == [release.istio.name, release.nginmesh.name]
    assert get_release(version).injection == ("webhook" if version == "0.7.1" else "initializer")


def test_cached_release_is_not_downloaded_again(tmp_path: Path, server: Server,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    serve_release(monkeypatch, server, "0.2.12")
    first = ReleaseStore(cache_dir=tmp_path).manifests("0.2.12")
    assert len(server.requests) == 2
    second = ReleaseStore(cache_dir=tmp_path).manifests("0.2.12")
    assert len(server.requests) == 2
    assert second == first
    check_located(second, "0.2.12")


def test_checksum_mismatch_names_file_expected_and_actual_and_removes_it(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarballs = serve_release(monkeypatch, server, "0.3.0")
    name = "nginmesh-0.3.0.tar.gz"
    wrong = "ab" * 32
    store = ReleaseStore(cache_dir=tmp_path, checksums={name: wrong})
    with pytest.raises(ReleaseError) as raised:
        store.manifests("0.3.0")
    message = str(raised.value)
    assert name in message and wrong in message and sha(tarballs[name]) in message
    assert "\n" not in message
    assert not (tmp_path / name).exists()
    assert not (tmp_path / "0.3.0" / "nginmesh-0.3.0").exists()


def test_users_checksum_wins_over_the_artifacts(tmp_path: Path, server: Server,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    tarballs = serve_release(monkeypatch, server, "0.3.0")
    name = "istio-0.3.0-linux.tar.gz"
    release = releases.RELEASES["0.3.0"]
    monkeypatch.setitem(releases.RELEASES, "0.3.0", replace(release, istio=replace(release.istio, sha256="0" * 64)))
    lines: list[str] = []
    store = ReleaseStore(cache_dir=tmp_path, checksums={name: sha(tarballs[name]).upper()}, progress=lines.append)
    check_located(store.manifests("0.3.0"), "0.3.0")
    assert not (tmp_path / (name + ".sha256")).exists()  # verified, so nothing trusted on first use
    assert not any(name in line and "not verified" in line for line in lines)


def test_artifacts_own_checksum_is_enforced(tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_release(monkeypatch, server, "0.7.1")
    release = releases.RELEASES["0.7.1"]
    monkeypatch.setitem(releases.RELEASES, "0.7.1", replace(release, istio=replace(release.istio, sha256="1" * 64)))
    with pytest.raises(ReleaseError,
                       match=r"istio-0\.7\.1-linux\.tar\.gz: sha256 \w+ does not match the expected 1{64}"):
        ReleaseStore(cache_dir=tmp_path).manifests("0.7.1")
    assert not (tmp_path / "istio-0.7.1-linux.tar.gz").exists()


def test_unverified_download_is_recorded_and_a_tampered_cache_is_refused(
    tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    tarballs = serve_release(monkeypatch, server, "0.2.12")
    name = "nginmesh-0.2.12.tar.gz"
    lines: list[str] = []
    ReleaseStore(cache_dir=tmp_path, progress=lines.append).manifests("0.2.12")
    record = (tmp_path / (name + ".sha256")).read_text()
    assert record == f"{sha(tarballs[name])}  {name}\n"  # sha256sum format
    assert any(name in line and "not verified" in line and "first use" in line for line in lines)

    with (tmp_path / name).open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(ReleaseError, match=rf"{re.escape(name)}: sha256 \w+ does not match the expected "
                                           rf"{sha(tarballs[name])}"):
        ReleaseStore(cache_dir=tmp_path).manifests("0.2.12")
    assert not (tmp_path / name).exists()

    ReleaseStore(cache_dir=tmp_path).manifests("0.2.12")  # the next run downloads it afresh
    assert server.requests.count(name) == 2


def test_half_extracted_tree_without_its_stamp_is_replaced(tmp_path: Path, server: Server,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    serve_release(monkeypatch, server, "0.2.12")
    stale = tmp_path / "0.2.12" / "istio-0.2.12" / "install" / "kubernetes"
    stale.mkdir(parents=True)
    (stale / "istio.yaml").write_text("half\n")
    check_located(ReleaseStore(cache_dir=tmp_path).manifests("0.2.12"), "0.2.12")


def test_changed_tarball_is_extracted_again(tmp_path: Path) -> None:
    release_dir = tmp_path / "release"
    release_dir.mkdir()
    for name, data in release_tarballs("0.2.12").items():
        (release_dir / name).write_bytes(data)
    store = ReleaseStore(cache_dir=tmp_path / "cache", release_dir=release_dir, fetch=no_network)
    store.manifests("0.2.12")
    newer = {"istio-0.2.12/install/kubernetes/istio.yaml": b"newer\n",
             "istio-0.2.12/samples/bookinfo/kube/bookinfo.yaml": b"x\n"}
    (release_dir / "istio-0.2.12-linux.tar.gz").write_bytes(tar_gz(newer))
    assert store.manifests("0.2.12").control_plane[0].read_text() == "newer\n"


def test_release_dir_tarballs_are_used_without_network(tmp_path: Path) -> None:
    release_dir = tmp_path / "release"
    release_dir.mkdir()
    tarballs = release_tarballs("0.7.1")
    for name, data in tarballs.items():
        (release_dir / name).write_bytes(data)
    (release_dir / "SHA256SUMS").write_text("".join(f"{sha(d)}  {n}\n" for n, d in tarballs.items()))
    lines: list[str] = []
    store = ReleaseStore(cache_dir=tmp_path / "cache", release_dir=release_dir, fetch=no_network,
                         progress=lines.append)
    check_located(store.manifests("0.7.1"), "0.7.1")
    assert not any("not verified" in line for line in lines)


def test_release_dir_sha256sums_mismatch_is_an_error_and_keeps_the_users_file(tmp_path: Path) -> None:
    release_dir = tmp_path / "release"
    release_dir.mkdir()
    for name, data in release_tarballs("0.7.1").items():
        (release_dir / name).write_bytes(data)
    (release_dir / "SHA256SUMS").write_text(f"{'2' * 64} *nginmesh-0.7.1.tar.gz\n")
    store = ReleaseStore(cache_dir=tmp_path / "cache", release_dir=release_dir, fetch=no_network)
    with pytest.raises(ReleaseError, match=r"nginmesh-0.7.1.tar.gz: sha256 \w+ does not match the expected 2{64}"):
        store.manifests("0.7.1")
    assert (release_dir / "nginmesh-0.7.1.tar.gz").exists()


def test_release_dir_extracted_trees_are_used_in_place(tmp_path: Path) -> None:
    for data in release_tarballs("0.3.0").values():
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(tmp_path, filter="data")
    store = ReleaseStore(cache_dir=tmp_path / "cache", release_dir=tmp_path, fetch=no_network)
    manifests = store.manifests("0.3.0")
    assert manifests.root == tmp_path
    check_located(manifests, "0.3.0")
    assert not (tmp_path / "cache").exists()


def test_release_dir_tarballs_win_over_extracted_trees(tmp_path: Path) -> None:
    for name, data in release_tarballs("0.3.0").items():
        (tmp_path / name).write_bytes(data)
        (tmp_path / name.removesuffix(".tar.gz").removesuffix("-linux")).mkdir()
    manifests = ReleaseStore(cache_dir=tmp_path / "cache", release_dir=tmp_path, fetch=no_network).manifests("0.3.0")
    assert manifests.root == tmp_path / "cache" / "0.3.0"
    check_located(manifests, "0.3.0")


def test_missing_file_in_release_dir_names_it_and_where_to_get_it(tmp_path: Path) -> None:
    (tmp_path / "istio-0.2.12-linux.tar.gz").write_bytes(release_tarballs("0.2.12")["istio-0.2.12-linux.tar.gz"])
    store = ReleaseStore(cache_dir=tmp_path / "cache", release_dir=tmp_path, fetch=no_network)
    with pytest.raises(UsageError) as raised:
        store.manifests("0.2.12")
    message = str(raised.value)
    assert "\n" not in message
    assert (f"{tmp_path}/nginmesh-0.2.12.tar.gz is missing: download it from "
            "https://github.com/nginmesh/nginmesh/releases/download/0.2.12-RC2/nginmesh-0.2.12.tar.gz") in message
    assert "istio-0.2.12-linux.tar.gz is missing" not in message


def test_bad_sha256sums_line_is_a_usage_error(tmp_path: Path) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'a' * 64}  good.tar.gz\nnot-a-digest  bad.tar.gz\n")
    with pytest.raises(UsageError, match="SHA256SUMS line 2 is not 'SHA256  NAME'"):
        parse_sha256sums(sums)


@pytest.mark.parametrize(
    ("members", "links"),
    [
        ({"../evil": b"x"}, {}),
        ({"istio-0.2.12/../../evil": b"x"}, {}),
        ({"/tmp/evil": b"x"}, {}),
        ({}, {"istio-0.2.12/escape": "../../evil"}),
        ({}, {"istio-0.2.12/passwd": "/etc/passwd"}),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "link-up", "link-absolute"],
)
def test_unsafe_member_is_refused(tmp_path: Path, members: dict[str, bytes], links: dict[str, str]) -> None:
    release_dir = tmp_path / "release"
    release_dir.mkdir()
    tarballs = release_tarballs("0.2.12")
    safe = {"istio-0.2.12/install/kubernetes/istio.yaml": b"ok\n"}
    tarballs["istio-0.2.12-linux.tar.gz"] = tar_gz({**safe, **members}, links)
    for name, data in tarballs.items():
        (release_dir / name).write_bytes(data)
    cache = tmp_path / "cache"
    with pytest.raises(ReleaseError, match=r"holds an unsafe member .*; refusing to unpack it"):
        ReleaseStore(cache_dir=cache, release_dir=release_dir, fetch=no_network).manifests("0.2.12")
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in (cache / "0.2.12").iterdir()) == []


def test_interrupted_download_leaves_no_partial_file(tmp_path: Path, server: Server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    serve_release(monkeypatch, server, "0.2.12")
    server.drop.add("istio-0.2.12-linux.tar.gz")
    with pytest.raises(ReleaseError, match=r"cannot download http://127\.0\.0\.1:\d+/0\.2\.12/"
                                           r"istio-0\.2\.12-linux\.tar\.gz \(\w+\): check the network"):
        ReleaseStore(cache_dir=tmp_path, timeout=5).manifests("0.2.12")
    assert server.requests == ["istio-0.2.12-linux.tar.gz"]
    assert leftovers(tmp_path) == []


def test_missing_url_is_a_download_error(tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_release(monkeypatch, server, "0.3.0")
    del server.files["nginmesh-0.3.0.tar.gz"]
    with pytest.raises(ReleaseError, match=r"cannot download .*nginmesh-0\.3\.0\.tar\.gz \(HTTPError\)"):
        ReleaseStore(cache_dir=tmp_path).manifests("0.3.0")
    assert leftovers(tmp_path) == ["istio-0.3.0-linux.tar.gz", "istio-0.3.0-linux.tar.gz.sha256"]


def local_fetch(directory: Path, calls: list[str]) -> Callable[[str, Path, float], None]:
    def fetch(url: str, dest: Path, timeout: float) -> None:
        calls.append(url)
        dest.write_bytes((directory / url.rsplit("/", 1)[-1]).read_bytes())
    return fetch


def test_injected_fetch_reads_from_a_local_directory(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in release_tarballs("0.7.1").items():
        (mirror / name).write_bytes(data)
    calls: list[str] = []
    store = ReleaseStore(cache_dir=tmp_path / "cache", fetch=local_fetch(mirror, calls))
    check_located(store.manifests("0.7.1"), "0.7.1")
    assert calls == [releases.RELEASES["0.7.1"].istio.url, releases.RELEASES["0.7.1"].nginmesh.url]
    store.manifests("0.7.1")
    assert len(calls) == 2


def test_ctrl_c_during_download_leaves_no_partial_file(tmp_path: Path) -> None:
    def interrupted(url: str, dest: Path, timeout: float) -> None:
        dest.write_bytes(b"half a tarball")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ReleaseStore(cache_dir=tmp_path, fetch=interrupted).manifests("0.2.12")
    assert leftovers(tmp_path) == []


def test_moved_manifest_is_found_by_name_and_a_missing_one_lists_what_was_found(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tarballs = release_tarballs("0.2.12")
    tarballs["nginmesh-0.2.12.tar.gz"] = tar_gz({"nginmesh-0.2.12/install/istio-initializer.yaml": b"moved\n",
                                                 "nginmesh-0.2.12/samples/bookinfo.yaml.orig": b"x\n"})
    for name, data in tarballs.items():
        (mirror / name).write_bytes(data)
    lines: list[str] = []
    store = ReleaseStore(cache_dir=tmp_path / "cache", fetch=local_fetch(mirror, []), progress=lines.append)
    with pytest.raises(ReleaseError, match=r"nginmesh-0\.2\.12 has no samples/kubernetes/bookinfo\.yaml "
                                           r"\(files named bookinfo\.yaml: none\); it is not the 0\.2\.12 release"):
        store.manifests("0.2.12")
    assert any("install/kubernetes/istio-initializer.yaml is at install/istio-initializer.yaml" in line
               for line in lines)


def test_unknown_version_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"^unknown Nginmesh release '0\.8\.0': choose one of 0\.2\.12, 0\.3\.0, "
                                         r"0\.7\.1$"):
        get_release("0.8.0")
    with pytest.raises(UsageError, match="unknown Nginmesh release"):
        ReleaseStore(fetch=no_network).manifests("0.8.0")


def test_pinned_urls_are_github_release_downloads() -> None:
    for release in releases.RELEASES.values():
        for artifact in (release.istio, release.nginmesh):
            assert artifact.url.startswith("https://github.com/") and "/releases/download/" in artifact.url
            assert artifact.url.endswith("/" + artifact.name)
    assert releases.RELEASES["0.2.12"].istio.directory == "istio-0.2.12"
    assert releases.RELEASES["0.7.1"].nginmesh.directory == "nginmesh-0.7.1"


def test_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ReleaseStore().cache_dir == tmp_path / "pytest-nginmesh" / "releases"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ReleaseStore().cache_dir == tmp_path / "home" / ".cache" / "pytest-nginmesh" / "releases"


def test_bad_user_checksum_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"checksum for istio-0\.2\.12-linux\.tar\.gz is not a sha256: give 64 hex"):
        ReleaseStore(checksums={"istio-0.2.12-linux.tar.gz": "abc"})


def test_install_sidecar_script_runs_in_bash_with_the_profiles_hub(tmp_path: Path) -> None:
    # The shape of v0.7.1's install-sidecar.sh: bash-only SCRIPTDIR, and IMAGE_HUB from $1, default docker.io.
    script = tmp_path / "install-sidecar.sh"
    script.write_text('#!/bin/bash\nSCRIPTDIR=$( cd "$( dirname "${BASH_SOURCE[0]}" )" && pwd )\n'
                      'IMAGE_HUB=${1:-docker.io}\necho "$SCRIPTDIR $IMAGE_HUB"\n', encoding="utf-8")
    hub = get_profile("nginmesh-0.7.1").hub
    result = subprocess.run(injector_script_argv(script, hub), capture_output=True, text=True, timeout=10, check=True)
    assert result.stdout.split() == [str(tmp_path), "nginxinc"]
