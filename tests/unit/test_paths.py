"""No name builds a path outside its root."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_nginmesh.cluster.local.paths import inside
from pytest_nginmesh.errors import ClusterError


def test_a_plain_name_stays_inside(tmp_path: Path) -> None:
    assert inside(tmp_path, "pods", "default_web") == tmp_path / "pods" / "default_web"


@pytest.mark.parametrize("parts", [("..",), ("pods", "../../etc"), ("a/b",), ("",), (".",), ("x\0y",)])
def test_traversal_is_refused(tmp_path: Path, parts: tuple[str, ...]) -> None:
    with pytest.raises(ClusterError, match="refused path"):
        inside(tmp_path, *parts)


def test_a_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(ClusterError, match="leaves"):
        inside(root, "escape", "file")
