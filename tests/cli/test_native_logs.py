"""Issue 24's walk: ``poses extract`` (and ``animate``) printed MediaPipe's absl and TensorFlow Lite
lines (written by C++ to fd 2) without ``--verbose``. Now stderr is clean; ``--verbose`` keeps them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clips import astronaut_mp4

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, code: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", code] if code else [sys.executable, "-m", "cli.main", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_the_filter_drops_native_log_lines_and_keeps_everything_else():
    code = (
        "import os, sys\n"
        "from cli.native_logs import filter_native_logs\n"
        "restore = filter_native_logs()\n"
        "os.write(2, b'W0000 00:00:1796583251.654225    6099 inference_feedback_manager.cc:114] noise\\n')\n"
        "print('ours, before', file=sys.stderr)\n"
        "os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "os.write(2, b'I1206 18:40:01.123456 42 gl_context.cc:357] noise\\nnative but ours-looking\\n')\n"
        "print('ours, after', file=sys.stderr)\n"
        "sys.stderr.write('no newline at the end')\n"
        "restore()\n"
        "print('restored', file=sys.stderr)\n"
    )
    result = _run(code=code)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "ours, before\nnative but ours-looking\nours, after\nno newline at the endrestored\n"
    )


def test_poses_extract_leaves_stderr_clean_unless_verbose(tmp_path):
    pytest.importorskip("mediapipe")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(astronaut_mp4(2, fps=8))
    quiet = _run("poses", "extract", str(clip), "--out", str(tmp_path / "p.json"))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "wrote" in quiet.stdout
    verbose = _run("--verbose", "poses", "extract", str(clip), "--out", str(tmp_path / "v.json"))
    assert verbose.returncode == 0
    assert "TensorFlow Lite" in verbose.stderr or "] " in verbose.stderr  # the lines do exist
    missing = _run("poses", "extract", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "n.json"))
    assert missing.returncode == 2 and missing.stderr.startswith("poseanimate: error: ")
