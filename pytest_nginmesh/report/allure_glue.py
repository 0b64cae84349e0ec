"""allure results for conformance tests: feature/story labels from the declared features, the run's environment
and categories (product defect vs cluster or setup error). Imported, and its plugin registered, only when
allure is active (``--alluredir``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import allure
import pytest

from ..features import ConformanceTest

# allure calls a test "failed" when an assertion failed and "broken" for any other exception: a conformance
# assertion is a product defect, anything else (the cluster, a timeout, the setup) an environment problem.
CATEGORIES = [
    {"name": "Product defects (a conformance assertion failed)", "matchedStatuses": ["failed"]},
    {"name": "Cluster or setup errors", "matchedStatuses": ["broken"]},
    {"name": "Not tested (feature not claimed or exempted)", "matchedStatuses": ["skipped"]},
]


def label(item: pytest.Item, test: ConformanceTest) -> None:
    item.add_marker(allure.feature(*test.features))  # type: ignore[no-untyped-call]
    item.add_marker(allure.story(test.name))  # type: ignore[no-untyped-call]


@contextmanager
def step(title: str) -> Iterator[None]:
    with allure.step(title):
        yield


def attach_text(name: str, text: str) -> None:
    allure.attach(text, name=name, attachment_type=allure.attachment_type.TEXT)


def attach_file(path: Path, name: str) -> None:
    allure.attach.file(str(path), name=name,  # type: ignore[no-untyped-call]
                       attachment_type=allure.attachment_type.TEXT)


def write_environment(directory: Path, properties: dict[str, str]) -> None:
    """``environment.properties`` and ``categories.json`` in the allure results directory."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={value}".replace("\n", " ") for key, value in properties.items()]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "categories.json").write_text(json.dumps(CATEGORIES, indent=2), encoding="utf-8")
