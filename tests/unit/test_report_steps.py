"""Each conformance test's steps (apply, converge, measure) are timed into its report entry
(pytest_nginmesh.report.session.TestEvidence), and travel with the result from an xdist worker."""

from __future__ import annotations

import time

import pytest

from pytest_nginmesh import observe
from pytest_nginmesh.report.document import TestResult
from pytest_nginmesh.report.session import TestEvidence


def test_a_finished_step_is_recorded_with_its_duration_and_a_failed_one_is_not() -> None:
    evidence = TestEvidence(allure=False)
    with observe.observed_by(evidence):
        with observe.step("converge: every proxy runs the new config"):
            time.sleep(0.02)
        with pytest.raises(RuntimeError), observe.step("measure"):
            raise RuntimeError("the measurement failed")
    (converge,) = evidence.steps
    assert converge["title"] == "converge: every proxy runs the new config"
    assert 0.02 <= converge["seconds"] < 1


def test_steps_travel_with_the_result() -> None:
    result = TestResult("routing-version-all-v1", "suites/test_routing.py::test_all_v1", ("routing-version",),
                        steps=[{"title": "apply RouteRule/x", "seconds": 0.01}])
    assert TestResult.from_dict(result.as_dict()) == result
