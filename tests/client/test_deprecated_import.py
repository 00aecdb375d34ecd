"""``cli.client``, the client's old home, still imports for one release: it warns and hands out the
very objects of ``poseanimate_client``."""

from __future__ import annotations

import sys

import pytest

import poseanimate_client


def test_the_old_import_path_warns_and_re_exports_the_same_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "cli.client", raising=False)  # a first import, which is what warns
    with pytest.warns(DeprecationWarning, match="from poseanimate_client import PoseAnimateClient") as record:
        import cli.client as old  # a plain import statement, as a user writes it
    assert len(record) == 1
    assert record[0].filename == __file__  # reported at the importer's line, not inside the shim
    for name in ("PoseAnimateClient", "AsyncPoseAnimateClient", "PoseAnimateError"):
        assert getattr(old, name) is getattr(poseanimate_client, name)
    assert sorted(old.__all__) == sorted(poseanimate_client.__all__)


def test_the_client_package_is_torch_free_and_imports_no_service_internals() -> None:
    """Its import contract in pyproject.toml, checked at run time too: importing the client in a
    fresh interpreter loads nothing of the API, the worker, the engine or the CLI."""
    import subprocess

    code = (
        "import sys, poseanimate_client; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'api', 'worker', 'engine', 'cli', 'launch', 'torch'} "
        "or (m.startswith('jobs.') and m != 'jobs.contract')); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
