"""Job cost against the number of generated frames at real size: the full-size random SD-1.5 +
OpenPose ControlNet model (``bench/gpu.py``'s, built once into ``$TMPDIR/poseanimate-bench-sd15``)
runs one job per target count in one process, and a straight line is fitted to seconds against
frames: its slope is the cost of one more frame, its intercept what a job costs whatever its length
(the source image's inversion, the text encoder, frame 0). After a warm-up job of the measured size,
``--repeat`` rounds run every count in turn (1, 2, 4, 1, 2, 4, ...: a busy spell on a shared machine
slows every count alike) and each count keeps its fastest job; the 1-minute load average before and
after each job is in the JSON.

    .venv/bin/python -m bench.scaling                      # CPU: 1, 2, 4 targets, 128², T=1, n=5
    .venv/bin/python -m bench.scaling --targets 1,2,4,8 --size 256 --steps 2
    .venv/bin/python -m bench.scaling --dry-run            # the plan and the predicted evaluations
    .venv/bin/python -m bench.scaling --replot docs/scaling.json   # redraw the PNG from a JSON

Writes ``--json`` (default docs/scaling.json) and ``--png`` (default docs/scaling.png; matplotlib,
``pip install -e '.[bench]'``, imported only to draw). Jobs run with the inversion cache off (every
job pays its inversion, as a new avatar does) and with early stopping off, so the evaluation counts
are exactly ``engine.method.cost``'s and linear in the frame count; the fit is made on the generated frames
N = targets + transition frames (``--transition``, default 0, so N = targets).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent

STAGES = ("inverting", "optimizing", "sampling", "encoding")


def load_gpu_bench() -> ModuleType:
    """bench/gpu.py (imported when needed: it imports torch, which --replot does not need)."""
    from bench import gpu

    return gpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: build the random sd15 one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default=None)
    parser.add_argument("--targets", default="1,2,4", help="comma list of target-pose counts M")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1, help="T")
    parser.add_argument("--inner", type=int, default=5, help="n inversion iterations per step")
    parser.add_argument("--transition", type=int, default=0, help="PATA transition frames t")
    parser.add_argument(
        "--repeat", type=int, default=2, help="rounds over the target counts (each count's fastest job kept)"
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "scaling.json")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "scaling.png")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; load nothing")
    parser.add_argument("--replot", type=Path, default=None, help="draw --png from this JSON; run nothing")
    args = parser.parse_args(argv)
    try:
        args.target_list = sorted({int(x) for x in args.targets.split(",") if x.strip()})
    except ValueError:
        parser.error("--targets: a comma list of integers")
    if len(args.target_list) < 2 or args.target_list[0] < 1:
        parser.error("--targets: at least two distinct counts, each 1 or more")
    if args.dtype is None:
        args.dtype = "float32" if args.device == "cpu" else "float16"
    return args


# ----------------------------------------------------------------------------------------------
# The fit (pure Python: tested on given numbers)
# ----------------------------------------------------------------------------------------------
def fit_line(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least-squares y = slope * x + intercept, with R²."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("fit_line needs two or more (x, y) pairs")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("fit_line needs two distinct x values")
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (slope * x + intercept)) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1.0 if ss_tot == 0 else 1.0 - ss_res / ss_tot
    return {"slope": slope, "intercept": intercept, "r2": r2}


def stage_minima(jobs: list[dict]) -> dict[str, float]:
    """Each stage's fastest time over the jobs of one frame count, and the rest of the job (prompt
    encoding, pose rendering, set-up) as ``other``: on a shared machine a busy spell slows some
    stages of some jobs, so the per-stage minima are the steadier estimate of each stage's cost."""
    out = {stage: min(j["stages"].get(stage, 0.0) for j in jobs) for stage in STAGES}
    out["other"] = max(0.0, min(j["seconds"] - sum(j["stages"].get(k, 0.0) for k in STAGES) for j in jobs))
    return out


def fits(points: list[dict]) -> dict[str, dict[str, float]]:
    """On generated frames N: the fastest jobs' line (``job``), the line through the sums of the
    per-stage minima (``job_stage_minima``, where the points carry ``stage_min``) and each stage's
    line (on its minima where present)."""
    xs = [float(p["frames"]) for p in points]
    out = {"job": fit_line(xs, [p["seconds"] for p in points])}
    per_stage = [p.get("stage_min", p["stages"]) for p in points]
    if all("stage_min" in p for p in points):
        out["job_stage_minima"] = fit_line(xs, [sum(m.values()) for m in per_stage])
    for stage in STAGES:
        out[stage] = fit_line(xs, [m.get(stage, 0.0) for m in per_stage])
    out["forward_evals"] = fit_line(xs, [float(p["evals"]["total_forward"]) for p in points])
    out["backward_evals"] = fit_line(xs, [float(p["evals"]["total_backward"]) for p in points])
    return out


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def table(report: dict) -> str:
    s = report["settings"]
    minima = all("stage_min" in p for p in report["points"])
    kind = "fastest of every job (stage minima)" if minima else "of the fastest job"
    lines = [
        f"# bench/scaling.py — {report['machine']}, {report['date']}",
        "",
        f"Full-size random SD-1.5 + OpenPose ControlNet, {s['size']}², T={s['steps']}, n={s['inner']}, "
        f"transition {s['transition']}, {s['dtype']} on {s['device']} ({s['threads']} threads); "
        f"inversion cache off, early stop off. Stage seconds {kind}.",
        "",
        "| targets | frames N | fastest job s | every job s | inverting | optimizing | sampling | encoding | other | stage sum | U-Net fwd | bwd | = engine.method.cost |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in report["points"]:
        st = p.get("stage_min") or {
            **p["stages"],
            "other": max(0.0, p["seconds"] - sum(p["stages"].get(k, 0.0) for k in STAGES)),
        }
        lines.append(
            f"| {p['targets']} | {p['frames']} | {p['seconds']:.1f} | "
            + ", ".join(f"{x:.1f}" for x in p.get("repeats", [p["seconds"]]))
            + " | "
            + " | ".join(f"{st.get(k, 0.0):.1f}" for k in (*STAGES, "other"))
            + f" | {sum(st.values()):.1f} | {p['evals']['total_forward']} | {p['evals']['total_backward']} | "
            + f"{'yes' if p['evals_match'] else 'NO'} |"
        )
    f = report["fit"]

    def row(label: str, fit: dict[str, float], unit: str = " s", bold: bool = False) -> str:
        b = "**" if bold else ""
        digits = 2 if unit else 0
        return (
            f"| {b}{label}{b} | {b}{fit['slope']:.{digits}f}{unit}{b} | {b}{fit['intercept']:.{digits}f}{unit}{b} "
            f"| {fit['r2']:.4f} |"
        )

    lines += [
        "",
        "| fitted line (least squares on N) | slope per added frame | intercept | R² |",
        "|---|---:|---:|---:|",
        row("job, fastest job per N", f["job"], bold=not minima),
    ]
    if "job_stage_minima" in f:
        lines.append(row("job, sum of the stage minima", f["job_stage_minima"], bold=True))
    lines += [row(f"{k}{' (minima)' if minima else ''}", f[k]) for k in STAGES]
    lines += [
        row("U-Net forward evaluations", f["forward_evals"], unit=""),
        row("U-Net backward evaluations", f["backward_evals"], unit=""),
    ]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    """Job seconds (and per stage, stacked) against N, with the fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points, f = report["points"], report["fit"]
    xs = [p["frames"] for p in points]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    bottom = [0.0] * len(xs)
    width = 0.35
    colors = {"inverting": "#9ecae1", "optimizing": "#fdae6b", "sampling": "#a1d99b", "encoding": "#bcbddc"}
    minima = "stage_min" in points[0]
    for stage in STAGES:
        heights = [p.get("stage_min", p["stages"]).get(stage, 0.0) for p in points]
        label = f"{stage}{' (fastest)' if minima else ''}"
        ax.bar(xs, heights, width, bottom=bottom, color=colors[stage], label=label, zorder=2)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    every = [(p["frames"], r) for p in points for r in p.get("repeats", [])]
    if every:
        ax.plot(*zip(*every, strict=True), "x", color="grey", label="every job", zorder=3)
    ax.plot(xs, [p["seconds"] for p in points], "o", color="black", label="fastest job", zorder=3)
    lo, hi = 0, max(xs) + 0.5
    lines = [("job", "--", "fit, fastest jobs")]
    if "job_stage_minima" in f:
        lines.append(("job_stage_minima", ":", "fit, sum of stage minima"))
    for key, style, name in lines:
        line = f[key]
        ax.plot(
            [lo, hi],
            [line["intercept"] + line["slope"] * lo, line["intercept"] + line["slope"] * hi],
            style,
            color="black",
            zorder=3,
            label=f"{name}: {line['slope']:.1f} s/frame + {line['intercept']:.1f} s (R² {line['r2']:.3f})",
        )
    s = report["settings"]
    loads = [x for p in points for r in p.get("runs", []) for x in r.get("loadavg_1min", [])]
    busy = f", load average {min(loads):.1f}–{max(loads):.1f}" if loads else ""
    ax.set_xlabel("generated frames N (targets + transition)")
    ax.set_ylabel("seconds per job")
    ax.set_title(
        f"Job cost vs frames: full-size SD-1.5 + ControlNet (random weights)\n"
        f"{s['size']}², T={s['steps']}, n={s['inner']}, {s['device']} {s['dtype']}, {report['machine']}{busy}",
        fontsize=9,
    )
    ax.set_xticks(xs)
    ax.set_xlim(lo, hi)
    ax.set_ylim(
        0, 1.6 * max([p["seconds"] for p in points] + [r for _, r in every])
    )  # room for the legend above the bars
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def machine() -> str:
    cpus = os.cpu_count() or 1
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            kib = int(fh.readline().split()[1])
        mem = f", {kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.machine()} {cpus} CPU{'s' if cpus > 1 else ''}{mem}"


def job_args(args: argparse.Namespace) -> argparse.Namespace:
    """The fields bench/gpu.py's main_config reads."""
    return argparse.Namespace(
        steps=args.steps, inner=args.inner, size=args.size, transition=args.transition, device=args.device
    )


def the_plan(args: argparse.Namespace, gpu: ModuleType) -> dict:
    from engine.method.cost import expected_evaluations

    config = gpu.main_config(job_args(args))
    return {
        "model": args.model or f"{gpu.DEFAULT_MODEL_DIR} (random sd15, built if missing)",
        "settings": {
            "device": args.device,
            "dtype": args.dtype,
            "size": args.size,
            "steps": args.steps,
            "inner": args.inner,
            "transition": args.transition,
        },
        "points": [
            {"targets": m, "frames": m + args.transition, "expected_evals": expected_evaluations(config, m)}
            for m in args.target_list
        ],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot is not None:
        report = json.loads(args.replot.read_text())
        plot(report, args.png)
        print(table(report))
        print(f"wrote {args.png}")
        return 0
    gpu = load_gpu_bench()
    plan = the_plan(args, gpu)
    if args.dry_run:
        print(json.dumps(plan, indent=2))
        return 0

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    model_dir, build_seconds = gpu.ensure_model(args)
    started = time.perf_counter()
    animator = gpu.load_animator(model_dir, args.device, args.dtype)
    load_seconds = time.perf_counter() - started
    animator.inversion_cache = None  # every job pays its inversion
    config = gpu.main_config(job_args(args))
    # the warm-up is a job of the measured size and settings: the first job at a new shape pays
    # one-time costs (oneDNN primitives, allocator growth) that belong to no frame count
    warmup = gpu.run_job(animator, args.target_list[0], config)
    print(f"loaded in {load_seconds:.1f} s, warm-up job {warmup['seconds']:.1f} s", flush=True)
    runs: dict[int, list[dict]] = {m: [] for m in args.target_list}
    for round_ in range(max(1, args.repeat)):  # interleaved: a busy spell slows every count alike
        for m in args.target_list:
            load_before = os.getloadavg()[0]
            job = gpu.run_job(animator, m, config)
            job["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            runs[m].append(job)
            print(
                f"  round {round_ + 1}: {m} targets (N={m + args.transition}): {job['seconds']:.1f} s "
                f"(load average {job['loadavg_1min'][0]:.2f} -> {job['loadavg_1min'][1]:.2f})",
                flush=True,
            )
    points = []
    for m, jobs in runs.items():
        best = min(jobs, key=lambda r: r["seconds"])
        point = {"targets": m, "frames": m + args.transition, **best}
        point["repeats"] = [r["seconds"] for r in jobs]
        point["stage_min"] = stage_minima(jobs)
        point["runs"] = [
            {"seconds": r["seconds"], "stages": r["stages"], "loadavg_1min": r["loadavg_1min"]} for r in jobs
        ]
        points.append(point)
    report = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "command": "bench/scaling.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "torch": torch.__version__,
        "model_dir": str(model_dir),
        "random_weights": bool(animator.model_info.get("random_weights")),
        "build_seconds": build_seconds,
        "load_seconds": round(load_seconds, 2),
        "warmup_seconds": warmup["seconds"],
        "warmup_targets": args.target_list[0],
        "settings": {**plan["settings"], "threads": torch.get_num_threads()},
        "points": points,
        "fit": fits(points),
        "wall_seconds": round(time.perf_counter() - wall, 1),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(table(report))
    try:
        plot(report, args.png)
        print(f"wrote {args.json} and {args.png}")
    except ImportError:
        print(f"wrote {args.json}; no matplotlib for the PNG: pip install -e '.[bench]'", file=sys.stderr)
    return 0 if all(p["evals_match"] for p in points) else 1


if __name__ == "__main__":
    raise SystemExit(main())
