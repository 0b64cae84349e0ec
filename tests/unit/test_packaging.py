"""Packaging: every package of the project is in the wheel, every third-party import is a declared dependency,
and every fixture is readable as package data (importlib.resources), as it is from an installed wheel."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import yaml

from pytest_nginmesh.kube import parse_manifests
from pytest_nginmesh.mesh.manifests import FIXTURES, load_fixture

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"yaml": "pyyaml", "websocket": "websocket-client", "prometheus_client": "prometheus-client",
                 "pytest_kind": "pytest-kind", "allure": "allure-pytest", "_pytest": "pytest"}


def declared() -> set[str]:
    return {re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower()
            for requirement in PYPROJECT["project"]["dependencies"]}


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_every_package_is_listed() -> None:
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "pytest_nginmesh").rglob("__init__.py")}
    mapped = {name: REPO / folder for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
    data_dirs = {f"{name}.{'.'.join(d.relative_to(folder).parts)}" for name, folder in mapped.items()
                 for d in folder.rglob("*") if d.is_dir() and d.name != "__pycache__"}
    assert found | set(mapped) | data_dirs == packages
    assert all((folder / "__init__.py").exists() for folder in mapped.values())


def test_every_third_party_import_is_declared() -> None:
    files = [*(REPO / "pytest_nginmesh").rglob("*.py"), *(REPO / "suites").glob("*.py")]
    imported = set().union(*(top_level_imports(f) for f in files)) - set(sys.stdlib_module_names) - {"pytest_nginmesh"}
    assert imported, "no imports found"
    missing = {DISTRIBUTIONS.get(name, name).lower() for name in imported} - declared()
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"


def test_every_fixture_reads_as_package_data() -> None:
    yaml_files = sorted(str(p.relative_to(REPO / "fixtures")) for p in (REPO / "fixtures").rglob("*.yaml"))
    assert len(yaml_files) >= 20
    for relative in yaml_files:
        text = FIXTURES.joinpath(*relative.split("/")).read_text(encoding="utf-8")
        # kind and kubeadm configs are not API objects (no metadata.name): plain YAML
        assert list(yaml.safe_load_all(text)) if relative.startswith(("kind/", "kubeadm/")) else parse_manifests(text)
    assert any(o["kind"] == "RouteRule" for o in load_fixture("routes/route-rule-all-v1.yaml"))
