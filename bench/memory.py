"""Device memory of a job, per stage, and the plan for common cards (issue 23).

    python -m bench.memory            # tables: paper setting fp16/bf16, 1024², 64 frames
    python -m bench.memory --json     # the same, for machines
    python -m bench.memory --measure  # re-measure SD-1.5 on the meta device into the engine's table

The numbers come from ``engine/inputs/memory_sd15.json``: SD-1.5 + OpenPose ControlNet measured on
PyTorch's ``meta`` device with a live-storage tracker (``engine.method.memory``), stage by stage, with
the memory-efficient attention kernel CUDA picks for these shapes. float16 and bfloat16 take the same
bytes. The planner (``engine.inputs.memoryplan.plan_job``) is the one the engine runs on CUDA.

Predicted speed of a plan, relative to the 80 GB card's: a U-Net+ControlNet call of ``chunk`` samples
takes ``max(HOST_MS, chunk * DEVICE_MS)`` (the host dispatches ~2,400 operators per call while the
GPU works; estimates from the issue's audit, not GPU measurements) and checkpointing recomputes the
forward pass in the backward (4/3 of the optimisation's work).
"""

from __future__ import annotations

import argparse
import json
import time

from engine.inputs.memoryplan import (
    STAGES,
    TABLE_PATH,
    GiB,
    MemoryModel,
    card_available_bytes,
    interpolate,
    load_table,
    plan_job,
    stage_frames,
)
from engine.method.config import AnimateConfig
from engine.method.cost import expected_evaluations

CARDS = ("8", "12", "16", "24", "48", "80")
HOST_MS = 16.0
DEVICE_MS = 4.0
SETTINGS = {
    "paper_float16": {"size": 512, "targets": 16, "transition": 4, "steps": 50, "dtype": "float16"},
    "paper_bfloat16": {"size": 512, "targets": 16, "transition": 4, "steps": 50, "dtype": "bfloat16"},
    "1024_float16": {"size": 1024, "targets": 16, "transition": 4, "steps": 50, "dtype": "float16"},
    "64_frames_float16": {"size": 512, "targets": 60, "transition": 4, "steps": 50, "dtype": "float16"},
}
MEASURED_SIZES = (512, 768, 1024)


def job_seconds(plan, setting: dict) -> float:
    """Predicted device seconds of the U-Net+ControlNet work of a job under ``plan``."""
    config = AnimateConfig(num_inference_steps=setting["steps"], transition_frames=setting["transition"])
    evals = expected_evaluations(config, setting["targets"])
    total = 0.0
    per_stage = {
        "inverting": evals["inverting_forward"] + 2 * evals["inverting_backward"],
        "optimizing": evals["optimizing_forward"] + 2 * evals["optimizing_backward"],
        "sampling": evals["sampling_forward"],
    }
    for stage, work in per_stage.items():
        s = plan.stages.get(stage)
        if s is None:
            continue
        samples_per_call = s.chunk * (2 if stage == "sampling" else 1)
        calls = work / samples_per_call
        factor = 4 / 3 if s.checkpointing and stage != "sampling" else 1.0
        total += calls * max(HOST_MS, samples_per_call * DEVICE_MS) * factor / 1e3
    return total


def smallest_card_gb(model: MemoryModel, generated: int, steps: int, *, offload: bool) -> float:
    """The least card memory (GB, to 0.01) the job fits, with or without weight offload."""
    low, high = 0.0, 1024.0
    while high - low > 0.005:
        mid = (low + high) / 2
        plan = plan_job(model, generated, card_available_bytes(mid), steps=steps, allow_offload=offload)
        low, high = (low, mid) if plan.fits else (mid, high)
    return round(high + 0.005, 2)


def report_setting(models: list[MemoryModel], name: str, setting: dict) -> dict:
    latent = setting["size"] // 8
    model = interpolate(models, (latent, latent))
    generated = setting["targets"] + setting["transition"]
    cards = {}
    plans = {}
    for card in CARDS:
        plan = plan_job(model, generated, card_available_bytes(float(card)), steps=setting["steps"])
        plans[card] = plan
        cards[card] = {
            "fits": plan.fits,
            "plan": {
                s: {
                    "chunk": p.chunk,
                    "chunks": p.chunks,
                    "checkpointing": p.checkpointing,
                    "offload": plan.offload,
                }
                for s, p in plan.stages.items()
            },
            "peak_bytes": {s: p.peak_bytes for s, p in plan.stages.items()},
            "reason": plan.reason,
        }
    reference = job_seconds(plans["80"], setting)
    for card in CARDS:
        seconds = job_seconds(plans[card], setting)
        cards[card]["relative_evals_per_s"] = round(reference / seconds, 3) if plans[card].fits else 0.0
    fitting = [c for c in CARDS if cards[c]["fits"]]
    return {
        "setting": {**setting, "generated_frames": generated, "latent": [latent, latent]},
        "kernel": model.kernel,
        "weights_bytes": model.weights,
        "base_bytes": {s: model.stages[s].base for s in STAGES},
        "per_sample_bytes": {s: model.stages[s].per_sample for s in STAGES},
        "checkpointed_per_sample_bytes": {s: m.per_sample for s, m in model.checkpointed.items()},
        "frames_per_stage": {s: stage_frames(s, generated) for s in STAGES},
        "cards": cards,
        "smallest_card_gb": fitting[0] if fitting else None,
        # the least memory it fits in, GB: every weight resident vs offloaded between stages
        "minimum_gb": {
            "resident": smallest_card_gb(model, generated, setting["steps"], offload=False),
            "offload": smallest_card_gb(model, generated, setting["steps"], offload=True),
        },
    }


def build_report(models: list[MemoryModel]) -> dict:
    settings = {name: report_setting(models, name, s) for name, s in SETTINGS.items()}
    paper = settings["paper_float16"]
    return {
        "source": str(TABLE_PATH.name),
        "measured_sizes": [list(m.latent_hw) for m in models],
        # the paper setting in float16 at the top level; every setting under "settings"
        "cards": paper["cards"],
        "per_sample_bytes": paper["per_sample_bytes"],
        "smallest_card_gb": paper["smallest_card_gb"],
        "settings": settings,
    }


def _gib(n: int) -> str:
    return f"{n / GiB:.2f}"


def markdown(report: dict) -> str:
    lines = [
        "# Device memory per stage and plans per card (bench/memory.py)",
        "",
        f"Measured on the meta device ({report['source']}, latents {report['measured_sizes']}); "
        "GiB; plans keep 5 % free and 512 MiB for the CUDA context.",
    ]
    for name, s in report["settings"].items():
        st = s["setting"]
        lines += [
            "",
            f"## {name}: {st['targets']} targets + {st['transition']} transition, {st['size']}², "
            f"T={st['steps']}, {st['dtype']} — smallest card: {s['smallest_card_gb']} GB",
            "",
            f"least memory it fits: {s['minimum_gb']['resident']} GB with every weight resident, "
            f"{s['minimum_gb']['offload']} GB with weight offload",
            "",
            f"weights {_gib(s['weights_bytes'])} GiB; per stage, base + per frame in a chunk (no checkpointing): "
            + ", ".join(
                f"{k} {_gib(s['base_bytes'][k])} + {_gib(v)}" for k, v in s["per_sample_bytes"].items()
            )
            + "; with checkpointing per frame: "
            + f"optimizing {_gib(s['checkpointed_per_sample_bytes']['optimizing'])}",
            "",
            "| card GB | fits | "
            + " | ".join(f"{k} chunk (peak GiB)" for k in STAGES)
            + " | evals/s vs 80 GB |",
            "|---|---|" + "---|" * len(STAGES) + "---:|",
        ]
        for card, c in s["cards"].items():
            cells = []
            for stage in STAGES:
                p = c["plan"].get(stage)
                if p is None:
                    cells.append("-")
                    continue
                ck = " ckpt" if p["checkpointing"] else ""
                cells.append(
                    f"{'+'.join(map(str, p['chunks'][:3]))}{'…' if len(p['chunks']) > 3 else ''}{ck} ({_gib(c['peak_bytes'][stage])})"
                )
            lines.append(
                f"| {card} | {'yes' if c['fits'] else 'no'} | "
                + " | ".join(cells)
                + f" | {c['relative_evals_per_s']} |"
            )
    return "\n".join(lines) + "\n"


def measure_table() -> dict:
    """Re-measure SD-1.5 + OpenPose ControlNet (16-bit) on the meta device at MEASURED_SIZES."""
    import torch

    from engine.method.memory import measure_model
    from engine.weights.random_model import sd15_modules

    modules = sd15_modules("meta")
    for m in modules.values():
        m.to(torch.float16).requires_grad_(False).eval()
    models = []
    for size in MEASURED_SIZES:
        started = time.perf_counter()
        models.append(measure_model(modules, (size // 8, size // 8)).to_json())
        print(f"measured {size}² in {time.perf_counter() - started:.0f} s", flush=True)
    return {
        "architecture": "SD-1.5 U-Net + OpenPose ControlNet + SD VAE + CLIP ViT-L/14 text encoder",
        "dtype_bytes": 2,
        "note": "written by `python bench/memory.py --measure` (meta device, engine.method.memory)",
        "models": models,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--measure", action="store_true", help=f"re-measure into {TABLE_PATH.name}")
    args = parser.parse_args(argv)
    if args.measure:
        TABLE_PATH.write_text(json.dumps(measure_table(), indent=1) + "\n")
    report = build_report(load_table())
    print(json.dumps(report, indent=1) if args.json else markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
