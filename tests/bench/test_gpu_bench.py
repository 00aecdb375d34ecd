"""The full-size random-weight model and the one-call GPU benchmark, checked cheaply: architecture
sizes on the meta device, the CLIP-sized tokenizer, the written layout (with small stand-in modules),
the CLI, and the benchmark's plan in --dry-run. No full-size run here: that is bench/gpu.py's job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.weights import random_model
from engine.weights.random_model import build_clip_sized_tokenizer_files, parameter_counts, sd15_modules

ROOT = Path(__file__).resolve().parents[2]


def test_sd15_architecture_has_the_real_parameter_counts():
    counts = parameter_counts(sd15_modules("meta"))
    # SD-1.5 U-Net 859.52 M, OpenPose ControlNet 361.28 M, CLIP ViT-L/14 text 123.06 M, VAE 83.65 M
    assert counts == {
        "unet": 859_520_964,
        "controlnet": 361_279_120,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
    }


def test_tokenizer_has_clips_vocabulary_size_and_keeps_prompt_words_whole(tmp_path):
    from transformers import CLIPTokenizer

    assert build_clip_sized_tokenizer_files(tmp_path) == 49408
    tok = CLIPTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt"))
    assert len(tok) == 49408
    ids = tok("an astronaut").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) == 4  # <bos> an astronaut <eos>
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["an</w>", "astronaut</w>"]


def _small_modules(device="cpu", generator=None):
    """Stand-ins with the real vocabulary (the layout and marker are what is tested, not the size)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=1,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    return {"unet": unet, "controlnet": controlnet, "vae": vae, "text_encoder": text}


def test_written_model_loads_and_is_reported_as_random(tmp_path, monkeypatch):
    from engine import PoseAnimator

    monkeypatch.setattr(random_model, "sd15_modules", _small_modules)
    path = random_model.build_random_model(tmp_path / "sd15", seed=1)
    marker = json.loads((path / random_model.RANDOM_WEIGHTS_MARKER).read_text())
    assert marker["random_weights"] is True and marker["arch"] == "sd15"
    assert json.loads((path / "scheduler" / "scheduler_config.json").read_text())["beta_end"] == 0.012
    animator = PoseAnimator.from_pretrained(path, None, pose_detector="none", segmenter="none")
    assert animator.model_info["random_weights"] is True
    assert animator.controlnet.dtype == torch.float32  # float16 on disk, cast on load
    assert len(animator.tokenizer) == 49408
    assert animator.vae.config.scaling_factor == pytest.approx(0.18215)


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        random_model.build_random_model(tmp_path, arch="sdxl")


def test_cli_registers_make_random_model():
    from cli.main import build_parser

    args = build_parser().parse_args(["make-random-model", "--arch", "sd15", "/tmp/x"])
    assert args.command == "make-random-model" and args.arch == "sd15" and args.dtype == "float16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["make-random-model", "--arch", "sdxl", "/tmp/x"])


def test_gpu_benchmark_dry_run_plans_the_paper_setting_and_skips_cuda_levers_on_cpu():
    import subprocess
    import sys

    from engine import AnimateConfig
    from engine.method.cost import expected_evaluations

    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--dry-run"],
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
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", *args],
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
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu.py")
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
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
            if path.is_file() and "__pycache__" not in file.parts and not file.name.endswith(".pyc"):
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
