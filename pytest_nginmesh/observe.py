"""What a running check tells an observer: steps (apply, converge, measure, judge), findings, verdicts and
attachments. Checks and the mesh call these freely; they do nothing unless the plugin's report observes the
test (the conformance report, allure), so no suite ever branches on who is watching."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, ParamSpec, Protocol, TypeVar


class Observer(Protocol):
    def step(self, title: str) -> AbstractContextManager[None]:
        """A named stage of the test (apply → converge → measure → judge)."""

    def findings(self, findings: Sequence[Any]) -> None:
        """Findings a check returned (``checks.findings.Finding``; empty when it passed)."""

    def verdict(self, verdict: Any) -> None:
        """A statistical verdict and the numbers it rests on (``checks.routing.Verdict``)."""

    def attach(self, name: str, text: str) -> None:
        """Evidence a reader of the result needs (applied rules, metric deltas, …)."""


_current: ContextVar[Observer | None] = ContextVar("nginmesh_observer", default=None)


@contextmanager
def observed_by(observer: Observer) -> Iterator[None]:
    token = _current.set(observer)
    try:
        yield
    finally:
        _current.reset(token)


def step(title: str) -> AbstractContextManager[None]:
    observer = _current.get()
    return observer.step(title) if observer is not None else nullcontext()


def findings(found: Sequence[Any]) -> None:
    observer = _current.get()
    if observer is not None:
        observer.findings(found)


def verdict(value: Any) -> None:
    observer = _current.get()
    if observer is not None:
        observer.verdict(value)


def attach(name: str, text: str) -> None:
    observer = _current.get()
    if observer is not None:
        observer.attach(name, text)


P = ParamSpec("P")
R = TypeVar("R")


def reports_findings(check: Callable[P, R]) -> Callable[P, R]:
    """Tell the observer what a check found: its list of findings (or the first item of the tuple it returns)."""

    @functools.wraps(check)
    def observed(*args: P.args, **kwargs: P.kwargs) -> R:
        result = check(*args, **kwargs)
        findings(result[0] if isinstance(result, tuple) else result)  # type: ignore[arg-type]
        return result

    return observed
