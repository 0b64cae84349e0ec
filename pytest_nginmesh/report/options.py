"""The report's options: where it goes (``--nginmesh-report-dir``) and who the implementation is
(``--nginmesh-implementation key=value``), checked before any cluster starts."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from .document import IMPLEMENTATION_FIELDS

REPORT_DIR_ENV = "PYTEST_NGINMESH_REPORT_DIR"
DEFAULT_REPORT_DIR = "reports"


@dataclass(frozen=True)
class ReportOptions:
    directory: Path
    implementation: dict[str, str] = field(default_factory=dict)


def parse_implementation(items: list[str], where: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """``key=value`` items, key one of IMPLEMENTATION_FIELDS, applied over ``base``."""
    values = dict(base or {})
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in IMPLEMENTATION_FIELDS:
            raise UsageError(f"{where}: bad implementation field {item!r}: give KEY=VALUE with KEY one of "
                             f"{', '.join(IMPLEMENTATION_FIELDS)}")
        values[key] = value.strip()
    return values


def report_directory(option: str | None, ini: str, invocation_dir: Path) -> Path:
    """Default ``reports/`` < environment < ini < option (the project's precedence), relative to where pytest
    was invoked."""
    chosen = option or ini or os.environ.get(REPORT_DIR_ENV) or DEFAULT_REPORT_DIR
    return (invocation_dir / Path(chosen).expanduser()).resolve()


def ensure_writable(directory: Path) -> None:
    """Create the report directory, proving it writable; a UsageError naming the fix otherwise."""
    fix = "give a writable directory with --nginmesh-report-dir"
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"report directory {directory} is a file: {fix}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(f"report directory {directory} is not writable ({e.strerror or e}): {fix}") from e
