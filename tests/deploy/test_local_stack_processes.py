"""`make down` (deploy/local/stack.py) against real process trees: a component whose leader died
(a SIGKILLed `poseanimate worker` supervisor) but left processes in its group is cleaned up, and
`down` only says "stopped" once nothing it started remains."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.manifests import REPO


def _stack() -> ModuleType:
    spec = importlib.util.spec_from_file_location("local_stack", REPO / "deploy/local/stack.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["local_stack"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_make_down_stops_what_a_dead_component_left_in_its_process_group(tmp_path: Path) -> None:
    stack = _stack()
    logs = tmp_path / "logs"
    logs.mkdir()
    # A "worker" whose children ignore nothing: bash (the supervisor) with two sleeping consumers.
    worker = stack.spawn("worker", ["bash", "-c", "sleep 300 & sleep 300 & wait"], dict(os.environ), logs)
    stack.save_state(tmp_path, {"run_dir": str(tmp_path), "procs": [worker]})
    deadline = time.monotonic() + 5
    while len([p for p in Path("/proc").glob("[0-9]*/stat") if _pgid(p) == worker.pid]) < 3:
        assert time.monotonic() < deadline, "the fake worker did not start its children"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)  # the supervisor only: its consumers live on
    _reap(worker.pid)
    assert stack._group_alive(worker.pid)

    try:
        code = stack.down(argparse.Namespace(run_dir=tmp_path, timeout=5.0))
        assert code == 0
        assert not stack._group_alive(worker.pid), "make down left the dead worker's children running"
        assert not (tmp_path / stack.STATE).exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)


def _pgid(stat: Path) -> int:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError):
        return -1


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # spawn() started it as our child
