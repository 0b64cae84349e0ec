"""A defective Nginmesh agent, for the seeded-defect tests: the real agent (pytest_nginmesh.workloads.agent) with
what it renders distorted from outside, as a broken proxy image would render it. A seeded deployment runs it as
the proxy container's command, ahead of the agent's own args:

    python -I tests/defective_agent.py DEFECT sidecar --configPath … (the injected args)
"""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
from collections.abc import Callable

from pytest_nginmesh.mesh.nginx_config import Proxy, Snapshot, render
from pytest_nginmesh.workloads import agent

Render = Callable[[Snapshot, Proxy], str]


def with_rules_edited(edit: Callable[[dict[str, object]], None]) -> Render:
    """Render a snapshot whose route rules ``edit`` changed (a copy: Pilot's stays as it was)."""

    def distorted(snapshot: Snapshot, proxy: Proxy) -> str:
        changed = copy.deepcopy(snapshot)
        for rule in changed.get("routeRules", []):
            edit(rule["spec"])
        return render(changed, proxy)

    return distorted


def skew_weights(spec: dict[str, object]) -> None:
    routes = spec.get("route")
    if isinstance(routes, list) and len(routes) >= 2:
        routes[0]["weight"] = min(100, int(routes[0].get("weight", 0)) + 20)
        routes[-1]["weight"] = max(0, int(routes[-1].get("weight", 0)) - 20)


def ignore_headers(spec: dict[str, object]) -> None:
    request = (spec.get("match") or {}).get("request")  # type: ignore[attr-defined]
    if isinstance(request, dict):
        request.pop("headers", None)


def invert_precedence(spec: dict[str, object]) -> None:
    spec["precedence"] = -int(spec.get("precedence", 0))  # type: ignore[call-overload]


def drop_timeout(spec: dict[str, object]) -> None:
    spec.pop("httpReqTimeout", None)


def no_reports(snapshot: Snapshot, proxy: Proxy) -> str:
    return render(snapshot, dataclasses.replace(proxy, report_to=None))


def wrong_version(snapshot: Snapshot, proxy: Proxy) -> str:
    """Reports the requests it serves with the wrong destination version (its own inbound report)."""
    return re.sub(r'(log_format nginmesh_report .*?"destination_version":")([^"]*)"', r'\1\2-wrong"',
                  render(snapshot, proxy))


DEFECTS: dict[str, Render] = {
    "skew-weights": with_rules_edited(skew_weights),
    "ignore-headers": with_rules_edited(ignore_headers),
    "invert-precedence": with_rules_edited(invert_precedence),
    "drop-timeout": with_rules_edited(drop_timeout),
    "no-reports": no_reports,
    "wrong-version": wrong_version,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in DEFECTS:
        print(f"usage: defective_agent.py {{{','.join(DEFECTS)}}} AGENT-ARGS…", file=sys.stderr)
        return 2
    agent.render = DEFECTS[argv[0]]  # type: ignore[assignment]
    return agent.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
