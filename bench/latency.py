"""Service latency: how long a job waits between its submission and the moment an idle worker starts
it, measured on the real service parts with the no-op backend (no model, no GPU).

    .venv/bin/python -m bench.latency                 # 50 jobs, one at a time, on an idle worker
    .venv/bin/python -m bench.latency --jobs 200 --json
    .venv/bin/python -m bench.latency --idle-s 2      # the worker idles 2 s between jobs

The stack is bench/api_load.py's (``start_stack``): its own ``redis-server``, ``poseanimate serve``
(auth on, local-file storage) and ``poseanimate worker --queues gpu`` with
``POSEANIMATE_ANIMATOR=noop``. One warm-up job runs first (the worker's first job also waits for
its start-up; reported, not counted). Then each job is submitted (``POST /animations``, JSON body
with a ``--image-size`` PNG), polled until it has succeeded, so the worker is idle again, and after
``--idle-s`` the next one is submitted.

Per job, from the job view (``GET /animations/{id}``):
  queue wait   started_at - created_at: the API stamps created_at once the inputs are stored (just
               before it enqueues the job); the worker stamps started_at when it starts the attempt
               (jobs/store/lua/start_attempt.lua). Enqueue + broker + the worker's pick-up.
  submit->start  started_at - the client's clock just before it sent the POST (the same machine's
               clock): the above plus the upload, validation and storing of the inputs.
Reported: p50, p99 (nearest rank: with 50 jobs the p99 is the slowest), max, mean, in ms.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def load_api_load() -> ModuleType:
    """bench/api_load.py (its stack and its helpers)."""
    from bench import api_load

    return api_load


def summarize(seconds: list[float]) -> dict[str, float | int]:
    """p50 / p99 / max / mean / min in milliseconds."""
    values = sorted(seconds)

    def ms(v: float) -> float:
        return round(v * 1000.0, 2)

    return {
        "n": len(values),
        "p50_ms": ms(load_api_load().percentile(values, 50)),
        "p99_ms": ms(load_api_load().percentile(values, 99)),
        "max_ms": ms(values[-1]) if values else math.nan,
        "mean_ms": ms(sum(values) / len(values)) if values else math.nan,
        "min_ms": ms(values[0]) if values else math.nan,
    }


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def job_latency(job: dict[str, Any], sent_at: float) -> dict[str, float]:
    """The two intervals of one finished job view (seconds)."""
    created, started = _ts(job.get("created_at")), _ts(job.get("started_at"))
    if created is None or started is None:
        raise ValueError(f"job {job.get('id')} has no created_at/started_at: {job}")
    return {"queue_wait_s": started - created, "submit_to_start_s": started - sent_at}


def run_one(client: Any, body: bytes, content_type: str, timeout: float, poll_s: float) -> dict[str, Any]:
    sent_at = time.time()
    reply = client.post("/animations", content=body, headers={"Content-Type": content_type})
    if reply.status_code != 202:
        raise RuntimeError(f"submit refused: {reply.status_code} {reply.text[:300]}")
    job_id = reply.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/animations/{job_id}").json()
        if job.get("status") == "succeeded":
            return {"id": job_id, **job_latency(job, sent_at)}
        if job.get("status") in ("failed", "canceled"):
            raise RuntimeError(f"job {job_id} ended {job.get('status')}: {job.get('error')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not succeed in {timeout} s: {job}")
        time.sleep(poll_s)


def print_table(report: dict[str, Any]) -> None:
    s, m = report["settings"], report["machine"]
    print(
        f"# bench/latency.py — {m['cpu_model']} ({m['cpus']} CPUs), {report['date']}: {s['jobs']} noop jobs one at a "
        f"time on an idle worker (idle {s['idle_s']:g} s between jobs, {s['image_size']}² PNG)\n"
    )
    print("| interval | n | p50 ms | p99 ms | max ms | mean ms | min ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, label in (
        ("queue_wait", "created_at -> started_at (queue wait)"),
        ("submit_to_start", "client POST -> started_at"),
    ):
        r = report[name]
        print(
            f"| {label} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['mean_ms']} | {r['min_ms']} |"
        )
    w = report["warmup"]
    print(
        f"\nwarm-up job (not counted; includes the worker's start-up): queue wait "
        f"{w['queue_wait_s'] * 1000:.0f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=50, help="measured jobs (after one warm-up)")
    parser.add_argument("--idle-s", type=float, default=0.5, help="idle worker time before each submit")
    parser.add_argument("--poll-s", type=float, default=0.05, help="status poll interval")
    parser.add_argument("--image-size", type=int, default=512, help="PNG side, pixels")
    parser.add_argument("--job-timeout", type=float, default=120.0, help="per job; the warm-up waits 2x")
    parser.add_argument("--keep", action="store_true", help="keep the stack's temp dir (logs)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs: 1 or more")

    api_load = load_api_load()
    import httpx

    body = api_load.json_body(api_load.make_png(args.image_size))
    rows = []
    with contextlib.ExitStack() as exit_stack:
        stack = exit_stack.enter_context(api_load.start_stack(None, args.keep))
        client = exit_stack.enter_context(
            httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {stack.key}"}, timeout=30)
        )
        warm = run_one(client, body, api_load.JSON_TYPE, 2 * args.job_timeout, args.poll_s)
        for _ in range(args.jobs):
            time.sleep(args.idle_s)
            rows.append(run_one(client, body, api_load.JSON_TYPE, args.job_timeout, args.poll_s))

    report = {
        "tool": "bench/latency.py",
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": api_load.machine(),
        "settings": {
            "jobs": args.jobs,
            "idle_s": args.idle_s,
            "poll_s": args.poll_s,
            "image_size": args.image_size,
            "job_fields": api_load.JOB_FIELDS,
            "animator": "noop",
        },
        "warmup": warm,
        "queue_wait": summarize([r["queue_wait_s"] for r in rows]),
        "submit_to_start": summarize([r["submit_to_start_s"] for r in rows]),
        "jobs": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
