"""bench/gpu.py, the one-call GPU benchmark, checked cheaply: its plan in --dry-run. No full-size run
here: that is the benchmark's job (the random model it builds: tests/engine/test_random_model.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


# ----------------------------------------------------------------------------------------------
# The one GPU call: levers, deadline, wheel route (issue 23)
# ----------------------------------------------------------------------------------------------
def _dry_plan(*args: str) -> dict:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--dry-run", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def test_compile_runs_only_when_asked():
    default = _dry_plan("--device", "cuda")
    assert "compile" not in default["levers"] and "only when asked" in default["skipped"]["compile"]
    assert {"dtype", "frame_batch", "sdpa"} <= set(default["levers"])
    asked = _dry_plan("--device", "cuda", "--levers", "default,compile", "--deadline-s", "300")
    assert asked["levers"][-1] == "compile" and asked["deadline_s"] == 300


def test_sdpa_lever_reads_device_time_and_names_the_backend_that_ran():
    from bench import gpu

    assert gpu.self_time_attribute(torch.device("cuda")) == "self_device_time_total"
    # the profiler's averaged events of this torch have self_device_time_total, not self_cuda_*
    from torch.autograd.profiler_util import FunctionEventAvg

    event = FunctionEventAvg()
    assert gpu._self_time(event, "self_device_time_total") == 0.0
    ran = gpu.backend_of_ops(
        {
            "aten::_scaled_dot_product_efficient_attention": 3,
            "aten::_efficient_attention_forward": 3,
            "aten::_scaled_dot_product_attention_math": 1,
            "aten::mm": 9,
        }
    )
    assert ran == {"EFFICIENT_ATTENTION": 6, "MATH": 1}


def _diffusers_wheel(tmp_path: Path) -> Path:
    """The carried wheels folder (.whl/ when fetched), else a wheel packed from the installed
    distribution (same files; what `pip download diffusers --no-deps` saves)."""
    import importlib.metadata
    import zipfile

    carried = ROOT / ".whl"
    if list(carried.glob("diffusers-*.whl")):
        return carried
    dist = importlib.metadata.distribution("diffusers")
    folder = tmp_path / "wheels"
    folder.mkdir()
    with zipfile.ZipFile(folder / f"diffusers-{dist.version}-py3-none-any.whl", "w") as wheel:
        for file in dist.files or []:
            path = Path(dist.locate_file(file))
            # site-packages files only: console scripts (../../../bin/...) are not the wheel's
            inside = ".." not in file.parts and "__pycache__" not in file.parts
            if path.is_file() and inside and not file.name.endswith(".pyc"):
                wheel.write(path, str(file))
    return folder


def test_one_call_command_installs_diffusers_from_wheels_and_leaves_a_report_at_its_deadline(
    tmp_path, tiny_model_dir
):
    """The rehearsal of docs/performance.md's one GPU call on the CPU, diffusers hidden from the
    import path: the wheel route must supply it, and a run cut at its deadline still leaves
    gpu.json and gpu.md."""
    import os
    import subprocess
    import sys

    pytest.importorskip("pip", reason="the wheel route installs with `python -m pip`")
    hide = tmp_path / "hide" / "diffusers"
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('diffusers hidden: the GPU image has none')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "hide"), "PYTHON": sys.executable}
    env.pop("HF_HUB_OFFLINE", None)
    hidden = subprocess.run(
        [sys.executable, "-c", "import diffusers"], env=env, capture_output=True, text=True
    )
    assert hidden.returncode != 0 and "hidden" in hidden.stderr

    out, site = tmp_path / "out", tmp_path / "site"
    env |= {"WHEELS": str(_diffusers_wheel(tmp_path)), "SITE": str(site), "OUT": str(out), "DEADLINE_S": "2"}
    run = subprocess.run(
        ["sh", str(ROOT / "bench" / "gpu_call.sh"), "--model", str(tiny_model_dir), "--device", "cpu"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1, run.stderr[-2000:]  # cut before the main job: no evaluations to check
    report = json.loads((out / "gpu.json").read_text())
    assert report["packages"]["diffusers"]["path"].startswith(str(site))
    assert report["hf_hub_offline"] == "1"
    assert report["stopped"] == "deadline of 2 s reached"
    assert "main" not in report
    for lever in report["plan"]["levers"]:
        assert "deadline" in report["plan"]["skipped"][lever]
    md = (out / "gpu.md").read_text()
    assert "Stopped early: deadline of 2 s reached" in md and "Main job: did not finish." in md
