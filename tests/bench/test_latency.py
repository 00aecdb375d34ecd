"""bench/latency.py: the percentile report on given numbers, the interval arithmetic of a job view,
and a 3-job run on the real stack (redis-server, API, noop worker). Its timings are not asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _latency():
    from bench import latency

    return latency


def test_summarize_uses_nearest_rank_percentiles():
    values = [i / 1000 for i in range(1, 51)]  # 1 .. 50 ms, shuffled order does not matter
    summary = _latency().summarize(list(reversed(values)))
    assert summary["n"] == 50
    assert summary["p50_ms"] == 25.0 and summary["p99_ms"] == 50.0 and summary["max_ms"] == 50.0
    assert summary["min_ms"] == 1.0 and summary["mean_ms"] == 25.5
    one = _latency().summarize([0.2])
    assert one["p50_ms"] == one["p99_ms"] == one["max_ms"] == 200.0


def test_job_latency_reads_the_views_timestamps():
    job = {
        "id": "j",
        "created_at": "2026-12-02T10:00:00.250000Z",
        "started_at": "2026-12-02T10:00:00.300000Z",
    }
    sent = _latency()._ts("2026-12-02T10:00:00.100000+00:00")
    got = _latency().job_latency(job, sent)
    assert got["queue_wait_s"] == pytest.approx(0.05) and got["submit_to_start_s"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        _latency().job_latency({"id": "j", "created_at": job["created_at"], "started_at": None}, sent)


@pytest.mark.integration
def test_three_noop_jobs_on_the_real_stack():
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make services installs it)")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.latency",
            "--jobs",
            "3",
            "--idle-s",
            "0.1",
            "--image-size",
            "64",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert len(report["jobs"]) == 3 and report["queue_wait"]["n"] == 3
    for row in report["jobs"]:
        assert 0 <= row["queue_wait_s"] <= row["submit_to_start_s"]
    q = report["queue_wait"]
    assert q["min_ms"] <= q["p50_ms"] <= q["p99_ms"] <= q["max_ms"]
