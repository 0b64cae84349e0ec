"""Rendering check results for people (text) and programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from .findings import Finding
from .iptables import ProbeResult


def subject_result(subject: str, findings: list[Finding], probes: list[ProbeResult] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"subject": subject, "conformant": not findings,
                              "findings": [f.to_dict() for f in findings]}
    if probes is not None:
        result["probes"] = [p.to_dict() for p in probes]
    return result


def render(results: list[dict[str, Any]], output: str) -> str:
    conformant = all(r["conformant"] for r in results)
    if output == "json":
        return json.dumps({"conformant": conformant, "results": results}, indent=2, default=str) + "\n"
    lines = []
    for result in results:
        count = len(result["findings"])
        lines.append(f"{result['subject']}: " + ("conformant" if not count else
                                                 f"{count} finding{'s' if count > 1 else ''}"))
        for probe in result.get("probes", []):
            lines.append(f"  probe {probe['probe']}: {probe['landing']}")
        for finding in result["findings"]:
            lines.append(f"  [{finding['id']}] {finding['message']}")
    return "\n".join(lines) + "\n"
