"""The conformance report: one YAML document per run (schema: ``conformance-report.schema.json`` beside this
module) and the same as readable Markdown."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..features import FEATURES
from ..kube import dumps
from ..settings import Settings

API_VERSION = "pytest-nginmesh.test/v1alpha1"
KIND = "ConformanceReport"
YAML_NAME, MARKDOWN_NAME = "conformance-report.yaml", "conformance-report.md"
IMPLEMENTATION_FIELDS = ("organization", "project", "url", "version", "contact")
OUTCOMES = ("passed", "failed", "skipped", "error")
PROVIDERS = {
    "local": "embedded local cluster (network namespaces, host NGINX as the sidecar)",
    "kind": "kind (Kubernetes in Docker)",
    "kubeadm": "kubeadm on this host",
    "existing": "an existing Kubernetes cluster",
}


def schema_text() -> str:
    return files(__package__).joinpath("conformance-report.schema.json").read_text(encoding="utf-8")


@dataclass
class TestResult:
    """One conformance test as the report states it."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    nodeid: str
    features: tuple[str, ...]
    outcome: str = "passed"
    reason: str = ""
    duration: float = 0.0
    findings: list[dict[str, str]] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    diagnostics: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # {"title", "seconds"}: apply, converge, measure …

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "nodeid": self.nodeid, "features": list(self.features), "outcome": self.outcome,
                "reason": self.reason, "durationSeconds": round(self.duration, 3), "findings": self.findings,
                "verdicts": self.verdicts, "diagnostics": self.diagnostics, "steps": self.steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestResult:
        """The result ``as_dict`` made (as it travels from an xdist worker to the controller)."""
        return cls(str(data["name"]), str(data["nodeid"]), tuple(data["features"]), str(data["outcome"]),
                   str(data["reason"]), float(data["durationSeconds"]), list(data["findings"]),
                   list(data["verdicts"]), data["diagnostics"], list(data.get("steps") or []))


def verdict_dict(verdict: Any) -> dict[str, Any]:
    """A ``checks.routing.Verdict`` or ``checks.overhead.OverheadVerdict`` (any dataclass verdict, nested ones
    too) as plain data, its field names in camelCase (data keys, such as version names, as they are)."""
    data = _plain(verdict)
    return data if isinstance(data, dict) else {"value": data}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_camel(f.name): _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def data_plane(settings: Settings) -> dict[str, str]:
    profile = settings.mesh_profile
    return {"proxyImage": settings.proxy_image or profile.proxy_image,
            "initImage": settings.init_image or profile.init_image,
            "injection": profile.injection,
            "nginmeshRelease": settings.release or profile.nginmesh_version,
            "istioVersion": profile.istio_version}


def cluster_description(settings: Settings) -> dict[str, str]:
    version = settings.k8s_version or ("embedded (Kubernetes API subset)" if settings.cluster == "local"
                                       else "the provider's default")
    return {"kind": settings.cluster, "name": settings.cluster_name, "kubernetesVersion": version,
            "provider": PROVIDERS[settings.cluster]}


def claimed_features(settings: Settings) -> frozenset[str]:
    """What the implementation claims: the features given, else the profile's (before exemptions)."""
    return settings.supported_features if settings.supported_features is not None else settings.mesh_profile.features


def feature_results(results: list[TestResult], settings: Settings) -> dict[str, dict[str, Any]]:
    """Per feature: counts of its tests' outcomes, a result, and the reasons of skips and failures."""
    summary: dict[str, dict[str, Any]] = {}
    claimed = claimed_features(settings)
    for feature in FEATURES:
        mine = [r for r in results if feature in r.features]
        counts = {outcome: sum(r.outcome == outcome for r in mine) for outcome in OUTCOMES}
        if counts["failed"] or counts["error"]:
            result = "failed"
        elif counts["passed"]:
            result = "passed"
        elif mine:
            result = "skipped"
        else:
            result = "not-tested"
        reasons = sorted({r.reason for r in mine if r.outcome != "passed" and r.reason})
        if not mine:
            reasons = ["no test of this feature was collected"]
        summary[feature] = {"result": result, "supported": feature in claimed, **counts,
                            "reasons": reasons}
    return summary


def build(settings: Settings, implementation: dict[str, str], results: list[TestResult], started: str,
          finished: str, duration: float) -> dict[str, Any]:
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in OUTCOMES}
    verdict = "failed" if counts["failed"] or counts["error"] else ("passed" if counts["passed"] else "inconclusive")
    profile = settings.mesh_profile
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "date": finished,
        "implementation": {key: implementation.get(key, "") for key in IMPLEMENTATION_FIELDS},
        "dataPlane": data_plane(settings),
        "cluster": cluster_description(settings),
        "profile": {"name": profile.name, "supportedFeatures": sorted(claimed_features(settings)),
                    "exemptFeatures": sorted(settings.exempt_features)},
        "features": feature_results(results, settings),
        "tests": [r.as_dict() for r in results],
        "summary": {"result": verdict, **counts, "total": len(results), "startedAt": started, "finishedAt": finished,
                    "durationSeconds": round(duration, 3)},
    }


def markdown(report: dict[str, Any]) -> str:
    """The report for people: summary, data plane, features, then every failure with its findings."""
    summary, impl, plane, cluster = report["summary"], report["implementation"], report["dataPlane"], report["cluster"]
    lines = [
        f"# Nginmesh conformance report: {summary['result'].upper()}",
        "",
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped, "
        f"{summary['error']} errors of {summary['total']} tests in {summary['durationSeconds']:.1f} s "
        f"({summary['startedAt']} to {summary['finishedAt']}).",
        "",
        "| implementation | |", "|---|---|",
        *(f"| {key} | {value or '-'} |" for key, value in impl.items()),
        "",
        "| data plane under test | |", "|---|---|",
        *(f"| {key} | `{value}` |" for key, value in plane.items()),
        f"| profile | `{report['profile']['name']}` |",
        *(f"| cluster {key} | {value} |" for key, value in cluster.items()),
        "",
        "## Features",
        "",
        "| feature | result | passed | failed | skipped | why |",
        "|---|---|---|---|---|---|",
    ]
    for name, feature in report["features"].items():
        why = "; ".join(feature["reasons"]).replace("|", "\\|")
        lines.append(f"| {name} | {feature['result']} | {feature['passed']} | {feature['failed'] + feature['error']} "
                     f"| {feature['skipped']} | {why} |")
    failed = [t for t in report["tests"] if t["outcome"] in ("failed", "error")]
    lines += ["", "## Failures", ""] + ([] if failed else ["None.", ""])
    for test in failed:
        lines += [f"### {test['name']} ({test['outcome']})", "", f"`{test['nodeid']}`", "",
                  f"Reason: {test['reason']}", ""]
        lines += [f"- `{f['id']}` {f['subject']}: {f['message']}" for f in test["findings"]]
        if test["diagnostics"]:
            lines += ["", f"Diagnostics: `{test['diagnostics']}`"]
        lines.append("")
    verdicts = [(t["name"], v) for t in report["tests"] for v in t["verdicts"]]
    if verdicts:
        lines += ["## Statistical verdicts", "", "| test | passed | samples | counts | expected | reason |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {v['passed']} | {v['samples']} | {v.get('counts', '—')} | {v.get('expected', '—')} | "
                  f"{str(v['reason']).replace('|', '/')} |" for name, v in verdicts]
    lines += ["", "## Tests", "", "| test | outcome | seconds | features |", "|---|---|---|---|"]
    lines += [f"| {t['name']} | {t['outcome']} | {t['durationSeconds']:.2f} | {', '.join(t['features'])} |"
              for t in report["tests"]]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    yaml_path, markdown_path = directory / YAML_NAME, directory / MARKDOWN_NAME
    yaml_path.write_text(dumps(report, "yaml"), encoding="utf-8")
    markdown_path.write_text(markdown(report), encoding="utf-8")
    return yaml_path, markdown_path
