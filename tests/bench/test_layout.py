"""bench/ stands on its own: no script edits ``sys.path``, none imports ``tests``, and no module is
named like one of the service's packages (``bench/engine.py`` once shadowed ``engine`` whenever a
script ran as ``python bench/<script>.py``, which puts bench/ first on ``sys.path``)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "bench").glob("*.py"))


def _root_packages() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(config["tool"]["importlinter"]["root_packages"]) | {"tests", "bench"}


def _imported(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _touches_sys_path(tree: ast.AST) -> bool:
    """``sys.path.<anything>(...)``, ``sys.path[...] = ...`` or ``sys.path = ...``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path":
            value = node.value
            if isinstance(value, ast.Name) and value.id == "sys":
                return True
    return False


def test_the_checks_see_what_they_look_for():
    assert _touches_sys_path(ast.parse("import sys\nsys.path.insert(0, 'x')"))
    assert not _touches_sys_path(ast.parse("import os\nos.path.join('a', 'b')"))
    assert "tests.support.servers" in _imported(ast.parse("from tests.support.servers import free_port"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bench_module_neither_edits_sys_path_nor_imports_tests(script: Path):
    tree = ast.parse(script.read_text(), filename=str(script))
    assert not _touches_sys_path(tree), f"{script.name} edits sys.path"
    from_tests = sorted(m for m in _imported(tree) if m == "tests" or m.startswith("tests."))
    assert not from_tests, f"{script.name} imports {from_tests}"


def test_no_bench_module_shadows_a_package_name():
    assert len(SCRIPTS) >= 8
    assert not {p.stem for p in SCRIPTS} & _root_packages()
