"""Findings: what a check reports, with a stable id, a one-line message and the evidence."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Finding:
    """One way the subject falls short of the expectation. ``id`` is stable across releases."""

    id: str
    subject: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.id}] {self.subject}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ids(findings: Iterable[Finding]) -> set[str]:
    return {f.id for f in findings}


def explain(findings: Iterable[Finding]) -> str:
    """A readable block for an assertion message: one line per finding, then its evidence."""
    lines = []
    for finding in findings:
        lines.append(str(finding))
        if finding.evidence:
            lines.append("    evidence: " + json.dumps(finding.evidence, sort_keys=True, default=str)[:600])
    return "\n".join(lines) or "no findings"
