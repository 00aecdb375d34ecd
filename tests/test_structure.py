"""The product packages' shape: short functions and an import graph without cycles.

Both are read from the source with :mod:`ast` (nothing is imported), so they hold for every module,
including the ones a test run never imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "jobs", "worker", "engine", "cli")

MAX_FUNCTION_LINES = 100
# The one function allowed to be longer: the method itself, which reads as the paper's numbered steps.
LONG_FUNCTIONS_ALLOWED = {"engine.method.pipeline:PoseAnimator.animate"}


def _modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the product packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _functions(
    node: ast.AST, prefix: str = ""
) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method, nested ones included, with its qualified name."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def function_lengths() -> dict[str, int]:
    """``module:qualname`` -> lines from the ``def`` to the function's last line."""
    lengths: dict[str, int] = {}
    for module, path in MODULES.items():
        for name, node in _functions(ast.parse(path.read_text(), str(path))):
            assert node.end_lineno is not None
            lengths[f"{module}:{name}"] = node.end_lineno - node.lineno + 1
    return lengths


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that can run: module level, inside functions and classes, not under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        else:
            yield from _import_nodes(child)


def _ours(name: str) -> str | None:
    """The product module that ``import name`` loads (its longest known prefix), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """The product modules ``module`` imports (module- and function-level)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name` loads pkg.name when that is a module, else takes name from pkg.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        targets.update(t for t in map(_ours, names) if t is not None and t != module)
    return targets


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_function_in_the_product_packages_is_longer_than_100_lines():
    lengths = function_lengths()
    assert lengths.keys() >= LONG_FUNCTIONS_ALLOWED, "an allowed long function was renamed or moved"
    too_long = {
        name: n
        for name, n in lengths.items()
        if n > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS_ALLOWED
    }
    assert not too_long, f"split these into named steps (lines): {too_long}"


def test_routes_are_thin_no_route_module_function_is_longer_than_30_lines():
    """api/routes/ holds HTTP only: the intake, the job services and the views do the work."""
    too_long = {
        name: n for name, n in function_lengths().items() if name.startswith("api.routes.") and n > 30
    }
    assert not too_long, f"move the work out of these routes (lines): {too_long}"


def test_there_is_no_import_cycle_between_the_product_modules():
    graph = {module: imports_of(module) for module in MODULES}
    assert sum(len(targets) for targets in graph.values()) > 100  # the walk does see the imports
    assert not import_cycles(graph)


def test_the_checks_can_fail():
    """The cycle finder finds a cycle, and the import walk follows function-level and relative imports."""
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []
    # engine.poses.extract imports engine.poses.detect at module level; cli.main imports
    # cli.engine_commands inside build_parser.
    assert "engine.poses.detect" in imports_of("engine.poses.extract")
    assert "cli.engine_commands" in imports_of("cli.main")
    assert function_lengths()["engine.method.pipeline:PoseAnimator.animate"] > MAX_FUNCTION_LINES
