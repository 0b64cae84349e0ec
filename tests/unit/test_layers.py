"""Layers point one way: base (objects, errors) ← domain (checks, Istio rules, profiles) ← settings ← cluster (a
Kubernetes and its providers) ← mesh (what Istio and Nginmesh install and run) ← plugin, CLI, report."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_nginmesh"
# From the bottom up; a module imports from its own layer and those below, never from one above. Settings read
# the profiles (which release, which features), so they sit just above the domain.
LAYERS: dict[str, tuple[str, ...]] = {
    "base": ("errors", "kube", "validation", "downloads", "features", "__version__"),
    "domain": ("checks", "profiles", "bookinfo", "injection_policy", "routerules", "observe"),
    "settings": ("settings",),
    "cluster": ("cluster",),
    "mesh": ("mesh", "workloads", "telemetry", "traffic"),
    "front": ("plugin", "cli", "report", "workers"),
}
LAYER_OF = {module: index for index, modules in enumerate(LAYERS.values()) for module in modules}


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every pytest_nginmesh module a file of the package at ``root`` imports, as names relative to the package."""
    package = path.relative_to(root.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base[1:] + ([node.module] if node.module else []))
                found.update(f"{module}.{alias.name}".strip(".") if not node.module else module
                             for alias in node.names)
            elif node.module and node.module.startswith("pytest_nginmesh."):
                found.add(node.module.removeprefix("pytest_nginmesh."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("pytest_nginmesh.") for a in node.names
                         if a.name.startswith("pytest_nginmesh."))
    return found


def top_module(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def test_every_module_of_the_package_has_a_layer() -> None:
    assert {top_module(path) for path in PACKAGE.rglob("*.py")} - {"__init__"} <= set(LAYER_OF)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_layer_imports_nothing_above_it(layer: str) -> None:
    own = list(LAYERS).index(layer)
    offending = sorted(f"{path.relative_to(PACKAGE)} imports {module}"
                       for path in PACKAGE.rglob("*.py") if LAYER_OF.get(top_module(path)) == own
                       for module in imported_modules(path) if LAYER_OF.get(module.split(".")[0], -1) > own)
    assert not offending


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "pytest_nginmesh" / "cluster" / "local" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("from ...mesh.injection import inject\nfrom ..base import Cluster\nfrom . import paths\n"
                      "import pytest_nginmesh.plugin\n")
    assert imported_modules(module, tmp_path / "pytest_nginmesh") == {
        "mesh.injection", "cluster.base", "cluster.local.paths", "plugin"}
