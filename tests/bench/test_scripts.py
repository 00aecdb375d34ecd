"""The benchmark scripts run and report what they claim (their numbers are not asserted: timings
belong in the benchmark output, never in a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{script.removesuffix('.py')}", *args, "--json"],
        cwd=ROOT,  # `python -m bench.<script>` from the repository root
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads(out.stdout)


def test_cost_model_counts_the_paper_setting():
    report = _run("cost_model.py")
    evals = report["cache_miss"]["evals"]
    # T=50, n=5, N=16: 50 + 50*(5+3) + 16*50*2 + 2*50*17 forward (the +1 per inversion step
    # advances Zbar in generation's [uncond, cond] layout, so frame 0 retraces it bit for bit);
    # 50*5 + 16*50 backward
    assert evals["total_forward"] == 3750 and evals["total_backward"] == 1050
    assert report["cache_hit"]["evals"]["inverting_forward"] == 0
    # SD-1.5 U-Net + ControlNet forward at 512^2 is on the order of a TFLOP per sample
    assert 0.8e12 < report["flops_per_sample"]["unet_controlnet_forward"] < 1.5e12
    h100 = report["gpus"]["H100 (SXM, 989 TFLOP/s)"]["cache_miss"]
    assert h100["peak_seconds"] < h100["expected_seconds"]


def test_engine_benchmark_runs_all_comparisons():
    report = _run("engine_variants.py", "--steps", "2", "--frames", "4", "--repeat", "1", "--size", "64")
    assert report["random_weights"] is True
    assert set(report["ratios"]) == {
        "batched_vs_frame_by_frame_optimizing",
        "cache_hit_vs_miss_total",
        "checkpointing_time_on_over_off",
    }
    assert report["pairs"]["cache_hit_inverting_evals"] == 0
    job, expected = report["job"]["unet_evals"], report["expected_evals"]
    assert job["total_forward"] <= expected["total_forward"]  # early stopping can only lower it
    assert job["sampling_forward"] == expected["sampling_forward"]


def test_video_probe_benchmark_compares_probe_and_decode_on_both_containers():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.videoprobe",
            "--seconds",
            "0.5",
            "--size",
            "64x64",
            "--repeat",
            "1",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    ).stdout
    rows = [line for line in out.splitlines() if line.startswith("| mp4") or line.startswith("| webm")]
    assert len(rows) == 2 and all(
        row.split("|")[3].strip() == "15" for row in rows
    )  # frames: 0.5 s at 30 fps


def test_allocator_benchmark_runs_each_configuration_under_its_own_allocator(tiny_model_dir):
    report = _run(
        "allocator.py",
        *("--model", str(tiny_model_dir), "--size", "64", "--steps", "1", "--inner", "1"),
        *("--rounds", "1"),
    )
    results = report["results"]
    assert {"glibc", "glibc-tuned"} <= set(results)
    assert set(results) | set(report["skipped"]) == {"glibc", "glibc-tuned", "jemalloc", "tcmalloc"}
    for name, r in results.items():
        assert r["evals_match"], name
        # the child saw exactly the configuration's environment, and a preloaded allocator is mapped
        assert r["child_env"] == r["env"], name
        assert r["loaded"] == (name if name in ("jemalloc", "tcmalloc") else "glibc"), name
        assert r["tuned"] is (True if name == "glibc-tuned" else None), name  # the engine's own tuning
    assert results["glibc"]["speedup_vs_glibc"] == 1.0


def test_mgdm_benchmark_compares_masked_and_regions_side_by_side():
    report = _run("mgdm.py", "--chunk", "3", "--cpu-level", "16x16", "--cpu-frames", "3", "--repeats", "1")
    for row in report["levels"].values():
        # the regions never allocate nor compute more than the masked reference
        assert 0 < row["peak_bytes"]["regions"] < row["peak_bytes"]["masked"]
        assert 0 < row["pairs"]["regions"] < row["pairs"]["masked"]
    assert set(report["cpu"]["seconds"]) == {"masked", "regions", "ratio"}
    assert report["cpu"]["max_abs_diff"] < 1e-5
