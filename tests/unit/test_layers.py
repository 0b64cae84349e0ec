"""Layers point one way: the cluster layer imports nothing of the mesh above it, nor anything of the plugin,
the CLI or the report; the mesh layer nothing of the plugin, the CLI or the report."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "pytest_nginmesh"
ABOVE_CLUSTER = ("mesh", "workloads", "plugin", "cli", "report", "telemetry", "traffic", "workers")
ABOVE_MESH = ("plugin", "cli", "report", "workers")


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


@pytest.mark.parametrize(("layer", "forbidden"), [("cluster", ABOVE_CLUSTER), ("mesh", ABOVE_MESH)])
def test_a_layer_imports_nothing_above_it(layer: str, forbidden: tuple[str, ...]) -> None:
    offending = {f"{path.relative_to(PACKAGE)} imports {module}"
                 for path in (PACKAGE / layer).rglob("*.py")
                 for module in imported_modules(path) if module.split(".")[0] in forbidden}
    assert not offending, sorted(offending)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "pytest_nginmesh" / "cluster" / "local" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("from ...mesh.injection import inject\nfrom ..base import Cluster\nfrom . import paths\n"
                      "import pytest_nginmesh.plugin\n")
    assert imported_modules(module, tmp_path / "pytest_nginmesh") == {
        "mesh.injection", "cluster.base", "cluster.local.paths", "plugin"}
