"""An offline analyzer of route rules, in the manner of ``istioctl analyze``: errors where the API would refuse a
rule (Pilot 0.2.12's validation, pytest_nginmesh.routerules), warnings where it would accept a rule that
cannot do what it says (routes to labels no pod carries, versions a weight of 0 leaves unreachable, rules
whose order is unspecified)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ManifestError
from ..kube import Obj, labels_of, selector_matches
from ..routerules import API_VERSION, KIND, RouteRule, parse_route_rule
from .findings import Finding

ERROR, WARNING = "error", "warning"
DESTINATION_POLICY = "DestinationPolicy"


@dataclass(frozen=True)
class Analysis:
    """The findings of one run, each with its severity."""

    findings: tuple[tuple[str, Finding], ...]

    @property
    def errors(self) -> int:
        return sum(1 for severity, _ in self.findings if severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(1 for severity, _ in self.findings if severity == WARNING)

    def render(self, output: str) -> str:
        if output == "json":
            return json.dumps({"errors": self.errors, "warnings": self.warnings,
                               "findings": [{"severity": s, **f.to_dict()} for s, f in self.findings]},
                              indent=2, default=str) + "\n"
        lines = [f"{severity.capitalize()} [{f.id}] {f.subject}: {f.message}" for severity, f in self.findings]
        lines.append(f"{self.errors} error{'s' * (self.errors != 1)}, "
                     f"{self.warnings} warning{'s' * (self.warnings != 1)}")
        return "\n".join(lines) + "\n"


def subject_of(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{str(obj.get('kind', '?')).lower()}/{meta.get('namespace') or 'default'}/{meta.get('name', '?')}"


def analyze(objects: list[Obj], workloads: list[Obj] | None = None) -> Analysis:
    """Findings for the rules among ``objects``; label checks need ``workloads`` (Services with Deployments or
    Pods, as ``kubectl get svc,deploy,pods -o yaml`` lists them) and are skipped without them."""
    found: list[tuple[str, Finding]] = []
    rules: list[RouteRule] = []
    for obj in objects:
        subject = subject_of(obj)
        if obj.get("kind") == KIND:
            try:
                rules.append(parse_route_rule(obj))
            except ManifestError as e:
                found.append((ERROR, Finding("rules.invalid", subject, str(e).split(": ", 1)[-1])))
        elif obj.get("kind") == DESTINATION_POLICY and obj.get("apiVersion") != API_VERSION:
            # Istio 0.2.x serves DestinationPolicy as config.istio.io/v1alpha2 only (istio.io 0.2 docs,
            # concepts/traffic-management/rules-configuration); the v1beta1 examples are of later releases.
            found.append((ERROR, Finding("rules.api-version", subject,
                                         f"DestinationPolicy is served as {API_VERSION} only, not "
                                         f"{obj.get('apiVersion')!r}")))
    for rule in rules:
        found += [(WARNING, f) for f in _unreachable_routes(rule)]
        if workloads is not None:
            found += [(WARNING, f) for f in _unknown_labels(rule, workloads)]
    found += [(WARNING, f) for f in _same_precedence(rules)]
    return Analysis(tuple(found))


def _rule_subject(rule: RouteRule) -> str:
    return f"routerule/{rule.namespace}/{rule.name}"


def _shown(labels: Iterable[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels) or "(no labels)"


def _unreachable_routes(rule: RouteRule) -> list[Finding]:
    """A weight of 0 among several routes: Pilot accepts it, and that version never gets a request."""
    if len(rule.routes) < 2:
        return []
    return [Finding("rules.unreachable-version", _rule_subject(rule),
                    f"route to {_shown(route.labels)} has weight 0: no request reaches it",
                    {"weights": [r.weight for r in rule.routes]})
            for route in rule.routes if route.weight == 0]


def _unknown_labels(rule: RouteRule, workloads: list[Obj]) -> list[Finding]:
    """Routes to labels no pod (or pod template) of the destination service carries."""
    service = next((o for o in workloads if o.get("kind") == "Service"
                    and (o.get("metadata") or {}).get("name") == rule.destination
                    and ((o.get("metadata") or {}).get("namespace") or "default") == rule.destination_namespace),
                   None)
    subject = _rule_subject(rule)
    if service is None:
        return [Finding("rules.unknown-destination", subject, f"no Service {rule.destination} in "
                        f"{rule.destination_namespace} among the workloads given")] if rule.routes else []
    selector: dict[str, str] = (service.get("spec") or {}).get("selector") or {}
    carried = [_pod_labels(o) for o in workloads
               if ((o.get("metadata") or {}).get("namespace") or "default") == rule.destination_namespace
               and o.get("kind") in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")]
    carried = [labels for labels in carried if selector and selector_matches(selector, labels)]
    return [Finding("rules.unknown-labels", subject,
                    f"no pod of service {rule.destination} in {rule.destination_namespace} has labels "
                    f"{_shown(route.labels)}: requests routed there fail", {"pod_labels": carried})
            for route in rule.routes
            if route.labels and not any(all(labels.get(k) == v for k, v in route.labels) for labels in carried)]


def _pod_labels(obj: Obj) -> dict[str, str]:
    if obj.get("kind") == "Pod":
        return labels_of(obj)
    return labels_of((obj.get("spec") or {}).get("template") or {})


def _same_precedence(rules: list[RouteRule]) -> list[Finding]:
    """Rules of one destination with equal precedence: "the order of application for rules with the same
    precedence is unspecified" (istio/api proxy/v1/config/route_rule.proto, RouteRule.precedence)."""
    groups: dict[tuple[str, str, int], list[RouteRule]] = {}
    for rule in rules:
        groups.setdefault((rule.destination, rule.destination_namespace, rule.precedence), []).append(rule)
    findings = []
    for (service, namespace, precedence), group in groups.items():
        if len(group) > 1:
            names = sorted(_rule_subject(r) for r in group)
            findings.append(Finding("rules.same-precedence", names[0],
                                    f"{len(group)} rules for {service} in {namespace} have precedence {precedence}; "
                                    f"their order is unspecified: give each its own", {"rules": names}))
    return findings

