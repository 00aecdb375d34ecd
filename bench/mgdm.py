"""MGDM's attention: the boolean-masked reference against the regions (issue 23), side by side.

    python -m bench.mgdm              # table
    python -m bench.mgdm --json       # the same, for machines
    python -m bench.mgdm --device cuda --dtype float16 --cpu-level 64x64 --cpu-frames 17   # on a GPU

One DCAM+MGDM layer call (``DualConsistencyAttnProcessor._dual_consistency``: frame 0 plus the
chunk's target frames, CFG pair) with ``mgdm="masked"`` (every query attends both regions of each
reference under a boolean key mask, half of it discarded by Eq. 10) and ``mgdm="regions"`` (each
region's queries attend only the keys they may see):

- peak bytes at SD-1.5's up-block shapes at 512² (64x64, 32x32, 16x16 token grids), a 17-frame chunk,
  float16, measured on PyTorch's ``meta`` device with the engine's live-storage tracker and the
  memory-efficient kernel CUDA picks (``engine.method.memory``), over the inputs;
- query-key pairs each computes (the attention FLOPs are 4 x pairs x head width);
- seconds of real calls at the 32x32 grid (min of a few runs; ``--device cuda --dtype float16
  --cpu-level 64x64 --cpu-frames 17`` on a GPU, which also reports the allocator's peak);
- the largest difference between their outputs.

Masks: an ellipse (the character, ~30 % of the frame) that moves and changes size from frame to
frame, as pose masks do.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from engine.method.attention import AttentionController, DualConsistencyAttnProcessor
from engine.method.memory import LiveStorageTracker, sdpa_kernel

GROUPS = 2
# SD-1.5 up-block self-attention at 512²: (grid, heads, head width)
LEVELS = {"64x64": ((64, 64), 8, 40), "32x32": ((32, 32), 8, 80), "16x16": ((16, 16), 8, 160)}
IMPLS = ("masked", "regions")


def character_masks(frames: int, grid: tuple[int, int]) -> torch.Tensor:
    """(frames, gh, gw) float {0,1}: a moving ellipse covering about 30 % of the frame."""
    gh, gw = grid
    y = torch.linspace(0, 1, gh)[:, None]
    x = torch.linspace(0, 1, gw)[None, :]
    masks = []
    for i in range(frames):
        cx = 0.45 + 0.1 * math.sin(i / 3)
        ry, rx = 0.42 + 0.04 * math.cos(i / 2), 0.22 + 0.03 * math.sin(i / 2)
        masks.append((((x - cx) / rx) ** 2 + ((y - 0.5) / ry) ** 2 <= 1).float())
    return torch.stack(masks)


def _processor(mgdm: str, grid: tuple[int, int], frames: int) -> DualConsistencyAttnProcessor:
    ctl = AttentionController(latent_hw=grid, batch_size=GROUPS)
    ctl.begin_batch(range(frames))
    ctl.set_masks(character_masks(frames, grid))
    return DualConsistencyAttnProcessor(controller=ctl, mgdm=mgdm, name="bench")


def _qkv(frames: int, grid, heads: int, d: int, device: str, dtype, seed: int = 0):
    tokens = grid[0] * grid[1]
    g = torch.Generator().manual_seed(seed)
    shape = (GROUPS * frames, heads, tokens, d)
    if device == "meta":
        return [torch.empty(shape, device="meta", dtype=dtype) for _ in range(3)]
    return [torch.randn(shape, generator=g).to(dtype) for _ in range(3)]


def pairs(mgdm: str, grid: tuple[int, int], frames: int) -> int:
    """Query-key pairs the target frames' attention computes (both groups, per head)."""
    tokens = grid[0] * grid[1]
    targets = frames - 1
    if mgdm == "masked":
        return GROUPS * targets * 6 * tokens * tokens
    ctl = _processor(mgdm, grid, frames).controller
    assert ctl is not None
    total = 0
    for side in ctl.region_plan(grid, list(range(1, frames))):
        if side is not None:
            total += sum(keys.numel() for keys, _ in side.keys) * side.queries.shape[1]
    return GROUPS * total


def peak_bytes(mgdm: str, level: str, frames: int, dtype=torch.float16) -> int:
    """Peak bytes one layer call allocates beyond its inputs (meta device, efficient kernel)."""
    grid, heads, d = LEVELS[level]
    proc = _processor(mgdm, grid, frames)
    q, k, v = _qkv(frames, grid, heads, d, "meta", dtype)
    with torch.no_grad(), sdpa_kernel("efficient"):
        proc._dual_consistency(q, k, v, grid[0] * grid[1])  # index sets built (once per mask update)
        tracker = LiveStorageTracker()
        with tracker:
            proc._dual_consistency(q, k, v, grid[0] * grid[1])
    return int(tracker.peak)


def device_run(mgdm: str, level: str, frames: int, repeats: int, device: str, dtype) -> dict:
    """Seconds (min of ``repeats``) of real calls on ``device``; on CUDA also the allocator's peak
    over the inputs (``torch.cuda.max_memory_allocated``)."""
    grid, heads, d = LEVELS[level]
    proc = _processor(mgdm, grid, frames)
    assert proc.controller is not None and proc.controller.masks is not None
    proc.controller.set_masks(proc.controller.masks.to(device))
    q, k, v = (t.to(device) for t in _qkv(frames, grid, heads, d, "cpu", dtype))
    cuda = torch.device(device).type == "cuda"
    best, peak = math.inf, None
    with torch.no_grad():
        out = proc._dual_consistency(q, k, v, grid[0] * grid[1])
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            out = proc._dual_consistency(q, k, v, grid[0] * grid[1])
            if cuda:
                torch.cuda.synchronize()
                peak = torch.cuda.max_memory_allocated() - base
            best = min(best, time.perf_counter() - start)
    return {"seconds": best, "peak_bytes": peak, "out": out.float().cpu()}


def report(
    chunk: int, cpu_level: str, cpu_frames: int, repeats: int, device: str = "cpu", dtype=torch.float32
) -> dict:
    memory = {}
    for level, (grid, _, _) in LEVELS.items():
        row = {impl: peak_bytes(impl, level, chunk) for impl in IMPLS}
        row["ratio"] = row["masked"] / row["regions"]
        work = {impl: pairs(impl, grid, chunk) for impl in IMPLS}
        memory[level] = {
            "peak_bytes": row,
            "pairs": {**work, "ratio": work["masked"] / work["regions"]},
        }
    runs = {impl: device_run(impl, cpu_level, cpu_frames, repeats, device, dtype) for impl in IMPLS}
    seconds = {impl: runs[impl]["seconds"] for impl in IMPLS}
    return {
        "chunk": chunk,
        "dtype_memory": "float16",
        "levels": memory,
        "cpu": {
            "device": device,
            "dtype": str(dtype).removeprefix("torch."),
            "level": cpu_level,
            "frames": cpu_frames,
            "threads": torch.get_num_threads(),
            "seconds": {**seconds, "ratio": seconds["masked"] / seconds["regions"]},
            "peak_bytes": {impl: runs[impl]["peak_bytes"] for impl in IMPLS},
            "max_abs_diff": float((runs["masked"]["out"] - runs["regions"]["out"]).abs().max()),
        },
    }


def _print(rep: dict) -> None:
    mib = 2**20
    print(f"MGDM layer call, chunk of {rep['chunk']} frames (frame 0 + {rep['chunk'] - 1} targets), CFG pair")
    print("\nPeak bytes beyond the inputs (meta device, efficient kernel, float16) and query-key pairs:")
    print(f"{'grid':>6} | {'masked MiB':>10} | {'regions MiB':>11} | {'ratio':>5} | {'pairs ratio':>11}")
    for level, row in rep["levels"].items():
        p = row["peak_bytes"]
        print(
            f"{level:>6} | {p['masked'] / mib:10.1f} | {p['regions'] / mib:11.1f} | {p['ratio']:5.2f} |"
            f" {row['pairs']['ratio']:11.2f}"
        )
    cpu = rep["cpu"]
    s = cpu["seconds"]
    print(
        f"\n{cpu['device']} {cpu['dtype']}, {cpu['level']} grid, {cpu['frames']} frames,"
        f" {cpu['threads']} threads: masked {s['masked'] * 1e3:.1f} ms, regions {s['regions'] * 1e3:.1f} ms,"
        f" ratio {s['ratio']:.2f}; max |difference| {cpu['max_abs_diff']:.2e}"
    )
    peak = cpu["peak_bytes"]
    if peak["masked"] is not None:
        print(
            f"allocator peak: masked {peak['masked'] / mib:.1f} MiB, regions {peak['regions'] / mib:.1f} MiB"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=17, help="frames per chunk for the memory rows")
    parser.add_argument("--cpu-level", choices=sorted(LEVELS), default="32x32")
    parser.add_argument("--cpu-frames", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="device of the timed calls (cuda: also its peak)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    rep = report(args.chunk, args.cpu_level, args.cpu_frames, args.repeats, args.device, dtype)
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        _print(rep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
