"""bench/scaling.py checked cheaply: the line fit on given numbers, the plan (--dry-run) against
engine.method.cost, and the table and plot from a small report. No full-size run here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _scaling():
    from bench import scaling

    return scaling


def test_fit_line_recovers_slope_intercept_and_r2():
    fit = _scaling().fit_line([1, 2, 4], [13.0, 17.0, 25.0])  # exactly 4 s/frame + 9 s
    assert fit["slope"] == pytest.approx(4.0) and fit["intercept"] == pytest.approx(9.0)
    assert fit["r2"] == pytest.approx(1.0)
    noisy = _scaling().fit_line([1, 2, 4], [13.0, 18.0, 25.0])
    assert noisy["slope"] == pytest.approx(55 / 14) and noisy["intercept"] == pytest.approx(9.5)
    assert 0.99 < noisy["r2"] < 1.0
    with pytest.raises(ValueError):
        _scaling().fit_line([2, 2], [1.0, 3.0])


def _point(targets: int, seconds: float) -> dict:
    from engine import AnimateConfig
    from engine.method.cost import expected_evaluations

    config = AnimateConfig(num_inference_steps=1, transition_frames=0, inversion_early_stop=0.0)
    evals = expected_evaluations(config, targets)
    return {
        "targets": targets,
        "frames": targets,
        "seconds": seconds,
        "stages": {"inverting": 5.0, "optimizing": 2.0 * targets, "sampling": 1.5 * targets, "encoding": 0.1},
        "evals": evals,
        "evals_match": True,
    }


def test_evaluation_counts_are_linear_in_frames_and_the_report_renders(tmp_path):
    scaling = _scaling()
    points = [_point(m, 5.1 + 3.5 * m) for m in (1, 2, 4)]
    fits = scaling.fits(points)
    assert fits["job"]["slope"] == pytest.approx(3.5) and fits["inverting"]["slope"] == pytest.approx(0.0)
    # engine.method.cost at T=1, k=1: 2 optimisation forwards + 2 sampling forwards, 1 backward per frame
    assert fits["forward_evals"]["slope"] == pytest.approx(4.0) and fits["forward_evals"]["r2"] == 1.0
    assert fits["backward_evals"]["slope"] == pytest.approx(1.0)
    report = {
        "date": "2026-12-02 10:00",
        "machine": "x86_64 2 CPUs",
        "settings": {
            "device": "cpu",
            "dtype": "float32",
            "size": 128,
            "steps": 1,
            "inner": 5,
            "transition": 0,
            "threads": 2,
        },
        "points": points,
        "fit": fits,
    }
    text = scaling.table(report)
    assert "| **job, fastest job per N** | **3.50 s** | **5.10 s** |" in text
    pytest.importorskip("matplotlib")
    scaling.plot(report, tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dry_run_plans_one_job_per_target_count():
    from engine import AnimateConfig
    from engine.method.cost import expected_evaluations

    out = subprocess.run(
        [sys.executable, "-m", "bench.scaling", "--dry-run", "--targets", "4,1,2"],
        cwd=ROOT,  # `python -m bench.<script>` from the repository root
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    plan = json.loads(out.stdout)
    assert plan["settings"] == {
        "device": "cpu",
        "dtype": "float32",
        "size": 128,
        "steps": 1,
        "inner": 5,
        "transition": 0,
    }
    assert [p["targets"] for p in plan["points"]] == [1, 2, 4]
    config = AnimateConfig(num_inference_steps=1, transition_frames=0)
    assert plan["points"][2]["expected_evals"] == expected_evaluations(config, 4)


def test_stage_minima_take_each_stages_fastest_run_and_fit_their_sum():
    scaling = _scaling()
    jobs = [
        {"seconds": 20.0, "stages": {"inverting": 12.0, "optimizing": 3.0, "sampling": 2.0, "encoding": 1.0}},
        {"seconds": 19.0, "stages": {"inverting": 8.0, "optimizing": 6.0, "sampling": 2.5, "encoding": 1.0}},
    ]
    mins = scaling.stage_minima(jobs)
    assert mins == {"inverting": 8.0, "optimizing": 3.0, "sampling": 2.0, "encoding": 1.0, "other": 1.5}
    points = []
    for m in (1, 2, 4):
        point = _point(m, 30.0 + m)
        point["stage_min"] = {
            "inverting": 10.0,
            "optimizing": 2.0 * m,
            "sampling": 1.0 * m,
            "encoding": 0.5,
            "other": 1.0,
        }
        points.append(point)
    fits = scaling.fits(points)
    assert fits["job_stage_minima"]["slope"] == pytest.approx(3.0)
    assert fits["job_stage_minima"]["intercept"] == pytest.approx(11.5)
    assert fits["optimizing"]["slope"] == pytest.approx(2.0) and fits["job"]["slope"] == pytest.approx(1.0)
