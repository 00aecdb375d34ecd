"""bench/api_load.py runs end to end in a tiny configuration and reports what it claims. Its
numbers are not asserted (timings belong in the benchmark output, never in a test)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

TINY = [
    "--duration",
    "1",
    "--warmup",
    "0.3",
    "--status-rate",
    "40",
    "--status-concurrency",
    "4",
    "--submit-rate",
    "4",
    "--submit-concurrency",
    "2",
    "--hey-procs",
    "2",
    "--json",
]
RESULT_KEYS = {
    "name",
    "endpoint",
    "mode",
    "offered_rps",
    "concurrency",
    "duration_s",
    "requests",
    "ok",
    "non_2xx",
    "errors",
    "status_codes",
    "achieved_rps",
    "latency_ms",
    "cpu_s",
    "cpu_busy_of_machine",
}
PHASES = [
    "status @ fixed rate",
    "status, closed loop",
    "submit multipart @ fixed rate",
    "submit multipart, closed loop",
    "submit json @ fixed rate",
    "submit json, closed loop",
]


@pytest.mark.parametrize("loadgen", ["python", "hey"])
def test_api_load_reports_every_phase(loadgen: str) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make services installs it)")
    if loadgen == "hey" and shutil.which("hey") is None:
        pytest.skip("hey is not installed (Debian package 'hey')")
    out = subprocess.run(
        [sys.executable, "-m", "bench.api_load", "--loadgen", loadgen, *TINY],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)

    assert report["target"]["self_started"] is True
    assert report["loadgen"]["name"] == ("hey" if loadgen == "hey" else "python-httpx")
    if loadgen == "python":
        assert "note" in report["loadgen"]  # the fallback says that it competes for the cores
    assert report["image"]["width"] == report["image"]["height"] == 512
    assert report["image"]["png_bytes"] > 0

    assert [r["name"] for r in report["results"]] == PHASES
    for r in report["results"]:
        assert set(r) == RESULT_KEYS
        assert r["mode"] == ("fixed-rate" if "fixed rate" in r["name"] else "closed-loop")
        assert r["requests"] > 0 and r["ok"] + r["non_2xx"] == r["requests"]
        assert r["non_2xx"] == 0 and r["errors"] == 0, r["status_codes"]
        assert set(r["latency_ms"]) == {"p50", "p95", "p99", "max", "mean"}
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert {"api", "redis", "loadgen"} <= set(r["cpu_s"])

    targets = report["targets"]
    assert len(targets) == 3
    assert all(isinstance(t["holds"], bool) and t["p99_ms"] > 0 for t in targets)
