"""Nginmesh releases: the pinned Istio and Nginmesh tarballs, fetched or taken from a directory, checked,
extracted safely into a cache, and the manifests the installer applies located inside them.

The URLs are those the Nginmesh READMEs give for each release (github.com release downloads). No machine
this project is tested on can reach github.com, so the URLs themselves are untested here, and no checksum
of them is on record: a download is trusted on first use (its sha256 is recorded in the cache and later
runs are checked against it) unless the user gives one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests

from ..downloads import Fetch, default_cache_dir, requests_fetch, sha256_of
from ..errors import NginmeshError, UsageError

Progress = Callable[[str], None]

CHECKSUMS_FILE = "SHA256SUMS"
RECORD_SUFFIX = ".sha256"


class ReleaseError(NginmeshError):
    """A release could not be fetched, verified, extracted or does not hold what it should."""


@dataclass(frozen=True)
class Artifact:
    """One tarball of a release."""

    name: str
    url: str
    sha256: str | None  # None: no checksum on record (trust on first use)

    @property
    def directory(self) -> str:
        """The top-level directory the tarball unpacks to, e.g. ``istio-0.2.12``."""
        return self.name.removesuffix(".tar.gz").removesuffix("-linux")


@dataclass(frozen=True)
class Layout:
    """Where a release keeps what the installer applies: ``(tree, path)`` with tree ``istio`` or ``nginmesh``."""

    control_plane: tuple[tuple[str, str], ...]
    injector: tuple[tuple[str, str], ...]
    injector_script: tuple[str, str] | None
    bookinfo: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Release:
    """An Nginmesh release and the Istio release it runs on."""

    version: str
    istio: Artifact
    nginmesh: Artifact
    injection: str  # "initializer" or "webhook"
    layout: Layout


def _istio(version: str) -> Artifact:
    name = f"istio-{version}-linux.tar.gz"
    return Artifact(name, f"https://github.com/istio/istio/releases/download/{version}/{name}", None)


# 0.2.12 and 0.3.0: README of nginmesh/nginmesh at those releases (istio.yaml, then the initializer, then
# nginmesh's own copy of Bookinfo). The release tarball is istio/release/{install,samples,tools}.
INITIALIZER_LAYOUT = Layout(
    control_plane=(("istio", "install/kubernetes/istio.yaml"),),
    injector=(("nginmesh", "install/kubernetes/istio-initializer.yaml"),),
    injector_script=None,
    bookinfo=(("nginmesh", "samples/kubernetes/bookinfo.yaml"),),
)
# 0.7.1: README of nginxinc/nginmesh: istio.yaml, then install-sidecar.sh, which signs the webhook's
# certificate and fills in the two injector files below; Bookinfo comes from Istio's tarball. The script is
# bash (${BASH_SOURCE[0]}) and takes the image hub as its first argument (see injector_script_argv).
WEBHOOK_LAYOUT = Layout(
    control_plane=(("istio", "install/kubernetes/istio.yaml"),),
    injector=(
        ("nginmesh", "install/kubernetes/istio/istio-sidecar-injector.yaml"),
        ("nginmesh", "install/kubernetes/templates/nginmesh-sidecar-injector-configmap.yaml.tmpl"),
    ),
    injector_script=("nginmesh", "install/kubernetes/install-sidecar.sh"),
    bookinfo=(("istio", "samples/bookinfo/kube/bookinfo.yaml"),),
)

RELEASES = {
    release.version: release
    for release in (
        Release("0.2.12", _istio("0.2.12"),
                Artifact("nginmesh-0.2.12.tar.gz",
                         "https://github.com/nginmesh/nginmesh/releases/download/0.2.12-RC2/nginmesh-0.2.12.tar.gz",
                         None),
                "initializer", INITIALIZER_LAYOUT),
        Release("0.3.0", _istio("0.3.0"),
                Artifact("nginmesh-0.3.0.tar.gz",
                         "https://github.com/nginmesh/nginmesh/releases/download/0.3.0/nginmesh-0.3.0.tar.gz", None),
                "initializer", INITIALIZER_LAYOUT),
        Release("0.7.1", _istio("0.7.1"),
                Artifact("nginmesh-0.7.1.tar.gz",
                         "https://github.com/nginxinc/nginmesh/releases/download/v0.7.1/nginmesh-0.7.1.tar.gz", None),
                "webhook", WEBHOOK_LAYOUT),
    )
}


def get_release(version: str) -> Release:
    try:
        return RELEASES[version]
    except KeyError:
        raise UsageError(f"unknown Nginmesh release {version!r}: choose one of {', '.join(RELEASES)}") from None


def injector_script_argv(script: Path, hub: str) -> list[str]:
    """How to run a release's install-sidecar.sh for images from ``hub`` (the profile's). The script's own
    default is IMAGE_HUB=docker.io, which it hands to generate-sidecar-config.sh (nginxinc/nginmesh
    istio/release/install/kubernetes/install-sidecar.sh); the v0.7.1 generator and template use nginxinc
    (generate-sidecar-config.sh NGINMESH_IMAGE_HUB=${1:-nginxinc}), so the hub is always passed explicitly."""
    return ["bash", str(script), hub]


@dataclass(frozen=True)
class ReleaseManifests:
    """What the installer applies, in order, from one release's extracted trees."""

    version: str
    control_plane: list[Path]
    injector: list[Path]  # 0.7.1: templates that injector_script fills in
    injector_script: Path | None
    bookinfo: list[Path]
    root: Path  # the directory holding both trees, istio-<v>/ and nginmesh-<v>/


def parse_sha256sums(path: Path) -> dict[str, str]:
    """Read a file in ``sha256sum`` format (``HEX  NAME`` or ``HEX *NAME`` per line)."""
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.lstrip(" *")
        if not _is_sha256(digest) or not name:
            raise UsageError(f"{path} line {number} is not 'SHA256  NAME': fix it or regenerate it with sha256sum")
        sums[name] = digest.lower()
    return sums


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


class ReleaseStore:
    """Gets a release's tarballs (from ``release_dir`` or by download), verifies, extracts and locates them."""

    def __init__(self, cache_dir: Path | None = None, release_dir: Path | None = None,
                 checksums: dict[str, str] | None = None, fetch: Fetch | None = None,
                 timeout: float = 60.0, progress: Progress = lambda line: None) -> None:
        self.cache_dir = cache_dir or default_cache_dir()
        self.release_dir = release_dir
        self.checksums = {name: digest.lower() for name, digest in (checksums or {}).items()}
        for name, digest in self.checksums.items():
            if not _is_sha256(digest):
                raise UsageError(f"checksum for {name} is not a sha256: give 64 hex digits")
        self.fetch = fetch or requests_fetch
        self.timeout = timeout
        self.progress = progress

    def manifests(self, version: str) -> ReleaseManifests:
        release = get_release(version)
        if self.release_dir is not None and self._has_trees(release):
            root = self.release_dir
            self.progress(f"using the extracted trees in {root} as they are (not verified)")
        else:
            root = self._extracted(release)
        return self._locate(release, root)

    def _has_trees(self, release: Release) -> bool:
        """Whether the release dir holds both trees extracted (and not both tarballs, which are preferred)."""
        assert self.release_dir is not None
        artifacts = (release.istio, release.nginmesh)
        if all((self.release_dir / a.name).is_file() for a in artifacts):
            return False
        return all((self.release_dir / a.directory).is_dir() for a in artifacts)

    def _extracted(self, release: Release) -> Path:
        artifacts = (release.istio, release.nginmesh)
        if self.release_dir is not None:
            missing = [a for a in artifacts if not (self.release_dir / a.name).is_file()]
            if missing:
                raise UsageError("; ".join(f"{self.release_dir / a.name} is missing: download it from {a.url}"
                                           for a in missing)
                                 + f" (or put the extracted {artifacts[0].directory}/ and "
                                   f"{artifacts[1].directory}/ there)")
        root = self.cache_dir / release.version
        root.mkdir(parents=True, exist_ok=True)
        with _locked(self.cache_dir / f".{release.version}.lock"):
            for artifact in artifacts:
                tarball, digest = self._tarball(artifact)
                self._extract(tarball, digest, artifact, root)
        return root

    def _expected(self, artifact: Artifact) -> str | None:
        """The known sha256: the user's mapping, else the release dir's SHA256SUMS, else the artifact's own."""
        if artifact.name in self.checksums:
            return self.checksums[artifact.name]
        if self.release_dir is not None and (self.release_dir / CHECKSUMS_FILE).is_file():
            listed = parse_sha256sums(self.release_dir / CHECKSUMS_FILE)
            if artifact.name in listed:
                return listed[artifact.name]
        return artifact.sha256

    def _tarball(self, artifact: Artifact) -> tuple[Path, str]:
        """The verified tarball and its sha256: from the release dir, or the cache (downloaded when absent)."""
        expected = self._expected(artifact)
        if self.release_dir is not None:
            path = self.release_dir / artifact.name
            if expected is None:
                self.progress(f"{path}: no checksum on record, not verified")
                return path, sha256_of(path)
            return path, self._verify(path, expected, remove=False)
        path = self.cache_dir / artifact.name
        record = self.cache_dir / (artifact.name + RECORD_SUFFIX)
        if not path.is_file():
            self._download(artifact, path)
            record.unlink(missing_ok=True)
        if expected is not None:
            return path, self._verify(path, expected, remove=True)
        if record.is_file():
            return path, self._verify(path, _read_record(record), remove=True)
        actual = sha256_of(path)
        _write_atomically(record, f"{actual}  {artifact.name}\n")
        self.progress(f"{artifact.name}: no checksum on record, not verified; trusting it on first use "
                      f"(sha256 {actual} recorded in {record})")
        return path, actual

    def _download(self, artifact: Artifact, path: Path) -> None:
        """Fetch into a temporary file next to ``path`` and rename it; nothing partial stays behind."""
        self.progress(f"downloading {artifact.url}")
        fd, name = tempfile.mkstemp(prefix=f".{artifact.name}.", suffix=".part", dir=self.cache_dir)
        os.close(fd)
        part = Path(name)
        try:
            self.fetch(artifact.url, part, self.timeout)
            os.replace(part, path)
        except (requests.RequestException, OSError) as e:
            raise ReleaseError(f"cannot download {artifact.url} ({e.__class__.__name__}): check the network, "
                               f"or fetch it yourself and pass --nginmesh-release-dir DIR") from e
        finally:
            part.unlink(missing_ok=True)

    def _verify(self, path: Path, expected: str, remove: bool) -> str:
        """Return the sha256 of ``path`` if it is the expected one; otherwise (remove it and) fail."""
        actual = sha256_of(path)
        if actual == expected:
            return actual
        if remove:
            path.unlink(missing_ok=True)
            (path.parent / (path.name + RECORD_SUFFIX)).unlink(missing_ok=True)
        fix = "it was removed: run again to download it afresh" if remove else "replace it with a good copy"
        raise ReleaseError(f"{path}: sha256 {actual} does not match the expected {expected}; {fix}")

    def _extract(self, tarball: Path, digest: str, artifact: Artifact, root: Path) -> None:
        """Unpack into ``root/<directory>`` through a temporary directory; reuse it if from the same tarball."""
        dest = root / artifact.directory
        stamp = root / f".{artifact.directory}.sha256"
        if dest.is_dir() and stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == digest:
            return
        self.progress(f"extracting {tarball.name}")
        staging = Path(tempfile.mkdtemp(prefix=f".{artifact.directory}.", dir=root))
        try:
            with tarfile.open(tarball) as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(tarball, member)
                tar.extractall(staging, members=members, filter="data")
            tree = staging / artifact.directory
            if not tree.is_dir():
                found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
                raise ReleaseError(f"{tarball} does not unpack to {artifact.directory}/ (found: {found}); "
                                   f"it is not {artifact.name} as released")
            stamp.unlink(missing_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tree, dest)
            _write_atomically(stamp, digest + "\n")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise ReleaseError(f"{tarball} cannot be unpacked ({e}); remove it and fetch it again") from e
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _locate(self, release: Release, root: Path) -> ReleaseManifests:
        trees = {"istio": root / release.istio.directory, "nginmesh": root / release.nginmesh.directory}

        def find(where: tuple[str, str]) -> Path:
            tree, relative = where
            path = trees[tree] / relative
            if path.is_file():
                return path
            name = PurePosixPath(relative).name
            found = sorted(p for p in trees[tree].rglob(name) if p.is_file())
            if len(found) == 1:
                self.progress(f"{relative} is at {found[0].relative_to(trees[tree])} in {trees[tree].name}")
                return found[0]
            listed = ", ".join(str(p.relative_to(trees[tree])) for p in found) or "none"
            raise ReleaseError(f"{trees[tree]} has no {relative} (files named {name}: {listed}); "
                               f"it is not the {release.version} release as documented")

        layout = release.layout
        return ReleaseManifests(
            version=release.version,
            control_plane=[find(w) for w in layout.control_plane],
            injector=[find(w) for w in layout.injector],
            injector_script=find(layout.injector_script) if layout.injector_script else None,
            bookinfo=[find(w) for w in layout.bookinfo],
            root=root,
        )


def _check_member(tarball: Path, member: tarfile.TarInfo) -> None:
    """Refuse absolute paths, ``..`` and links leading out of the tree (``filter="data"`` refuses them too)."""
    path = PurePosixPath(member.name)
    bad = path.is_absolute() or ".." in path.parts
    if member.issym():
        target = PurePosixPath(member.linkname)
        bad = bad or target.is_absolute() or _escapes(path.parent / target)
    elif member.islnk():
        bad = bad or _escapes(PurePosixPath(member.linkname))
    elif not (member.isfile() or member.isdir()):
        bad = True
    if bad:
        raise ReleaseError(f"{tarball} holds an unsafe member {member.name!r}"
                           f"{' -> ' + member.linkname if member.linkname else ''}; refusing to unpack it")


def _escapes(path: PurePosixPath) -> bool:
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return path.is_absolute()


def _read_record(record: Path) -> str:
    digest = record.read_text(encoding="utf-8").split(" ", 1)[0].strip()
    if not _is_sha256(digest):
        raise ReleaseError(f"{record} is not a sha256 record: remove it and its tarball to download afresh")
    return digest.lower()


def _write_atomically(path: Path, text: str) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path``, so parallel sessions do not download or extract twice at once."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
