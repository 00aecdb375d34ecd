"""The repository's layout rules as tests read them: the engine's torch-free wing is the package the
import-linter contract in ``pyproject.toml`` names (one place, not a copy per test)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def engine_leaves() -> frozenset[str]:
    """``engine`` (the package's lazy ``__init__``) and the torch-free wing(s): the sources of the
    contracts whose sources are all engine subpackages (``engine.inputs``, with its modules)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    leaves = {
        m
        for c in config
        if c["source_modules"] and all(m.startswith("engine.") for m in c["source_modules"])
        for m in c["source_modules"]
    }
    assert leaves == {"engine.inputs"}, leaves
    return frozenset({"engine", *leaves})


def torch_free_import_check(imports: str, forbidden: tuple[str, ...]) -> str:
    """Python code that imports ``imports`` and fails if ``forbidden`` or an engine module beyond its
    leaves got imported."""
    return (
        "import sys\n"
        f"{imports}\n"
        f"leaves = {sorted(engine_leaves())!r}\n"
        f"bad = sorted(m for m in sys.modules if m in {forbidden!r}\n"
        "             or (m.startswith('engine') and m not in leaves\n"
        "                 and not any(m.startswith(leaf + '.') for leaf in leaves)))\n"
        "assert not bad, bad\n"
    )
