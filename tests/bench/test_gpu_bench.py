"""bench/gpu.py, the one-call GPU benchmark, checked cheaply: its plan in --dry-run. No full-size run
here: that is the benchmark's job (the random model it builds: tests/engine/test_random_model.py)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_dry_run_plans_the_paper_setting_and_skips_cuda_levers_on_cpu():
    import subprocess
    import sys

    from engine import AnimateConfig
    from engine.method.cost import expected_evaluations

    out = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--device", "cpu", "--dry-run"],
        cwd=ROOT,  # `python -m bench.<script>` from the repository root
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    plan = json.loads(out.stdout)
    main = plan["main"]
    assert (main["size"], main["steps"], main["inner"], main["targets"]) == (512, 50, 5, 16)
    config = AnimateConfig(transition_frames=main["transition"])
    assert main["expected_evals"] == expected_evaluations(config, 16)
    for lever in ("dtype", "compile", "frame_batch"):
        assert plan["skipped"][lever] == "needs CUDA" and lever not in plan["levers"]
    assert {"cache", "sdpa", "vae", "channels_last", "uncond_batching"} <= set(plan["levers"])
