"""Engine benchmark: per-stage seconds, U-Net evaluations and peak memory, and side-by-side ratios
of the speed levers, measured in ONE process on the same inputs.

    .venv/bin/python -m bench.engine_variants                       # tiny random model, CPU
    .venv/bin/python -m bench.engine_variants --json                # machine-readable
    .venv/bin/python -m bench.engine_variants --model DIR --device cuda --dtype float16 --size 512 --steps 50

Comparisons (each pair run back to back, best of ``--repeat``):
  batched vs frame-by-frame   the pose-aware embedding optimisation, frame_batch_size=F vs 1
  cache hit vs miss           a second job on the same avatar skips the source-side inversion
  checkpointing on vs off     gradient checkpointing in the optimisation passes (time and memory)
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from engine import AnimateConfig, MemoryInversionCache, Pose, PoseAnimator, PoseSequence
from engine.method.cost import expected_evaluations
from engine.weights.loading import resolve_model

ROOT = Path(__file__).resolve().parent.parent


def _peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process high-water mark (bytes)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _inputs(frames: int):
    from PIL import Image

    image = Image.open(ROOT / "examples" / "astronaut.jpg")
    image.load()
    source = Pose.from_json((ROOT / "examples" / "astronaut_pose.json").read_text())
    base = PoseSequence.from_json((ROOT / "examples" / "raise_arms.json").read_text())
    targets = PoseSequence([base[i % len(base)] for i in range(frames)])
    return image, source, targets


def _job(animator: PoseAnimator, inputs, config: AnimateConfig) -> dict:
    image, source, targets = inputs
    device = animator.device
    _reset_peak(device)
    started = time.perf_counter()
    result = animator.animate(
        image, targets, "an astronaut", source_pose=source, config=config, keep_frames=False
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {
        "seconds": time.perf_counter() - started,
        "stages": {k: round(v, 4) for k, v in result.timings.items()},
        "unet_evals": result.unet_evals,
        "peak_memory_bytes": _peak_memory(device),
        "cache_hit": result.cache_hit,
        "frame_batch_size": result.frame_batch_size,
    }


def _best(runs: list[dict], key) -> dict:
    return min(runs, key=key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="'tiny' (random weights), a local dir or a hub id")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16, help="target poses M (transition frames: 0)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the best is reported")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    tiny_dir = Path(tempfile.gettempdir()) / "poseanimate-bench-tiny"
    base, controlnet = resolve_model(args.model, None, tiny_dir=tiny_dir)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    cache = MemoryInversionCache()
    animator = PoseAnimator.from_pretrained(
        base, controlnet, device=args.device, dtype=dtype, pose_detector="none", segmenter="none"
    )
    device = animator.device
    inputs = _inputs(args.frames)
    config = AnimateConfig(
        num_inference_steps=args.steps,
        height=args.size,
        width=args.size,
        transition_frames=0,
        frame_batch_size=args.frames,
    )

    _job(animator, inputs, config.replace(num_inference_steps=1))  # warm-up (allocator, kernels)

    def repeat(cfg: AnimateConfig) -> list[dict]:
        return [_job(animator, inputs, cfg) for _ in range(args.repeat)]

    full = _best(repeat(config), key=lambda r: r["seconds"])
    batched = _best(repeat(config), key=lambda r: r["stages"]["optimizing"])
    single = _best(repeat(config.replace(frame_batch_size=1)), key=lambda r: r["stages"]["optimizing"])
    ckpt_off = _best(repeat(config), key=lambda r: r["stages"]["optimizing"])
    ckpt_on = _best(
        repeat(config.replace(gradient_checkpointing=True)), key=lambda r: r["stages"]["optimizing"]
    )

    animator.inversion_cache = cache
    miss_runs, hit_runs = [], []
    for _ in range(args.repeat):
        cache.clear()
        miss_runs.append(_job(animator, inputs, config))
        hit_runs.append(_job(animator, inputs, config))
    animator.inversion_cache = None
    miss = _best(miss_runs, key=lambda r: r["seconds"])
    hit = _best(hit_runs, key=lambda r: r["seconds"])

    report = {
        "device": str(device),
        "dtype": str(animator.dtype).removeprefix("torch."),
        "model": args.model,
        "random_weights": bool(animator.model_info.get("random_weights")),
        "size": args.size,
        "steps": args.steps,
        "frames": args.frames,
        "threads": args.threads,
        "repeat": args.repeat,
        "job": full,
        "expected_evals": expected_evaluations(config, args.frames),
        "ratios": {
            "batched_vs_frame_by_frame_optimizing": round(
                single["stages"]["optimizing"] / batched["stages"]["optimizing"], 2
            ),
            "cache_hit_vs_miss_total": round(miss["seconds"] / hit["seconds"], 2),
            "checkpointing_time_on_over_off": round(
                ckpt_on["stages"]["optimizing"] / ckpt_off["stages"]["optimizing"], 2
            ),
        },
        "pairs": {
            "optimizing_seconds": {
                "batched": batched["stages"]["optimizing"],
                "frame_by_frame": single["stages"]["optimizing"],
            },
            "job_seconds": {"cache_miss": round(miss["seconds"], 4), "cache_hit": round(hit["seconds"], 4)},
            "cache_hit_inverting_evals": hit["unet_evals"].get("inverting_forward", 0),
            "checkpointing": {
                "optimizing_seconds_off": ckpt_off["stages"]["optimizing"],
                "optimizing_seconds_on": ckpt_on["stages"]["optimizing"],
                "peak_memory_bytes_off": ckpt_off["peak_memory_bytes"],
                "peak_memory_bytes_on": ckpt_on["peak_memory_bytes"],
            },
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(
        f"# engine benchmark — {report['device']} {report['dtype']}, model {args.model}"
        f"{' (RANDOM WEIGHTS)' if report['random_weights'] else ''}, {args.size}px, T={args.steps}, "
        f"{args.frames} frames, {args.threads} threads, best of {args.repeat}"
    )
    print("\n| stage | seconds | U-Net fwd | U-Net bwd |\n|---|---:|---:|---:|")
    for stage in ("inverting", "optimizing", "sampling", "encoding"):
        ev = full["unet_evals"]
        print(
            f"| {stage} | {full['stages'].get(stage, 0):.3f} | {ev.get(stage + '_forward', 0)} | {ev.get(stage + '_backward', 0)} |"
        )
    print(
        f"| **job** | {full['seconds']:.3f} | {full['unet_evals']['total_forward']} | {full['unet_evals']['total_backward']} |"
    )
    peak = full["peak_memory_bytes"] / 2**20
    print(
        f"\npeak memory: {peak:.0f} MiB ({'CUDA allocated' if device.type == 'cuda' else 'process max RSS'})"
    )
    pairs, ratios = report["pairs"], report["ratios"]
    print("\n| comparison | A | B | ratio |\n|---|---:|---:|---:|")
    o = pairs["optimizing_seconds"]
    print(
        f"| optimizing: frame-by-frame (A) vs batched x{args.frames} (B), s | {o['frame_by_frame']:.3f} | {o['batched']:.3f} | {ratios['batched_vs_frame_by_frame_optimizing']}x faster |"
    )
    j = pairs["job_seconds"]
    print(
        f"| job: cache miss (A) vs hit (B), s | {j['cache_miss']:.3f} | {j['cache_hit']:.3f} | {ratios['cache_hit_vs_miss_total']}x faster ({pairs['cache_hit_inverting_evals']} inversion evals on hit) |"
    )
    c = pairs["checkpointing"]
    print(
        f"| optimizing: checkpointing off (A) vs on (B), s | {c['optimizing_seconds_off']:.3f} | {c['optimizing_seconds_on']:.3f} | {ratios['checkpointing_time_on_over_off']}x time |"
    )
    if device.type == "cuda":
        off, on = c["peak_memory_bytes_off"], c["peak_memory_bytes_on"]
        print(
            f"| peak CUDA memory: checkpointing off (A) vs on (B), MiB | {off / 2**20:.0f} | {on / 2**20:.0f} | {off / on:.2f}x less |"
        )
    else:
        print("| peak memory: checkpointing off vs on | n/a on CPU (no resettable allocator peak) | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
