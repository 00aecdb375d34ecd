"""The measured memory model and the planner (issue 23): the model's predictions agree with real CPU
jobs, the planner never plans more than it is given and balances chunks, and the committed SD-1.5
table is what the meta device measures."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from engine.inputs.memoryplan import (
    GiB,
    MemoryModel,
    StageMemory,
    balanced_chunks,
    card_available_bytes,
    load_table,
    plan_job,
    stage_frames,
)

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# Planner (torch-free, cheap)
# ----------------------------------------------------------------------------------------------
def _model(per_opt: float, per_ckpt: float, per_sample: float, per_dec: float, weights: float) -> MemoryModel:
    g = int(GiB)
    return MemoryModel(
        latent_hw=(64, 64),
        dtype="float16",
        kernel="efficient",
        weights=int(weights * g),
        stages={
            "inverting": StageMemory(int(per_opt * g), 0),
            "optimizing": StageMemory(0, int(per_opt * g)),
            "sampling": StageMemory(int(0.1 * g), int(per_sample * g)),
            "encoding": StageMemory(0, int(per_dec * g)),
        },
        checkpointed={
            "inverting": StageMemory(int(per_ckpt * g), 0),
            "optimizing": StageMemory(0, int(per_ckpt * g)),
        },
        embedding_bytes=77 * 768 * 2,
    )


def test_balanced_chunks():
    assert balanced_chunks(20, 17) == [10, 10]
    assert balanced_chunks(21, 17) == [11, 10]
    assert balanced_chunks(22, 8) == [8, 7, 7]
    assert balanced_chunks(5, 64) == [5]
    assert balanced_chunks(3, 1) == [1, 1, 1]


def test_planner_never_exceeds_the_memory_it_is_given():
    rng = random.Random(0)
    for _ in range(400):
        model = _model(
            rng.uniform(0.1, 5),
            rng.uniform(0.05, 1),
            rng.uniform(0.05, 1),
            rng.uniform(0.05, 2),
            rng.uniform(0, 8),
        )
        frames = rng.randint(1, 80)
        available = int(rng.uniform(1, 100) * GiB)
        steps = rng.choice([1, 10, 50])
        for counted in (True, False):
            plan = plan_job(model, frames, available, steps=steps, weights_counted=counted)
            for stage, s in plan.stages.items():
                assert sum(s.chunks) == stage_frames(stage, frames)
                assert max(s.chunks) - min(s.chunks) <= 1 and s.chunk == max(s.chunks)
                expected = (model.weights if counted else 0) + model.peak(
                    stage, s.chunk, steps=steps, checkpointing=s.checkpointing
                )
                assert s.peak_bytes == expected
                if plan.fits:
                    assert s.peak_bytes <= available
            if plan.fits:
                assert plan.peak_bytes <= available
            else:
                assert plan.reason


def test_planner_prefers_no_checkpointing_and_balances():
    model = _model(1.0, 0.25, 0.3, 0.4, 2.5)
    roomy = plan_job(model, 20, 80 * GiB)
    assert roomy.fits and roomy.stages["optimizing"].chunks == [20]
    assert not any(s.checkpointing for s in roomy.stages.values())
    # room for 17 frames of optimisation: 10 + 10, never 17 + 3
    budget = int((2.5 + 17.5 * 1.0 + 50 * 17 * 77 * 768 * 2 / GiB) * GiB / 0.95)
    plan = plan_job(model, 20, budget)
    assert plan.stages["optimizing"].chunks == [10, 10]
    # too small for one frame without checkpointing: checkpointing for both optimisation passes
    tight = plan_job(model, 20, int(3.3 * GiB))
    assert tight.fits and tight.stages["optimizing"].checkpointing and tight.stages["inverting"].checkpointing
    nowhere = plan_job(model, 20, int(2.0 * GiB))
    assert not nowhere.fits and "needs" in nowhere.reason


def test_the_paper_setting_fits_a_24_gb_card_from_the_measured_table():
    from engine.inputs.memoryplan import interpolate

    model = interpolate(load_table(), (64, 64))
    # what the audit counted by hand: ~0.96 GiB per frame in the optimisation pass, ~0.25
    # with checkpointing, ~0.375 per decoded frame, 2.66 GiB of weights
    assert 0.9 < model.stages["optimizing"].per_sample / GiB < 1.0
    assert 0.2 < model.checkpointed["optimizing"].per_sample / GiB < 0.3
    assert model.stages["encoding"].per_sample / GiB == pytest.approx(0.375, rel=0.01)
    assert model.weights / GiB == pytest.approx(2.66, abs=0.01)
    plan = plan_job(model, 20, card_available_bytes(24), steps=50)
    assert plan.fits and plan.stages["optimizing"].chunks == [10, 10]
    # 1024² interpolated between measured sizes stays within the measured ones
    big = interpolate(load_table(), (112, 112))
    assert model.stages["optimizing"].per_sample < big.stages["optimizing"].per_sample
    assert (
        big.stages["optimizing"].per_sample
        < interpolate(load_table(), (128, 128)).stages["optimizing"].per_sample
    )


def test_bench_memory_json_shape():
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--json"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(out.stdout)
    assert sorted(report["cards"], key=float) == ["8", "12", "16", "24", "48", "80"]
    for card in report["cards"].values():
        assert isinstance(card["fits"], bool)
        assert set(card["plan"]) == {"inverting", "optimizing", "sampling", "encoding"}
        for stage in card["plan"].values():
            assert {"chunk", "checkpointing", "offload"} <= set(stage)
        assert set(card["peak_bytes"]) == set(card["plan"])
    assert report["cards"]["24"]["fits"] and report["smallest_card_gb"] is not None
    assert set(report["per_sample_bytes"]) == {"inverting", "optimizing", "sampling", "encoding"}
    assert {"paper_float16", "paper_bfloat16", "1024_float16", "64_frames_float16"} <= set(report["settings"])


# ----------------------------------------------------------------------------------------------
# Measurement (torch): the model against real CPU jobs of the tiny model
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "chunk"), [(64, 3), (96, 2)])
def test_predicted_peaks_match_real_cpu_jobs_within_10_percent(tiny_model_dir, size, chunk):
    from engine import AnimateConfig
    from engine.method.memory import LiveStorageTracker, measure_model, meta_replicas
    from tests.support.engine import astronaut_example, tiny_animator

    animator = tiny_animator(tiny_model_dir)
    modules = {"unet": animator.unet, "controlnet": animator.controlnet, "vae": animator.vae}
    latent = size // animator.vae_scale_factor
    model = measure_model(meta_replicas(modules), (latent, latent), checkpointing=False)

    # 2*chunk - 1 targets: sampling then runs frames [0..chunk-1] and a full chunk of targets, the
    # steady state the model predicts (frame 0's and the previous frame's references held)
    image, source, targets = astronaut_example(2 * chunk - 1)
    config = AnimateConfig(
        num_inference_steps=2,
        inversion_inner_steps=1,
        height=size,
        width=size,
        transition_frames=0,
        frame_batch_size=chunk,
    )
    peaks: dict[str, int] = {}
    tracker = LiveStorageTracker()
    state = {"stage": None, "base": 0}

    def on_progress(stage: str, fraction: float) -> None:
        if stage != state["stage"]:
            if state["stage"] is not None:
                peaks[state["stage"]] = tracker.peak - state["base"]
            state["stage"], state["base"] = stage, tracker.current
            tracker.reset_peak()

    with tracker:
        result = animator.animate(
            image, targets, "an astronaut", source_pose=source, config=config, on_progress=on_progress
        )
    peaks[state["stage"]] = tracker.peak - state["base"]
    assert result.memory_plan["source"] == "config"
    generated = 2 * chunk - 1
    for stage in ("inverting", "optimizing", "sampling", "encoding"):
        largest = balanced_chunks(stage_frames(stage, generated), chunk)[0]
        predicted = model.peak(stage, largest, steps=2)
        assert peaks[stage] == pytest.approx(predicted, rel=0.10), (stage, peaks[stage], predicted)


# ----------------------------------------------------------------------------------------------
# The engine's use of the plan on CUDA (no GPU needed: the device's numbers are stubbed)
# ----------------------------------------------------------------------------------------------
class _Config(dict):
    __getattr__ = dict.__getitem__


class _Module:
    def __init__(self, dtype, **config):
        self.config = _Config(config)
        self.dtype = dtype

    def parameters(self):
        return iter(())


def _sd15_like():
    import torch

    return {
        "unet": _Module(
            torch.float16,
            block_out_channels=(320, 640, 1280, 1280),
            cross_attention_dim=768,
            layers_per_block=2,
        ),
        "controlnet": _Module(torch.float16, conditioning_embedding_out_channels=(16, 32, 96, 256)),
        "vae": _Module(torch.float16, block_out_channels=(128, 256, 512, 512)),
    }


def test_free_memory_counts_pytorchs_reusable_cache(monkeypatch):
    import torch

    from engine.method import memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * GiB, 24 * GiB))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 6 * GiB)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 4 * GiB)
    assert memory.device_available_bytes(torch.device("cuda")) == 12 * GiB


def test_the_engine_plans_cuda_jobs_from_the_memory_model(monkeypatch):
    import torch

    from engine.method import batching, memory

    modules = _sd15_like()
    for free, chunk, ckpt in ((20 * GiB, 10, False), (9 * GiB, 7, False), (int(0.9 * GiB), 3, True)):
        monkeypatch.setattr(memory, "device_available_bytes", lambda device, free=free: free)
        plan = batching.plan_frame_batches(
            modules, torch.device("cuda"), (64, 64), 20, steps=50, checkpointing=False
        )
        assert plan.record["source"] == "memory model" and plan.record["fits"]
        assert plan.sizes["optimizing"] == chunk and plan.checkpointing is ckpt
        peaks = [s["peak_bytes"] for s in plan.record["stages"].values()]
        assert max(peaks) <= free  # weights are resident already: not in the free memory
    fixed = batching.plan_frame_batches(
        modules, torch.device("cuda"), (64, 64), 20, steps=50, checkpointing=False, frame_batch_size=5
    )
    assert (
        fixed.sizes == {"optimizing": 5, "sampling": 5, "encoding": 5} and fixed.record["source"] == "config"
    )


def test_the_committed_sd15_table_is_what_the_meta_device_measures():
    """engine/inputs/memory_sd15.json against a fresh meta-device measurement (two stages, 512²)."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from engine.method.memory import measure_stage
    from engine.weights.random_model import OPENPOSE_CONTROLNET_EMBEDDING, SD15_UNET_CONFIG, SD15_VAE_CONFIG

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(SD15_UNET_CONFIG)
        modules = {
            "unet": unet,
            "controlnet": ControlNetModel.from_unet(
                unet, conditioning_embedding_out_channels=OPENPOSE_CONTROLNET_EMBEDDING
            ),
            "vae": AutoencoderKL.from_config(SD15_VAE_CONFIG),
        }
    for m in modules.values():
        m.to(torch.float16).requires_grad_(False).eval()
    table = next(m for m in load_table() if tuple(m.latent_hw) == (64, 64))
    assert measure_stage(modules, "encoding", 2, (64, 64)) == table.stages["encoding"].peak(2)
    assert measure_stage(modules, "optimizing", 1, (64, 64)) == table.stages["optimizing"].peak(1)
