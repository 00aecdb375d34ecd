"""The benchmark scripts as modules, for the tests and for each other: ``bench/`` is not a package
and must not go on ``sys.path`` (``bench/engine.py`` would shadow the engine package)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.support import REPO_ROOT


def bench_module(script: str) -> ModuleType:
    """``bench/<script>`` loaded once per process (registered in ``sys.modules``: dataclasses look
    their module up there)."""
    name = "poseanimate_bench_" + script.removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "bench" / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
