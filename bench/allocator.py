"""The CPU memory allocator as a lever: the same full-size job under glibc's malloc (default, and
tuned by ``engine.weights.runtime.tune_cpu_allocator`` as the CLI and the worker do on a CPU), jemalloc and
tcmalloc.

Why: on the full-size CPU run `/usr/bin/time` counted 13.5 % of the CPU time as system time and
~89 GiB of minor page faults for a 7 GiB process: large tensors freshly mapped and unmapped on every
allocation. That is the allocator's doing, not the model's.

An allocator is chosen when a process starts (``LD_PRELOAD``, ``GLIBC_TUNABLES``), so unlike the
other levers this one cannot be switched inside one process: each configuration runs in a child
process, the children take turns round by round (A B C, then B C A, ...), and the report gives each
configuration's median against glibc's default. Each child loads the model, runs a one-step warm-up
job, then the measured job, and reports its seconds, its system time, minor page faults and peak
RSS.

    python -m bench.allocator                      # size 128, 1 target + 1 transition, T=2, 2 rounds
    python -m bench.allocator --rounds 3 --json    # the report as JSON
    python -m bench.allocator --dry-run            # the configurations found on this machine

Allocators that are not installed are listed as skipped (Debian: ``libjemalloc2``,
``libtcmalloc-minimal4``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBDIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
ALLOCATOR_ENV = ("LD_PRELOAD", "GLIBC_TUNABLES", "MALLOC_CONF", "TCMALLOC_RELEASE_RATE")


def _find(*names: str) -> str | None:
    for d in LIBDIRS:
        for n in names:
            p = Path(d) / n
            if p.is_file():
                return str(p)
    return None


def configurations() -> dict[str, dict[str, str] | None]:
    """name -> the environment it adds (None: not installed here). ``glibc-tuned`` is glibc with
    the engine's own tuning, applied in the child (the default of ``poseanimate animate`` and of the
    worker on a CPU)."""
    jemalloc = _find("libjemalloc.so.2", "libjemalloc.so")
    tcmalloc = _find("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
    return {
        "glibc": {},
        "glibc-tuned": {},
        "jemalloc": {"LD_PRELOAD": jemalloc} if jemalloc else None,
        "tcmalloc": {"LD_PRELOAD": tcmalloc} if tcmalloc else None,
    }


def loaded_allocator() -> str:
    """Which allocator this process runs on: a preloaded one is mapped into it."""
    maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
    for name in ("tcmalloc", "jemalloc"):
        if f"lib{name}" in maps:
            return name
    return "glibc"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model dir (default: the random sd15 of bench/gpu.py)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=1, help="target poses")
    parser.add_argument("--transition", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--inner", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=None, help="comma list of configurations")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tune", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _gpu_module():
    from bench import gpu

    return gpu


def _gpu_args(args: argparse.Namespace) -> list[str]:
    out = ["--device", "cpu", "--dtype", "float32", "--size", str(args.size), "--frames", str(args.frames)]
    out += ["--steps", str(args.steps), "--inner", str(args.inner), "--transition", str(args.transition)]
    out += ["--levers", "none"]
    if args.model:
        out += ["--model", args.model]
    return out


def child(args: argparse.Namespace) -> int:
    """One configuration's run, in this process: a JSON line on stdout."""
    gpu = _gpu_module()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = None
    if args.tune:
        from engine.weights.runtime import tune_cpu_allocator

        tuned = tune_cpu_allocator()
    gargs = gpu.parse_args(_gpu_args(args))
    model_dir, _ = gpu.ensure_model(gargs)
    started = time.perf_counter()
    animator = gpu.load_animator(model_dir, "cpu", "float32")
    load_s = time.perf_counter() - started
    animator.inversion_cache = None  # every job pays its inversion
    config = gpu.main_config(gargs)
    gpu.run_job(animator, 1, config.replace(num_inference_steps=1))  # warm-up
    before = resource.getrusage(resource.RUSAGE_SELF)
    job = gpu.run_job(animator, args.frames, config)
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "load_s": round(load_s, 2),
                "job_s": job["seconds"],
                "user_s": round(after.ru_utime - before.ru_utime, 2),
                "sys_s": round(after.ru_stime - before.ru_stime, 2),
                "minor_faults": after.ru_minflt - before.ru_minflt,
                "peak_rss_mib": round(after.ru_maxrss / 1024),
                "evals_match": job["evals_match"],
                "allocator_env": {k: os.environ[k] for k in ALLOCATOR_ENV if k in os.environ},
                "loaded": loaded_allocator(),
                "tuned": tuned,
            }
        )
    )
    return 0


def child_argv(args: argparse.Namespace) -> list[str]:
    """The child's settings: the job's and the model's (rounds, --only and output are the parent's)."""
    out = [f"--{k}={getattr(args, k)}" for k in ("size", "frames", "transition", "steps", "inner")]
    out += [f"--model={args.model}"] if args.model else []
    out += [f"--threads={args.threads}"] if args.threads else []
    return out


def _run_child(args: argparse.Namespace, extra: dict[str, str], tune: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
    env.update(extra)
    argv = [sys.executable, "-m", "bench.allocator", "--child", *child_argv(args)]  # cwd: the repository
    argv += ["--tune"] if tune else []
    out = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child failed ({out.returncode}): {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    found = configurations()
    names = [n for n, env in found.items() if env is not None]
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        names = [n for n in wanted if n in names]
    skipped = [n for n, env in found.items() if env is None]
    gpu = _gpu_module()
    gpu.ensure_model(gpu.parse_args(_gpu_args(args)))  # build once, before any child
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            row = _run_child(args, found[name] or {}, tune=name == "glibc-tuned")
            runs[name].append(row)
            print(
                f"round {r + 1} {name}: job {row['job_s']:.1f} s, sys {row['sys_s']:.1f} s", file=sys.stderr
            )
    base = statistics.median(x["job_s"] for x in runs["glibc"]) if runs.get("glibc") else None
    summary = {}
    for name, rows in runs.items():
        median = statistics.median(x["job_s"] for x in rows)
        summary[name] = {
            "job_s_median": round(median, 2),
            "job_s": [x["job_s"] for x in rows],
            "speedup_vs_glibc": round(base / median, 3) if base else None,
            "sys_s_median": round(statistics.median(x["sys_s"] for x in rows), 2),
            "user_s_median": round(statistics.median(x["user_s"] for x in rows), 2),
            "minor_faults_median": int(statistics.median(x["minor_faults"] for x in rows)),
            "peak_rss_mib_max": max(x["peak_rss_mib"] for x in rows),
            "evals_match": all(x["evals_match"] for x in rows),
            "env": found[name],
            "child_env": rows[0]["allocator_env"],
            "loaded": rows[0]["loaded"],
            "tuned": rows[0]["tuned"],
        }
    return {
        "setting": {
            k: getattr(args, k) for k in ("size", "frames", "transition", "steps", "inner", "rounds")
        },
        "threads": args.threads,
        "skipped": skipped,
        "results": summary,
    }


def table(report: dict) -> str:
    lines = [
        "| allocator | job s (median) | vs glibc | system s | minor faults | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {r['job_s_median']:.1f} | {r['speedup_vs_glibc']:.2f}x | {r['sys_s_median']:.1f} "
            f"| {r['minor_faults_median']:,} | {r['peak_rss_mib_max']:,} |"
        )
    if report["skipped"]:
        lines.append(f"\nnot installed here: {', '.join(report['skipped'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.dry_run:
        print(json.dumps({"configurations": configurations(), "child_args": child_argv(args)}, indent=2))
        return 0
    report = measure(args)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
