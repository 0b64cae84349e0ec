"""The run's conformance bookkeeping: per test, what it found and judged (through ``observe``), its outcome,
diagnostics when it fails (before any cleanup), JUnit properties, allure steps and attachments; and the
conformance report, written at the end from the test reports (so that under pytest-xdist the controller
writes one report of every worker's tests). Registered by the plugin when conformance tests are collected
(the writer on the xdist controller, which collects nothing, always)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from .. import observe
from ..features import ConformanceTest
from ..settings import Settings
from . import document
from .diagnostics import MAX_BUNDLES, write_bundle
from .options import ReportOptions

evidence_key = pytest.StashKey["TestEvidence"]()


@dataclass
class TestEvidence:
    """The observer (``observe.Observer``) of one conformance test: what its checks found and judged,
    forwarded to allure as steps and attachments when allure is on."""

    __test__ = False  # not a pytest test class, whatever its name

    allure: bool
    found: list[Any] = field(default_factory=list)
    judged: list[Any] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)  # {"title", "seconds"} of each finished step

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        started = time.monotonic()
        with self._allure_step(title):
            yield
        self.steps.append({"title": title, "seconds": round(time.monotonic() - started, 3)})

    def _allure_step(self, title: str) -> AbstractContextManager[None]:
        if self.allure:
            from . import allure_glue

            return allure_glue.step(title)
        return nullcontext()

    def findings(self, findings: Sequence[Any]) -> None:
        self.found.extend(findings)

    def verdict(self, verdict: Any) -> None:
        self.judged.append(verdict)
        self.attach("verdict", f"{verdict}\n\n{document.verdict_dict(verdict)}")

    def attach(self, name: str, text: str) -> None:
        if self.allure:
            from . import allure_glue

            allure_glue.attach_text(name, text)

    def unique_findings(self) -> list[dict[str, str]]:
        unique = {(f.id, f.subject): {"id": f.id, "subject": f.subject, "message": f.message} for f in self.found}
        return list(unique.values())


def one_line(report: pytest.TestReport) -> str:
    """A failure's or skip's reason in one line."""
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else "")[:300]


class ConformanceSession:
    """Plugin object: records each conformance test; its result travels on the test's teardown report
    (``nginmesh_result``, kept by pytest-xdist's report serialization) to the ReportWriter."""

    def __init__(self, config: pytest.Config, options: ReportOptions, tests: dict[str, ConformanceTest],
                 settings: Callable[[], Settings], allure: bool) -> None:
        self.config = config
        self.options = options
        self.tests = tests
        self.settings = settings
        self.allure = allure
        self.results: dict[str, document.TestResult] = {}
        self.bundles = 0

    # -- per test ---------------------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        test = self.tests.get(item.nodeid)
        if test is None:
            return (yield)
        evidence = item.stash[evidence_key] = TestEvidence(self.allure)
        self.results[item.nodeid] = document.TestResult(test.name, item.nodeid, test.features)
        item.user_properties += [("conformance.name", test.name), ("conformance.features", ",".join(test.features))]
        with observe.observed_by(evidence):
            return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        result = self.results.get(item.nodeid)
        if result is None:
            return report
        result.duration += report.duration
        if report.skipped and result.outcome == "passed":
            result.outcome, result.reason = "skipped", one_line(report)
        elif report.failed and result.outcome in ("passed", "skipped"):
            result.outcome = "failed" if report.when == "call" else "error"
            result.reason = one_line(report)
            result.findings = item.stash[evidence_key].unique_findings()
            if report.when != "teardown":
                self._diagnose(item, report, result)
        if report.when == "teardown":
            result.verdicts = [document.verdict_dict(v) for v in item.stash[evidence_key].judged]
            result.steps = list(item.stash[evidence_key].steps)
            item.user_properties += [("conformance.outcome", result.outcome)]
            if result.findings:
                item.user_properties.append(("conformance.findings", ",".join(f["id"] for f in result.findings)))
            if result.diagnostics:
                item.user_properties.append(("conformance.diagnostics", result.diagnostics))
            report.user_properties = list(item.user_properties)
            report.nginmesh_result = result.as_dict()  # type: ignore[attr-defined]
        return report

    def _diagnose(self, item: pytest.Item, report: pytest.TestReport, result: document.TestResult) -> None:
        """The diagnostics bundle, before fixtures clean up; a failure here is told, never raised."""
        funcargs = getattr(item, "funcargs", {})
        cluster = funcargs.get("mesh_cluster")
        if cluster is None:
            report.sections.append(("nginmesh diagnostics", "none: no cluster was up for this test"))
            return
        if self.bundles >= MAX_BUNDLES:
            report.sections.append(("nginmesh diagnostics", f"none: the session's limit of {MAX_BUNDLES} is reached"))
            return
        self.bundles += 1
        try:
            settings = self.settings()
            applied = getattr(funcargs.get("mesh_rules"), "applied", [])
            namespaces = [funcargs[name] for name in ("isolated_namespace", "module_namespace") if name in funcargs]
            if "bookinfo" in funcargs:
                namespaces.append(funcargs["bookinfo"].namespace)
            bundle = write_bundle(cluster, self.options.directory / "diagnostics", result.name, namespaces,
                                  settings.mesh_profile, list(applied), [f["id"] for f in result.findings],
                                  lambda: _scrape(cluster, settings))
        except Exception as e:  # the test's own failure must stay the one reported
            report.sections.append(("nginmesh diagnostics", f"could not be written: {e.__class__.__name__}: {e}"))
            return
        result.diagnostics = str(bundle.directory)
        missing = "".join(f"\n  not collected: {error}" for error in bundle.errors)
        report.sections.append(("nginmesh diagnostics", f"bundle: {bundle.directory}{missing}"))
        if self.allure:
            from . import allure_glue

            for path in bundle.files:
                allure_glue.attach_file(path, str(path.relative_to(bundle.directory)))



class ReportWriter:
    """Plugin object: gathers the conformance results of the test reports (this process's, or every xdist
    worker's on the controller) and writes the conformance report at the end of the session."""

    def __init__(self, options: ReportOptions, settings: Callable[[], Settings]) -> None:
        self.options = options
        self.settings = settings
        self.results: dict[str, document.TestResult] = {}
        self.started = time.monotonic()
        self.started_at = _now()
        self.written: tuple[Path, Path] | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = getattr(report, "nginmesh_result", None)
        if isinstance(result, dict):
            self.results[report.nodeid] = document.TestResult.from_dict(result)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.results:
            return
        report = document.build(self.settings(), self.options.implementation, list(self.results.values()),
                                self.started_at, _now(), time.monotonic() - self.started)
        self.written = document.write(report, self.options.directory)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.written:
            yaml_path, markdown_path = self.written
            terminalreporter.write_line(f"nginmesh: conformance report {yaml_path} ({markdown_path.name})")


def _scrape(cluster: Any, settings: Settings) -> str:
    import requests

    names = settings.mesh_profile.metrics
    url = cluster.service_url(names.namespace, names.service, names.port) + names.path
    response = requests.get(url, timeout=settings.timeouts.http_request)
    return f"# GET {url}: HTTP {response.status_code}\n{response.text}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
