"""One-call benchmark of the full-size architecture: the paper setting on the real SD-1.5 + OpenPose
ControlNet shapes (random weights: speed and memory are the real model's), and the speed levers
measured side by side in the same process.

    python -m bench.gpu                                   # CUDA: 16 targets + 4 transition, 512², T=50, n=5
    python -m bench.gpu --model DIR                       # a model dir (random or real weights)
    .venv/bin/python -m bench.gpu --device cpu --size 128 --frames 2 --steps 2    # CPU smoke run
    python -m bench.gpu --dry-run                         # the plan only (settings, predicted evaluations)

Without ``--model`` the full-size random-weight model is built once into
``$TMPDIR/poseanimate-bench-sd15`` (``engine.weights.random_model``, ~35 s, ~2.8 GB float16).

Prints, and writes as ``gpu.json`` and ``gpu.md`` under ``--out``: seconds per job and per stage,
U-Net evaluations against ``engine.method.cost``, achieved TFLOP/s and the percentage of the GPU's dense
peak (FLOPs from ``bench/cost_model.py``), peak memory, parameters per component, and the levers:

  dtype            float16 vs bfloat16 job (CUDA)
  sdpa             torch.profiler over a short job: which scaled-dot-product kernels ran (fused for
                   MGDM's boolean masks or the math fallback?) and the top operators
  channels_last    U-Net+ControlNet forward, NCHW vs NHWC (same process, same inputs)
  uncond_batching  CFG's [uncond, cond] as one batch-2 call vs two batch-1 calls
  frame_batch      automatic chunk vs fixed chunks (CUDA)
  checkpointing    gradient checkpointing off vs on: time and peak memory (CUDA by default)
  offload          a 2-target job planned for just less memory than every weight resident needs (the
                   planner offloads weights between stages) vs the device's own plan: time, measured
                   vs predicted peak per stage, and the peak against the budget (CUDA)
  cache            a second job on the same avatar (inversion-cache hit) vs the first
  cold_start       from_pretrained from local disk, and the first (warm-up) job
  vae              VAE decode frames/s: plain vs slicing vs tiling
  early_stop       how often inversion early stopping fires at the default threshold (the main job
                   runs with it off, so its counts equal the cost model's upper bound)
  compile          torch.compile of U-Net and ControlNet: compile-inclusive and steady job (CUDA; last,
                   it changes the models in place; only when asked: ``--levers default,compile``)

Lever jobs run at reduced settings (``--lever-steps``, ``--lever-frames``) to fit the time budget;
ratios per evaluation do not depend on T.

A call cannot be wasted: ``gpu.json`` and ``gpu.md`` are written after the warm-up, after the main
job and after every lever, and ``--deadline-s`` (seconds from the start) stops whatever runs at that
moment (a SIGALRM), records where it stopped and writes the report. The one-call command for a
lent GPU machine without diffusers or network is in docs/performance.md ("The one GPU call").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import resource
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch

from engine import AnimateConfig, MemoryInversionCache, Pose, PoseAnimator, PoseSequence
from engine.method.cost import expected_evaluations

ROOT = Path(__file__).resolve().parent.parent

LEVERS = (
    "cold_start",
    "cache",
    "sdpa",
    "early_stop",
    "channels_last",
    "uncond_batching",
    "vae",
    "dtype",
    "frame_batch",
    "checkpointing",
    "offload",
    "compile",
)
CUDA_ONLY = {"dtype", "frame_batch", "offload", "compile"}
ASK_ONLY = {"compile"}  # changes the models in place and compiles for minutes: never by default
CPU_DEFAULT_SKIP = {"checkpointing"}  # CPU-capable, but costly there: ask with --levers
# Dense BF16/FP16 tensor-core peaks (no sparsity), vendors' datasheets; H200 = H100's compute.
PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
DEFAULT_MODEL_DIR = Path(tempfile.gettempdir()) / "poseanimate-bench-sd15"
STAGES = ("inverting", "optimizing", "sampling", "encoding")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: build the random sd15 one)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50, help="T (paper: 50)")
    parser.add_argument("--inner", type=int, default=5, help="n inversion iterations per step (paper: 5)")
    parser.add_argument("--frames", type=int, default=16, help="target poses M (paper: 16)")
    parser.add_argument("--transition", type=int, default=4, help="PATA transition frames t")
    parser.add_argument("--lever-steps", type=int, default=None, help="T of lever jobs (cuda 10, cpu 1)")
    parser.add_argument(
        "--lever-frames", type=int, default=None, help="targets of lever jobs (cuda: --frames, cpu 1)"
    )
    parser.add_argument(
        "--levers", default="default", help="comma list, 'all', 'none' or 'default' (all the device allows)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="repeats of component timings (best)")
    parser.add_argument(
        "--deadline-s",
        "--budget-s",
        dest="deadline_s",
        type=float,
        default=450.0,
        help="stop at this many seconds from the start, whatever runs, and write the report",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=Path("bench-gpu"), help="dir for gpu.json, gpu.md")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; load nothing")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if args.dtype is None:
        args.dtype = "float16" if cuda else "float32"
    if args.lever_steps is None:
        args.lever_steps = min(args.steps, 10 if cuda else 1)
    if args.lever_frames is None:
        args.lever_frames = args.frames if cuda else 1
    chosen: list[str] = []
    for word in (w.strip() for w in args.levers.split(",")):
        if word == "default":
            chosen += [
                lv for lv in LEVERS if lv not in ASK_ONLY and (cuda or lv not in CUDA_ONLY | CPU_DEFAULT_SKIP)
            ]
        elif word == "all":
            chosen += list(LEVERS)
        elif word and word != "none":
            if word not in LEVERS:
                parser.error(f"unknown lever {word}; choose from {', '.join(LEVERS)}")
            chosen.append(word)
    args.lever_list = [lv for lv in LEVERS if lv in chosen]  # the canonical order (compile last)
    return args


def main_config(args: argparse.Namespace) -> AnimateConfig:
    # early stopping off: the counts are then exactly the cost model's (its upper bound); the
    # early_stop lever measures how often it fires at the default threshold
    return AnimateConfig(
        num_inference_steps=args.steps,
        inversion_inner_steps=args.inner,
        height=args.size,
        width=args.size,
        transition_frames=args.transition,
        inversion_early_stop=0.0,
    )


def lever_config(args: argparse.Namespace) -> AnimateConfig:
    cuda = args.device.startswith("cuda")
    return main_config(args).replace(
        num_inference_steps=args.lever_steps, transition_frames=args.transition if cuda else 0
    )


def plan(args: argparse.Namespace) -> dict:
    cuda = args.device.startswith("cuda")
    skipped = {}
    for lv in LEVERS:
        if lv in CUDA_ONLY and not cuda:
            skipped[lv] = "needs CUDA"
        elif lv not in args.lever_list:
            skipped[lv] = (
                "only when asked (--levers default,compile)" if lv in ASK_ONLY else "not selected (--levers)"
            )
    return {
        "device": args.device,
        "dtype": args.dtype,
        "model": args.model or f"{DEFAULT_MODEL_DIR} (random sd15, built if missing)",
        "main": {
            "size": args.size,
            "steps": args.steps,
            "inner": args.inner,
            "targets": args.frames,
            "transition": args.transition,
            "expected_evals": expected_evaluations(main_config(args), args.frames),
        },
        "lever_job": {
            "steps": args.lever_steps,
            "targets": args.lever_frames,
            "transition": lever_config(args).transition_frames,
            "expected_evals": expected_evaluations(lever_config(args), args.lever_frames),
        },
        "levers": [lv for lv in args.lever_list if lv not in skipped],
        "skipped": skipped,
        "deadline_s": args.deadline_s,
    }


# ----------------------------------------------------------------------------------------------
# Measurement helpers
# ----------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _inputs(targets: int):
    from PIL import Image

    image = Image.open(ROOT / "examples" / "astronaut.jpg")
    image.load()
    source = Pose.from_json((ROOT / "examples" / "astronaut_pose.json").read_text())
    base = PoseSequence.from_json((ROOT / "examples" / "raise_arms.json").read_text())
    return image, source, PoseSequence([base[i % len(base)] for i in range(targets)])


def run_job(animator: PoseAnimator, targets: int, config: AnimateConfig) -> dict:
    image, source, poses = _inputs(targets)
    device = animator.device
    _reset_peak(device)
    cuda = device.type == "cuda"
    resident = int(torch.cuda.memory_allocated(device)) if cuda else 0
    stage_peaks: dict[str, int] = {}
    current = {"stage": None}

    def on_progress(stage: str, fraction: float) -> None:
        # per-stage peak above what was resident before the job (the weights): what the memory
        # model predicts (engine.method.memory; the plan is in result.memory_plan)
        if cuda and stage != current["stage"]:
            if current["stage"] is not None:
                stage_peaks[current["stage"]] = int(torch.cuda.max_memory_allocated(device)) - resident
            torch.cuda.reset_peak_memory_stats(device)
            current["stage"] = stage

    started = time.perf_counter()
    result = animator.animate(
        image,
        poses,
        "an astronaut",
        source_pose=source,
        config=config,
        keep_frames=False,
        on_progress=on_progress,
    )
    _sync(device)
    seconds = time.perf_counter() - started
    if cuda and current["stage"] is not None:
        stage_peaks[current["stage"]] = int(torch.cuda.max_memory_allocated(device)) - resident
    expected = expected_evaluations(config, targets, cache_hit=result.cache_hit)
    losses = result.inversion_losses
    return {
        "seconds": round(seconds, 3),
        "stages": {k: round(v, 3) for k, v in result.timings.items()},
        "evals": result.unet_evals,
        "expected_evals": expected,
        "evals_match": all(result.unet_evals.get(k, 0) == v for k, v in expected.items()),
        "peak_memory_bytes": _peak(device) if not cuda else resident + max(stage_peaks.values(), default=0),
        "stage_peak_bytes": stage_peaks,
        "memory_plan": result.memory_plan,
        "cache_hit": result.cache_hit,
        "frame_batch_size": result.frame_batch_size,
        "oom_backoffs": result.oom_backoffs,
        "frames_out": result.num_frames,
        "early_stopped_steps": sum(1 for x in losses if x < config.inversion_early_stop),
        "inversion_steps": len(losses),
    }


def _best_time(fn, repeat: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeat):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def _denoiser_inputs(animator: PoseAnimator, size: int, batch: int):
    from engine.method.ddim import DDIMSchedule
    from engine.method.denoiser import ControlledDenoiser

    gen = torch.Generator().manual_seed(0)
    h = size // animator.vae_scale_factor
    dev = animator.device
    z = torch.randn(batch, 4, h, h, generator=gen).to(dev)
    text = torch.randn(batch, 77, animator.unet.config.cross_attention_dim, generator=gen).to(dev)
    pose = torch.rand(batch, 3, size, size, generator=gen).to(dev)
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, 50)
    return ControlledDenoiser(animator.unet, animator.controlnet, schedule), z, text, pose


def count_job_flops(size: int, job: dict) -> float | None:
    from bench import cost_model

    SD15_UNET, SD15_VAE, count_flops, predict = (
        cost_model.SD15_UNET,
        cost_model.SD15_VAE,
        cost_model.count_flops,
        cost_model.predict,
    )
    flops = count_flops(size, SD15_UNET, SD15_VAE)
    return predict(flops, job["evals"], job["frames_out"])["total_flops"]


def gpu_peak(device: torch.device) -> tuple[str, float | None]:
    if device.type != "cuda":
        return platform.processor() or platform.machine(), None
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAKS.items():
        if key in name:
            return name, peak
    return name, None


# ----------------------------------------------------------------------------------------------
# Levers
# ----------------------------------------------------------------------------------------------
def lever_sdpa(animator: PoseAnimator, args, report: dict) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if animator.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    config = lever_config(args).replace(inversion_early_stop=AnimateConfig().inversion_early_stop)
    with profile(activities=activities) as prof:
        job = run_job(animator, args.lever_frames, config)
    events = prof.key_averages()
    backends = sdpa_backends(animator, args.size)
    sdpa = Counter()
    kernels = Counter()
    for ev in events:
        if ev.key.startswith("aten::_scaled_dot_product") or ev.key.startswith("aten::_efficient_attention"):
            sdpa[ev.key] += ev.count
        low = ev.key.lower()
        if animator.device.type == "cuda" and any(
            s in low for s in ("flash", "fmha", "efficient_attention", "cudnn_attn", "softmax")
        ):
            kernels[ev.key[:90]] += ev.count
    sort = self_time_attribute(animator.device)
    total = sum(_self_time(ev, sort) for ev in events) or 1.0
    top = []
    for ev in sorted(events, key=lambda e: _self_time(e, sort), reverse=True)[:15]:
        top.append(
            {
                "op": ev.key[:80],
                "self_ms": round(_self_time(ev, sort) / 1e3, 1),
                "share": round(_self_time(ev, sort) / total, 3),
                "calls": ev.count,
            }
        )
    return {
        "job": job,
        "note": "profiled job at the default early-stop threshold",
        "sdpa_ops": dict(sdpa),
        "sdpa_backend_ran": backend_of_ops(sdpa),
        "sdpa_choice": backends,
        "attention_kernels": dict(kernels.most_common(12)),
        "top_ops": top,
        "sorted_by": sort,
    }


# aten op -> the SDPA backend it is (what the profiler saw run, not what we hoped for)
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "FLASH_ATTENTION",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "FLASH_ATTENTION",
    "aten::_scaled_dot_product_efficient_attention": "EFFICIENT_ATTENTION",
    "aten::_efficient_attention_forward": "EFFICIENT_ATTENTION",
    "aten::_scaled_dot_product_cudnn_attention": "CUDNN_ATTENTION",
    "aten::_scaled_dot_product_attention_math": "MATH",
    "aten::_scaled_dot_product_fused_attention_overrideable": "OVERRIDEABLE",
}


def backend_of_ops(ops: dict[str, int]) -> dict[str, int]:
    """{backend: calls} from the profiled aten ops (the kernels that really ran)."""
    out: Counter[str] = Counter()
    for op, calls in ops.items():
        if op in SDPA_OPS:
            out[SDPA_OPS[op]] += calls
    return dict(out)


def self_time_attribute(device: torch.device) -> str:
    """``self_device_time_total`` (torch >= 2.4) on CUDA, ``self_cpu_time_total`` on the CPU."""
    return "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"


def _self_time(event, attribute: str) -> float:
    value = getattr(event, attribute, None)
    if value is None and attribute == "self_device_time_total":  # torch < 2.4
        value = getattr(event, "self_cuda_time_total", 0.0)
    return float(value or 0.0)


def sdpa_backends(animator: PoseAnimator, size: int) -> dict[str, dict[str, str]]:
    """The backend PyTorch's dispatcher picks (``torch._fused_sdp_choice``) for the calls DCAM and
    MGDM make at every up-block level of this size: plain, and with MGDM's boolean key mask."""
    from torch.nn.attention import SDPBackend

    from engine.method.attention import token_grids

    h = size // animator.vae_scale_factor
    device, dtype = animator.device, animator.dtype
    heads = animator.unet.config.attention_head_dim
    heads = heads[-1] if isinstance(heads, (list, tuple)) else heads
    out: dict[str, dict[str, str]] = {}
    channels = list(animator.unet.config.block_out_channels)
    for level, (tokens, _) in enumerate(sorted(token_grids((h, h)).items(), reverse=True)[: len(channels)]):
        d = channels[level] // heads
        q = torch.zeros(6, heads, tokens, d, device=device, dtype=dtype)
        mask = torch.ones(6, 1, 1, tokens, device=device, dtype=torch.bool).expand(6, heads, tokens, tokens)
        choice = {}
        for label, m in (("plain", None), ("masked", mask)):
            try:
                choice[label] = SDPBackend(torch._fused_sdp_choice(q, q, q, m)).name
            except Exception as exc:  # a private API: report, do not fail the lever
                choice[label] = f"unknown ({type(exc).__name__})"
        out[f"{tokens} tokens, head dim {d}"] = choice
    return out


def lever_channels_last(animator: PoseAnimator, args, report: dict) -> dict:
    batch = 2 * max(1, min(args.lever_frames + 1, 8))  # a sampling chunk: [uncond, cond] per frame
    denoiser, z, text, pose = _denoiser_inputs(animator, args.size, batch)
    with torch.no_grad():
        denoiser(z, 10, text, pose)  # warm-up
        plain = _best_time(lambda: denoiser(z, 10, text, pose), args.repeat, animator.device)
        for m in (animator.unet, animator.controlnet):
            m.to(memory_format=torch.channels_last)
        try:
            denoiser(z, 10, text, pose)
            nhwc = _best_time(lambda: denoiser(z, 10, text, pose), args.repeat, animator.device)
        finally:
            for m in (animator.unet, animator.controlnet):
                m.to(memory_format=torch.contiguous_format)
    return {
        "batch": batch,
        "a_nchw_s": round(plain, 4),
        "b_nhwc_s": round(nhwc, 4),
        "ratio_a_over_b": round(plain / nhwc, 3),
    }


def lever_uncond_batching(animator: PoseAnimator, args, report: dict) -> dict:
    denoiser, z, text, pose = _denoiser_inputs(animator, args.size, 2)
    with torch.no_grad():
        denoiser(z, 10, text, pose)
        one = _best_time(lambda: denoiser(z, 10, text, pose), args.repeat, animator.device)
        two = _best_time(
            lambda: (denoiser(z[:1], 10, text[:1], pose[:1]), denoiser(z[1:], 10, text[1:], pose[1:])),
            args.repeat,
            animator.device,
        )
    return {
        "a_two_batch1_s": round(two, 4),
        "b_one_batch2_s": round(one, 4),
        "ratio_a_over_b": round(two / one, 3),
    }


def lever_vae(animator: PoseAnimator, args, report: dict) -> dict:
    frames = max(2, min(args.lever_frames + 1, 8))
    h = args.size // animator.vae_scale_factor
    latents = torch.randn(frames, 4, h, h, generator=torch.Generator().manual_seed(0)).to(animator.device)
    vae = animator.vae
    out = {"frames": frames}
    variants = {
        "plain": (vae.disable_slicing, vae.disable_tiling),
        "slicing": (vae.enable_slicing, vae.disable_tiling),
        "tiling": (vae.disable_slicing, vae.enable_tiling),
    }
    try:
        with torch.no_grad():
            for name, (slicing, tiling) in variants.items():
                slicing()
                tiling()
                animator.decode_latents(latents[:1])
                _reset_peak(animator.device)
                s = _best_time(lambda: animator.decode_latents(latents), args.repeat, animator.device)
                out[name] = {"seconds": round(s, 4), "frames_per_s": round(frames / s, 2)}
                if animator.device.type == "cuda":
                    out[name]["peak_memory_bytes"] = _peak(animator.device)
    finally:
        vae.disable_slicing()
        vae.disable_tiling()
    out["note"] = (
        "tiling only splits images larger than the VAE's sample_size (512 px)"
        if args.size <= vae.config.sample_size
        else ""
    )
    return out


def lever_early_stop(animator: PoseAnimator, args, report: dict) -> dict:
    job = report["levers"].get("sdpa", {}).get("job")
    threshold = AnimateConfig().inversion_early_stop
    if job is None:
        config = lever_config(args).replace(inversion_early_stop=threshold)
        job = run_job(animator, args.lever_frames, config)
    saved = job["expected_evals"]["inverting_backward"] - job["evals"].get("inverting_backward", 0)
    return {
        "threshold": threshold,
        "steps_stopped_early": job["early_stopped_steps"],
        "inversion_steps": job["inversion_steps"],
        "backward_evals_saved": saved,
        "note": "random weights: the loss, so this count, is not the real model's",
    }


def lever_cache(animator: PoseAnimator, args, report: dict) -> dict:
    hit = run_job(animator, args.frames, main_config(args))  # the main job populated the cache
    miss = report["main"]
    return {
        "a_miss_s": miss["seconds"],
        "b_hit_s": hit["seconds"],
        "ratio_a_over_b": round(miss["seconds"] / hit["seconds"], 3),
        "hit": hit,
    }


def lever_dtype(animator: PoseAnimator, args, report: dict) -> dict:
    config = lever_config(args)
    cache, animator.inversion_cache = animator.inversion_cache, None
    try:
        a = run_job(animator, args.lever_frames, config)
    finally:
        animator.inversion_cache = cache
    other = "bfloat16" if args.dtype != "bfloat16" else "float16"
    second = load_animator(report["model_dir"], args.device, other)
    run_job(second, 1, config.replace(num_inference_steps=1))
    b = run_job(second, args.lever_frames, config)
    del second
    gc.collect()
    if animator.device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "a": args.dtype,
        "b": other,
        "a_s": a["seconds"],
        "b_s": b["seconds"],
        "ratio_a_over_b": round(a["seconds"] / b["seconds"], 3),
        "a_peak_memory_bytes": a["peak_memory_bytes"],
        "b_peak_memory_bytes": b["peak_memory_bytes"],
    }


@contextlib.contextmanager
def _no_cache(animator: PoseAnimator):
    cache, animator.inversion_cache = animator.inversion_cache, None
    try:
        yield
    finally:
        animator.inversion_cache = cache


def lever_frame_batch(animator: PoseAnimator, args, report: dict) -> dict:
    config = lever_config(args)
    out = {}
    with _no_cache(animator):
        for label, size in (("auto", None), ("fixed_4", 4), ("fixed_1", 1)):
            job = run_job(animator, args.lever_frames, config.replace(frame_batch_size=size))
            out[label] = {
                "seconds": job["seconds"],
                "chunk": job["frame_batch_size"],
                "peak_memory_bytes": job["peak_memory_bytes"],
                "stages": job["stages"],
            }
    return out


def lever_checkpointing(animator: PoseAnimator, args, report: dict) -> dict:
    config = lever_config(args)
    with _no_cache(animator):
        off = run_job(animator, args.lever_frames, config)
        on = run_job(animator, args.lever_frames, config.replace(gradient_checkpointing=True))
    return {
        "a_off_s": off["seconds"],
        "b_on_s": on["seconds"],
        "ratio_b_over_a": round(on["seconds"] / off["seconds"], 3),
        "a_peak_memory_bytes": off["peak_memory_bytes"],
        "b_peak_memory_bytes": on["peak_memory_bytes"],
        "note": "" if animator.device.type == "cuda" else "CPU peak is the process high-water mark",
    }


def least_resident_budget(animator: PoseAnimator, config: AnimateConfig, targets: int) -> int:
    """The least memory (weights included) a job fits with every weight resident, from the model."""
    from engine.inputs.memoryplan import plan_job
    from engine.method import memory

    modules = {"unet": animator.unet, "controlnet": animator.controlnet}
    modules |= {"vae": animator.vae, "text_encoder": animator.text_encoder}
    scale = animator.vae_scale_factor
    model = memory.model_for(modules, (config.height // scale, config.width // scale))
    generated, steps = targets + config.transition_frames, config.num_inference_steps
    low, high = model.weights, 64 * 2**30
    while high - low > 1:
        mid = (low + high) // 2
        fits = plan_job(model, generated, mid, steps=steps, allow_offload=False).fits
        low, high = (low, mid) if fits else (mid, high)
    return low


def lever_offload(animator: PoseAnimator, args, report: dict) -> dict:
    config, targets = lever_config(args), 2
    budget = least_resident_budget(animator, config, targets)
    with _no_cache(animator):
        plain = run_job(animator, targets, config)
        animator.memory_budget_bytes = budget
        try:
            offloaded = run_job(animator, targets, config)
        finally:
            animator.memory_budget_bytes = None
    plan = offloaded["memory_plan"]
    predicted = {k: v.get("peak_bytes") for k, v in plan.get("stages", {}).items()}
    resident = int(torch.cuda.memory_allocated(animator.device)) if animator.device.type == "cuda" else 0
    return {
        "budget_bytes": budget,
        "offload": plan.get("offload"),
        "a_device_plan_s": plain["seconds"],
        "b_offload_s": offloaded["seconds"],
        "ratio_b_over_a": round(offloaded["seconds"] / plain["seconds"], 3),
        # the budget counts the weights: predicted peaks do too; measured ones are above the weights
        "predicted_peak_bytes": predicted,
        "measured_peak_above_weights_bytes": offloaded["stage_peak_bytes"],
        "peak_bytes": offloaded["peak_memory_bytes"],
        "within_budget": offloaded["peak_memory_bytes"] <= budget,
        "weights_resident_after_bytes": resident,
        "oom_backoffs": offloaded["oom_backoffs"],
        "note": "" if animator.device.type == "cuda" else "CPU: moves are no-ops, peak is the process's",
    }


def lever_compile(animator: PoseAnimator, args, report: dict) -> dict:
    config = lever_config(args)
    with _no_cache(animator):
        eager = run_job(animator, args.lever_frames, config)
        from torch._dynamo.utils import counters

        animator.compile()  # U-Net and ControlNet, a dynamo cache each
        first = run_job(animator, args.lever_frames, config)
        steady = run_job(animator, args.lever_frames, config)
    return {
        "graphs": counters["stats"]["unique_graphs"],
        "frames_not_compiled": counters["frames"]["total"] - counters["frames"]["ok"],
        "a_eager_s": eager["seconds"],
        "first_with_compile_s": first["seconds"],
        "b_steady_s": steady["seconds"],
        "ratio_a_over_b": round(eager["seconds"] / steady["seconds"], 3),
    }


def lever_cold_start(animator: PoseAnimator, args, report: dict) -> dict:
    return {
        "from_pretrained_s": report["load_seconds"],
        "first_job_s": report["warmup"]["seconds"],
        "note": "local disk; the page cache may hold the files (a just-built model is in it)",
    }


LEVER_FUNCS = {
    "cold_start": lever_cold_start,
    "cache": lever_cache,
    "sdpa": lever_sdpa,
    "early_stop": lever_early_stop,
    "channels_last": lever_channels_last,
    "uncond_batching": lever_uncond_batching,
    "vae": lever_vae,
    "dtype": lever_dtype,
    "frame_batch": lever_frame_batch,
    "checkpointing": lever_checkpointing,
    "offload": lever_offload,
    "compile": lever_compile,
}


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def _mib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**20:,.0f} MiB"


def lever_rows(report: dict) -> list[str]:
    rows = []
    lv = report["levers"]
    if "cold_start" in lv:
        c = lv["cold_start"]
        rows.append(
            f"| cold start | from_pretrained {c['from_pretrained_s']:.1f} s | first (warm-up) job {c['first_job_s']:.1f} s | | {c['note']} |"
        )
    if "cache" in lv:
        c = lv["cache"]
        rows.append(
            f"| inversion cache: miss (A) vs hit (B), job s | {c['a_miss_s']:.2f} | {c['b_hit_s']:.2f} | {c['ratio_a_over_b']}x faster | {c['hit']['evals'].get('inverting_forward', 0)} inversion evals on the hit |"
        )
    if "early_stop" in lv:
        e = lv["early_stop"]
        rows.append(
            f"| inversion early stop at {e['threshold']:g} | {e['steps_stopped_early']} of {e['inversion_steps']} steps stopped early | {e['backward_evals_saved']} backward evals saved | | {e['note']} |"
        )
    if "sdpa" in lv:
        s = lv["sdpa"]
        ops = ", ".join(f"{k.removeprefix('aten::')} x{v}" for k, v in s["sdpa_ops"].items()) or "none seen"
        ran = ", ".join(f"{k} x{v}" for k, v in s.get("sdpa_backend_ran", {}).items()) or "none seen"
        rows.append(
            f"| SDPA backend that ran | {ran} | {ops} | | profiled job; kernels: {', '.join(list(s['attention_kernels'])[:4]) or 'n/a'} |"
        )
        for level, choice in s.get("sdpa_choice", {}).items():
            rows.append(
                f"| SDPA choice at {level} | plain: {choice['plain']} | MGDM mask: {choice['masked']} | | torch._fused_sdp_choice |"
            )
    if "channels_last" in lv:
        c = lv["channels_last"]
        rows.append(
            f"| U-Net+ControlNet fwd batch {c['batch']}: NCHW (A) vs channels_last (B), s | {c['a_nchw_s']:.3f} | {c['b_nhwc_s']:.3f} | {c['ratio_a_over_b']}x | >1 = channels_last faster |"
        )
    if "uncond_batching" in lv:
        c = lv["uncond_batching"]
        rows.append(
            f"| CFG: two batch-1 calls (A) vs one batch-2 call (B), s | {c['a_two_batch1_s']:.3f} | {c['b_one_batch2_s']:.3f} | {c['ratio_a_over_b']}x | >1 = batching faster |"
        )
    if "vae" in lv:
        v = lv["vae"]
        rows.append(
            f"| VAE decode {v['frames']} frames, frames/s: plain (A) vs slicing (B) | {v['plain']['frames_per_s']} | {v['slicing']['frames_per_s']} | {v['slicing']['frames_per_s'] / v['plain']['frames_per_s']:.2f}x | tiling: {v['tiling']['frames_per_s']} frames/s; {v['note']} |"
        )
    if "dtype" in lv:
        d = lv["dtype"]
        rows.append(
            f"| lever job: {d['a']} (A) vs {d['b']} (B), s | {d['a_s']:.2f} | {d['b_s']:.2f} | {d['ratio_a_over_b']}x | peak {_mib(d['a_peak_memory_bytes'])} vs {_mib(d['b_peak_memory_bytes'])} |"
        )
    if "frame_batch" in lv:
        f = lv["frame_batch"]
        rows.append(
            f"| frame chunk: auto ({f['auto']['chunk']}) vs fixed 4 vs fixed 1, job s | {f['auto']['seconds']:.2f} | {f['fixed_4']['seconds']:.2f} | fixed 1: {f['fixed_1']['seconds']:.2f} | peak {_mib(f['auto']['peak_memory_bytes'])} / {_mib(f['fixed_4']['peak_memory_bytes'])} / {_mib(f['fixed_1']['peak_memory_bytes'])} |"
        )
    if "checkpointing" in lv:
        c = lv["checkpointing"]
        rows.append(
            f"| gradient checkpointing off (A) vs on (B), job s | {c['a_off_s']:.2f} | {c['b_on_s']:.2f} | {c['ratio_b_over_a']}x the time | peak {_mib(c['a_peak_memory_bytes'])} vs {_mib(c['b_peak_memory_bytes'])} {c['note']} |"
        )
    if "compile" in lv:
        c = lv["compile"]
        rows.append(
            f"| torch.compile: eager (A) vs compiled steady (B), job s | {c['a_eager_s']:.2f} | {c['b_steady_s']:.2f} | {c['ratio_a_over_b']}x | first compiled job {c['first_with_compile_s']:.1f} s |"
        )
    for name, why in report["plan"]["skipped"].items():
        rows.append(f"| {name} | skipped: {why} | | | |")
    for name, why in report.get("lever_errors", {}).items():
        rows.append(f"| {name} | failed: {why} | | | |")
    return rows


def markdown(report: dict) -> str:
    """The report as Markdown; whatever parts exist (a run cut at its deadline has fewer)."""
    p = report["plan"]["main"]
    lines = [
        f"# bench/gpu.py — {report.get('device_name', '?')} ({report['device']}, {report['dtype']}), {report['date']}",
        "",
    ]
    if report.get("stopped"):
        lines += [f"**Stopped early: {report['stopped']}.** What ran is below.", ""]
    lines += [
        f"Model: {report.get('model_dir', '?')}{' (RANDOM WEIGHTS)' if report.get('random_weights') else ''}. "
        f"Job: {p['targets']} targets + {p['transition']} transition frames, {p['size']}², T={p['steps']}, "
        f"n={p['inner']}, early stop off; threads {report.get('threads')}; torch {report.get('torch')}; "
        f"diffusers {report.get('packages', {}).get('diffusers', {}).get('version', '?')}.",
        "",
    ]
    if report.get("parameters"):
        lines += [
            "| component | parameters |",
            "|---|---:|",
            *(f"| {k} | {v / 1e6:,.1f} M |" for k, v in report["parameters"].items()),
            "",
        ]
    m = report.get("main")
    if m is not None:
        lines += [
            f"Main job: frame chunk {m['frame_batch_size']} (out-of-memory back-offs: {m.get('oom_backoffs', 0)}).",
            "",
            "| stage | seconds | U-Net fwd | expected | U-Net bwd | expected |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        ev, ex = m["evals"], m["expected_evals"]
        for stage in STAGES:
            lines.append(
                f"| {stage} | {m['stages'].get(stage, 0):.2f} | {ev.get(stage + '_forward', 0)} | {ex.get(stage + '_forward', 0)} "
                f"| {ev.get(stage + '_backward', 0)} | {ex.get(stage + '_backward', 0)} |"
            )
        lines.append(
            f"| **job** | **{m['seconds']:.2f}** | {ev['total_forward']} | {ex['total_forward']} | {ev['total_backward']} | {ex['total_backward']} |"
        )
        lines += [
            "",
            f"evaluations equal engine.method.cost's prediction: **{'yes' if m['evals_match'] else 'NO'}**",
            f"job FLOPs (cost model, actual counts): {report['job_pflop']:.3f} PFLOP; achieved {report['achieved_tflops']:.2f} TFLOP/s"
            + (
                f" = **{report['percent_of_peak']:.1f} %** of {report['peak_tflops']:.0f} TFLOP/s peak"
                if report.get("peak_tflops")
                else " (no peak known for this device)"
            ),
            f"peak memory: {_mib(m['peak_memory_bytes'])} ({'CUDA allocated' if report['device'].startswith('cuda') else 'process max RSS'})",
        ]
        planned = m.get("memory_plan", {}).get("stages", {})
        if m.get("stage_peak_bytes"):
            lines += [
                "",
                "| stage | planned chunk | predicted peak above weights | measured (max_memory_allocated) |",
                "|---|---:|---:|---:|",
            ]
            for stage, measured in m["stage_peak_bytes"].items():
                p_stage = planned.get(stage, {})
                lines.append(
                    f"| {stage} | {p_stage.get('chunk', '')} | {_mib(p_stage.get('peak_bytes'))} | {_mib(measured)} |"
                )
    else:
        lines.append("Main job: did not finish.")
    if "load_seconds" in report:
        warm = report.get("warmup", {}).get("seconds")
        lines.append(
            f"load (from_pretrained): {report['load_seconds']:.1f} s; warm-up job "
            f"{'n/a' if warm is None else f'{warm:.1f} s'}; wall so far {report.get('wall_seconds', 0):.0f} s"
        )
    lines += [
        "",
        f"Levers (lever jobs: {report['plan']['lever_job']['targets']} targets + {report['plan']['lever_job']['transition']} transition, T={report['plan']['lever_job']['steps']}):",
        "",
        "| lever | A | B | ratio | note |",
        "|---|---|---|---|---|",
        *lever_rows(report),
    ]
    if "sdpa" in report["levers"]:
        s = report["levers"]["sdpa"]
        lines += [
            "",
            f"Top operators of the profiled job (by {s['sorted_by']}):",
            "",
            "| op | self ms | share | calls |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| `{t['op']}` | {t['self_ms']:,.1f} | {t['share']:.1%} | {t['calls']} |" for t in s["top_ops"]
        ]
    return "\n".join(lines) + "\n"


def load_animator(model_dir: str | Path, device: str, dtype: str) -> PoseAnimator:
    """The benchmark's animator: the model from local disk, no detector or segmenter (the benchmark
    gives the source pose)."""
    return PoseAnimator.from_pretrained(
        model_dir, None, device=device, dtype=getattr(torch, dtype), pose_detector="none", segmenter="none"
    )


def ensure_model(args: argparse.Namespace) -> tuple[Path, float | None]:
    if args.model:
        return Path(args.model), None
    from engine.inputs.models import RANDOM_WEIGHTS_MARKER
    from engine.weights.random_model import build_random_model

    target = DEFAULT_MODEL_DIR
    if (target / RANDOM_WEIGHTS_MARKER).is_file() and (target / "controlnet").is_dir():
        return target, None
    started = time.perf_counter()
    build_random_model(target)
    return target, round(time.perf_counter() - started, 1)


class DeadlineReached(BaseException):
    """Raised (from SIGALRM) in whatever runs when ``--deadline-s`` passes. A BaseException, so
    ``except Exception`` blocks let it through; a library that still wraps it (diffusers' lazy
    imports do) is recognised by ``deadline_passed()``."""


_DEADLINE = {"fired": False}


def deadline_passed() -> bool:
    return _DEADLINE["fired"]


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise ``DeadlineReached`` in the main thread ``seconds`` from now (disarmed on exit)."""

    def fire(signum, frame):
        _DEADLINE["fired"] = True
        raise DeadlineReached(f"deadline of {seconds:.0f} s reached")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_report(report: dict, out: Path) -> str:
    """gpu.json and gpu.md, each replaced atomically (a reader never sees half a file)."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    for name, body in (("gpu.json", json.dumps(report, indent=2, default=str)), ("gpu.md", text)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(body)
        os.replace(tmp, out / name)
    return text


def package_versions() -> dict[str, dict[str, str]]:
    """Where diffusers & co. came from (the wheel route puts diffusers under its --target)."""
    out = {}
    for name in ("diffusers", "transformers", "huggingface_hub", "safetensors"):
        try:
            module = importlib.import_module(name)
            out[name] = {
                "version": importlib.metadata.version(name),
                "path": str(Path(module.__file__).parent),
            }
        except Exception as exc:
            out[name] = {"version": "missing", "path": f"{type(exc).__name__}: {exc}"[:200]}
    return out


def run_levers(animator: PoseAnimator, args, report: dict, out: Path, wall: float) -> None:
    for lever in report["plan"]["levers"]:
        t = time.perf_counter()
        try:
            report["levers"][lever] = LEVER_FUNCS[lever](animator, args, report)
        except DeadlineReached:
            report["lever_errors"][lever] = f"stopped at the deadline ({args.deadline_s:.0f} s)"
            raise
        except Exception as exc:  # a lever failing must not lose the rest of the report
            if deadline_passed():  # the deadline's exception, wrapped by a library
                report["lever_errors"][lever] = f"stopped at the deadline ({args.deadline_s:.0f} s)"
                raise DeadlineReached(f"deadline of {args.deadline_s:.0f} s reached") from exc
            report["lever_errors"][lever] = f"{type(exc).__name__}: {str(exc)[:200]}"
        print(f"  {lever}: {time.perf_counter() - t:.1f} s", flush=True)
        report["wall_seconds"] = round(time.perf_counter() - wall, 1)
        write_report(report, out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    the_plan = plan(args)
    if args.dry_run:
        print(json.dumps(the_plan, indent=2))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    report: dict = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "device": args.device,
        "dtype": args.dtype,
        "torch": torch.__version__,
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
        "plan": the_plan,
        "levers": {},
        "lever_errors": {},
        "stopped": None,
    }
    report["packages"] = package_versions()
    write_report(report, args.out)  # something is there whatever happens next
    try:
        with deadline(args.deadline_s):
            measure(args, report, wall)
    except (DeadlineReached, Exception) as exc:
        if not deadline_passed():
            report["stopped"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
            write_report(report, args.out)
            raise
        report["stopped"] = f"deadline of {args.deadline_s:.0f} s reached"
        for lever in report["plan"]["levers"]:
            if lever not in report["levers"] and lever not in report["lever_errors"]:
                report["plan"]["skipped"][lever] = f"deadline ({args.deadline_s:.0f} s) reached first"
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    text = write_report(report, args.out)
    print(text)
    main_job = report.get("main")
    return 0 if main_job is not None and main_job["evals_match"] else 1


def measure(args: argparse.Namespace, report: dict, wall: float) -> None:
    """Everything that runs under the deadline; fills ``report`` and writes it after each part."""
    model_dir, build_seconds = ensure_model(args)
    started = time.perf_counter()
    animator = load_animator(model_dir, args.device, args.dtype)
    load_seconds = time.perf_counter() - started
    animator.inversion_cache = MemoryInversionCache()
    device = animator.device
    name, peak = gpu_peak(device)
    report.update(
        {
            "device": str(device),
            "device_name": name,
            "threads": torch.get_num_threads(),
            "model_dir": str(model_dir),
            "random_weights": bool(animator.model_info.get("random_weights")),
            "build_seconds": build_seconds,
            "load_seconds": round(load_seconds, 2),
            "parameters": {
                k: sum(p.numel() for p in getattr(animator, k).parameters())
                for k in ("unet", "controlnet", "vae", "text_encoder")
            },
        }
    )
    write_report(report, args.out)
    warm = main_config(args).replace(num_inference_steps=1, inversion_inner_steps=1, transition_frames=0)
    if device.type == "cpu":
        warm = warm.replace(height=64, width=64)
    with _no_cache(animator):
        report["warmup"] = run_job(animator, 1, warm)
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    write_report(report, args.out)
    print(
        f"loaded in {load_seconds:.1f} s, warm-up job {report['warmup']['seconds']:.1f} s; main job ...",
        flush=True,
    )
    report["main"] = run_job(animator, args.frames, main_config(args))
    flops = count_job_flops(args.size, report["main"])
    report["job_pflop"] = (flops or 0) / 1e15
    report["achieved_tflops"] = (flops or 0) / report["main"]["seconds"] / 1e12
    report["peak_tflops"] = None if peak is None else peak / 1e12
    report["percent_of_peak"] = (
        None if peak is None else 100 * report["achieved_tflops"] / report["peak_tflops"]
    )
    report["wall_seconds"] = round(time.perf_counter() - wall, 1)
    write_report(report, args.out)
    print(
        f"main job {report['main']['seconds']:.1f} s; levers: {', '.join(report['plan']['levers'])}",
        flush=True,
    )
    run_levers(animator, args, report, args.out, wall)


if __name__ == "__main__":
    raise SystemExit(main())
