"""The benchmarks: scripts, not timed tests (docs/performance.md). A package, so the scripts import each
other (``from bench import gpu``) and the tests import them (``tests/bench``); run each from the
repository root as a module, e.g. ``python -m bench.api_load --json``. They import the service's
packages as installed (``make setup``: an editable install) and nothing from ``tests/``."""
