"""Paths built from names: every one the daemon writes, chmods or removes stays inside its root."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import ClusterError


def inside(root: Path, *parts: str) -> Path:
    """``root/parts…``, refused unless it is strictly below ``root`` once ``..`` and symlinks are resolved.

    Names reaching here are validated at admission already; this is the second wall, so that no name,
    however it got in, makes the daemon touch a file of the host or of another cluster.
    """
    for part in parts:
        if not part or "/" in part or "\0" in part or part in (".", ".."):
            raise ClusterError(f"refused path part {part!r} below {root}")
    path = root.joinpath(*parts)
    resolved_root = Path(os.path.realpath(root))
    resolved = Path(os.path.realpath(path))
    if resolved == resolved_root or resolved_root not in resolved.parents:
        raise ClusterError(f"refused path {path}: it leaves {root}")
    return path
