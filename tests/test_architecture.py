"""The tier rules hold: import contracts kept, no import cycles, one namespace.

ARCHITECTURE.md: edge/, cloud/ and desktop/ never import each other; shared/ imports no tier
(nor the CLI, demo or benchmarks); everything imports as ``lensflow.<tier>``. The rules are
import-linter contracts in pyproject.toml; these tests run them on the real code, and once on
a copy with a deliberate violation to show they catch one.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
OLD_TOP_LEVEL = {"edge", "cloud", "desktop", "shared", "models"}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def test_the_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "imports", "contract"),
    [
        # shared reaching into a tier
        ("shared/_violation.py", "lensflow.cloud.worker", "shared imports no tier"),
        # one tier importing another
        ("edge/_violation.py", "lensflow.desktop.client", "The tiers never import each other"),
        # a tier importing the demo
        ("cloud/_violation.py", "lensflow.demo.run", "only shared"),
        # a cycle between two modules
        ("shared/dag/_violation.py", "lensflow.shared.dag.engine", "No import cycles"),
    ],
)
def test_a_deliberate_violation_breaks_its_contract(
    tmp_path: Path, module: str, imports: str, contract: str
) -> None:
    # given a copy of the package (symlinked tiers copied as real folders) and its contracts
    shutil.copytree(
        ROOT / "lensflow", tmp_path / "lensflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # when one module breaks a rule
    (tmp_path / "lensflow" / module).write_text(f"import {imports}\n")
    if contract == "No import cycles":  # the engine imports the module back: a cycle
        engine = tmp_path / "lensflow" / "shared" / "dag" / "engine.py"
        engine.write_text(engine.read_text() + "\nimport lensflow.shared.dag._violation\n")
    # then lint-imports fails and names the contract
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    assert "_violation" in broken


def test_no_module_of_the_product_is_in_an_import_cycle() -> None:
    graph = grimp.build_graph("lensflow")
    cycles = [sorted(component) for component in _strongly_connected(graph) if len(component) > 1]

    assert cycles == []


def test_code_imports_the_tiers_only_through_the_lensflow_namespace() -> None:
    offenders = []
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for path in (ROOT / name for name in tracked):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] in OLD_TOP_LEVEL
            ]

    assert offenders == []


def _strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm over the module import graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            components.append(component)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return components
