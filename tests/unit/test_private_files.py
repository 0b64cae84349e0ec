"""State files are root-only from their first byte, and replaced atomically."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_nginmesh.cluster.local.system import make_private_dir, write_private


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        write_private(tmp_path / "objects.json", '{"objects": []}')
    finally:
        os.umask(previous)
    assert mode(tmp_path / "objects.json") == 0o600
    assert (tmp_path / "objects.json").read_text() == '{"objects": []}'


def test_an_open_world_readable_file_is_replaced_not_rewritten(tmp_path: Path) -> None:
    target = tmp_path / "cluster.json"
    target.write_text("old")
    target.chmod(0o644)
    with target.open() as reader:  # someone who opened the old file never sees the new content
        write_private(target, "secret")
        assert reader.read() == "old"
    assert mode(target) == 0o600 and target.read_text() == "secret"
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.json"], "no temporary file is left"


def test_a_stale_temporary_file_with_a_loose_mode_is_not_reused_as_it_was(tmp_path: Path) -> None:
    stale = tmp_path / f".daemon.pid.{os.getpid()}.tmp"
    stale.write_text("x")
    stale.chmod(0o666)
    write_private(tmp_path / "daemon.pid", "42")
    assert mode(tmp_path / "daemon.pid") == 0o600


def test_a_private_dir_is_made_so_even_when_it_exists(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    make_private_dir(directory)
    assert mode(directory) == 0o700
    make_private_dir(tmp_path / "a" / "b", 0o711)
    assert mode(tmp_path / "a" / "b") == 0o711
