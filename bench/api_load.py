"""API load benchmark: submission throughput/latency and status-poll latency at a fixed offered rate,
against a real API on loopback, with a no-op worker so no GPU (and no model) is involved.

    .venv/bin/python -m bench.api_load                      # start a stack, measure, print a table
    .venv/bin/python -m bench.api_load --json               # machine-readable
    .venv/bin/python -m bench.api_load --phases status      # a subset: status, multipart, json
    .venv/bin/python -m bench.api_load --url http://127.0.0.1:8000 --key KEY   # an API already running

Without ``--url`` the script starts, in a temp dir, and stops afterwards: its own ``redis-server`` on a
free port, ``poseanimate serve`` (uvicorn, auth on, one bench API key, local-file storage, JSON access
log at INFO, per-key rate limits and quota raised far above the offered load so the limiter runs on
every request but never refuses one) and ``poseanimate worker --queues gpu`` with
``POSEANIMATE_ANIMATOR=noop``. The worker runs one probe job to ``succeeded`` (the job whose status is
polled) and is then stopped, so that it does not compete with the API for the cores
(``--keep-worker`` leaves it running).

Phases (each ``--duration`` seconds, after a warm-up):
  status   GET /animations/{id} of the succeeded job (a reply carries two signed output links) at a
           fixed offered rate (``--status-rate``, default 1000 req/s over ``--status-concurrency``
           connections), then closed-loop (each connection sends when its reply came) for the ceiling
  submit   POST /animations of a 512x512 PNG (``--image-size``; a photo, not a flat test card), as
           multipart and as JSON with a base64 data URI, at a fixed offered rate (``--submit-rate``)
           and closed-loop (``--submit-concurrency``); jobs left queued by a phase are canceled and
           the broker queue emptied before the next phase (self-started stack only)

Load generators (``--loadgen``): ``hey`` (Debian package) if installed, else a Python asyncio/httpx
client. With hey the offered rate is ``-q`` per connection x ``-c`` connections; a connection whose
reply is late sends its next request late, so the achieved rate is reported beside the offered one.
hey starts the timers of all its connections together (one process = bursts of ``-c`` requests), so
fixed-rate phases split the connections over ``--hey-procs`` processes started evenly over one send
interval. The Python client is far slower than hey and runs on the same cores as the API: its
figures are labelled as such and understate the API. This script installs nothing.

Latency is per request, from the load generator's send to the end of the reply. CPU seconds of each
process tree (API, Redis, worker, load generator) during a phase are read from /proc (Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import io
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from jobs.contract import EXAMPLE_POSES  # torch-free
from launch.commands import poseanimate_command
from launch.local import MissingService, ProcessStack, RedisServer, process_stack

ROOT = Path(__file__).resolve().parent.parent

BENCH_KEY = "sk-bench-api-load"
BOUNDARY = "poseanimate-bench-boundary-7d1c2f0e"
POSES = EXAMPLE_POSES  # a 2-frame compact COCO-18 sequence, the OpenAPI example
# steps=1 and size=64 keep the no-op worker's own work (fake steps, a tiny MP4) negligible: the
# submitted image is still the full 512x512 PNG that the API checks, re-encodes and stores.
JOB_FIELDS = {"prompt": "an astronaut", "steps": 1, "size": 64, "transition_frames": 0}

TARGETS = {"status_p99_ms": 20.0, "status_rate": 1000.0, "submit_p99_ms": 100.0}


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def make_png(size: int) -> bytes:
    """A photo (the bundled example) cropped and resized to ``size``², as PNG: realistic entropy,
    unlike a flat test card that compresses to nothing."""
    from PIL import Image

    source = ROOT / "examples" / "astronaut.jpg"
    if source.exists():
        img = Image.open(source).convert("RGB")
        side = min(img.size)
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    else:  # a clone without examples/: a gradient with noise
        import random

        rng = random.Random(7)
        img = Image.new("RGB", (size, size))
        img.putdata(
            [
                ((x * 255) // size, (y * 255) // size, rng.randrange(256))
                for y in range(size)
                for x in range(size)
            ]
        )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def multipart_body(png: bytes) -> bytes:
    parts: list[bytes] = []

    def part(name: str, value: bytes, filename: str | None = None, ctype: str | None = None) -> None:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
        if ctype:
            head += f"Content-Type: {ctype}\r\n"
        parts.append(head.encode() + b"\r\n" + value + b"\r\n")

    part("image", png, "avatar.png", "image/png")
    part("poses", json.dumps(POSES).encode(), "poses.json", "application/json")
    for name, value in JOB_FIELDS.items():
        part(name, str(value).encode())
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def json_body(png: bytes) -> bytes:
    image = "data:image/png;base64," + base64.b64encode(png).decode()
    return json.dumps({"image": image, "poses": POSES, **JOB_FIELDS}).encode()


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
JSON_TYPE = "application/json"


# ---------------------------------------------------------------------------------------------
# the stack under test
# ---------------------------------------------------------------------------------------------
@dataclass
class Stack:
    url: str
    key: str
    api_workers: int | None = None
    pids: dict[str, int] = field(default_factory=dict)  # process-tree roots for CPU accounting
    redis_url: str | None = None
    processes: ProcessStack | None = None  # the self-started stack (None with --url)

    def reset_queue(self) -> None:
        """Cancel the jobs a phase left queued and empty the broker queue, so every phase starts
        from an empty queue and a small per-key active set (self-started stack only)."""
        if self.redis_url is None:
            return
        import redis

        from jobs.store import JobStore

        store = JobStore.from_url(self.redis_url, "pa")
        try:
            for job_id in store.r.zrange(store.queue_key, 0, -1):
                store.request_cancel(job_id)
        finally:
            store.r.close()
        with redis.Redis.from_url(self.redis_url.replace("/0", "/1")) as broker:
            broker.delete("gpu")

    def stop_worker(self) -> None:
        """The no-op worker is needed for the succeeded probe job only: stopped before the
        measurements so that its job processing does not compete with the API for the cores."""
        if self.processes is not None:
            self.processes.stop("worker")
            self.pids.pop("worker", None)


def stack_env(redis: RedisServer, tmp: Path) -> dict[str, str]:
    """The API's and the worker's environment: the bench key, local-file storage, limits far above
    the offered load, the no-op animator."""
    env = {
        **os.environ,
        "POSEANIMATE_REDIS_URL": redis.url,
        # Celery's queue lists in another database: the job store's keys stay countable.
        "POSEANIMATE_BROKER_URL": f"redis://127.0.0.1:{redis.port}/1",
        "POSEANIMATE_STORAGE_URL": f"file://{tmp / 'storage'}",
        "POSEANIMATE_AUTH_ENABLED": "true",
        "POSEANIMATE_API_KEYS": BENCH_KEY,
        "POSEANIMATE_LINK_SIGNING_SECRET": "bench-link-secret",
        # Far above the offered load: the limiter still runs (one Redis script per request).
        "POSEANIMATE_RATE_LIMIT_REQUESTS_PER_MINUTE": "100000000",
        "POSEANIMATE_RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "100000000",
        "POSEANIMATE_MAX_ACTIVE_JOBS": "100000000",
        "POSEANIMATE_ANIMATOR": "noop",
        "POSEANIMATE_NOOP_STEP_SECONDS": "0.01",
        "POSEANIMATE_WORKER_TMP_DIR": str(tmp),
        "POSEANIMATE_LOG_LEVEL": "INFO",  # the access log is part of the per-request cost
        "POSEANIMATE_LOG_JSON": "true",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("POSEANIMATE_PUBLIC_BASE_URL", "POSEANIMATE_CORS_ORIGINS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def start_stack(api_workers: int | None, keep: bool) -> Iterator[Stack]:
    """The service started with ``launch.local.process_stack`` in a temp dir (the worker on the gpu
    queue only), removed afterwards unless ``keep``."""
    serve_options: list[str] = []
    if api_workers is not None:
        usage = subprocess.run([*poseanimate_command(), "serve", "--help"], capture_output=True, text=True)
        if "--workers" not in usage.stdout:
            raise SystemExit(
                "--api-workers: this `poseanimate serve` has no --workers option (one process per "
                "API instance); measure a multi-process setup with --url"
            )
        serve_options = ["--workers", str(api_workers)]
    tmp = Path(tempfile.mkdtemp(prefix="poseanimate-api-load-"))
    try:
        with process_stack(
            tmp, lambda redis: stack_env(redis, tmp), queues="gpu", serve_options=serve_options
        ) as procs:
            yield Stack(
                url=procs.url,
                key=BENCH_KEY,
                api_workers=api_workers or 1,
                pids={
                    "api": procs.procs["api"].pid,
                    "redis": procs.redis.proc.pid,
                    "worker": procs.procs["worker"].pid,
                },
                redis_url=procs.redis.url,
                processes=procs,
            )
    except MissingService as exc:
        raise SystemExit(f"{exc}: `make services` (or apt-get install redis-server)") from None
    finally:
        if keep:
            print(f"kept {tmp} (logs, storage)", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# CPU accounting (Linux /proc): seconds of user+system time of a process and its descendants
# ---------------------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float]]:
    table = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return table


def machine_busy_cpu() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores; /proc/stat)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return (sum(fields[:8]) - idle) / _TICK  # user nice system idle iowait irq softirq steal
    return 0.0


def tree_cpu(roots: dict[str, int]) -> dict[str, float]:
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    for name, root in roots.items():
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            if pid in table:
                total += table[pid][1]
            stack.extend(children.get(pid, []))
        out[name] = total
    return out


# ---------------------------------------------------------------------------------------------
# load generators
# ---------------------------------------------------------------------------------------------
@dataclass
class Load:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None
    content_type: str | None = None


@dataclass
class Sample:
    latencies: list[float]  # seconds, answered requests
    statuses: Counter[int]
    errors: int  # transport errors / timeouts (no HTTP status)
    elapsed: float  # seconds from the first send to the last answer
    loadgen_cpu_s: float


def hey_version(path: str) -> str:
    with contextlib.suppress(OSError):
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "hey"], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout:
            return f"hey {out.stdout.strip()}"
    return "hey"


def _hey_command(
    hey: str,
    load: Load,
    duration: float,
    concurrency: int,
    per_conn_rate: float | None,
    body_file: Path | None,
) -> list[str]:
    cmd = [hey, "-z", f"{duration}s", "-c", str(concurrency), "-m", load.method, "-o", "csv", "-t", "20"]
    if per_conn_rate:
        cmd += ["-q", f"{per_conn_rate:.6g}"]
    for name, value in load.headers.items():
        cmd += ["-H", f"{name}: {value}"]
    if body_file is not None:
        cmd += ["-D", str(body_file), "-T", load.content_type or "application/octet-stream"]
    return [*cmd, load.url]


def run_hey(
    load: Load,
    *,
    duration: float,
    concurrency: int,
    rate: float | None,
    workdir: Path,
    hey: str,
    procs: int = 1,
) -> Sample:
    """hey, as ``procs`` processes sharing the connections. hey's ``-q`` gives each connection its
    own timer, and all timers of one process start together, so one process offers its load in
    bursts of ``-c`` requests; processes started evenly over one send interval spread the bursts
    (``procs`` x smaller bursts)."""
    body_file = None
    if load.body is not None:
        body_file = workdir / f"body-{len(load.body)}-{hash(load.body) & 0xFFFFFFFF:x}.bin"
        if not body_file.exists():
            body_file.write_bytes(load.body)
    procs = max(1, min(procs if rate else 1, concurrency))
    per_conn = rate / concurrency if rate else None
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    stagger = (1.0 / per_conn) / procs if per_conn else 0.0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    running: list[tuple[float, subprocess.Popen[str]]] = []
    try:
        for i, share in enumerate(shares):
            if i:
                time.sleep(stagger)
            cmd = _hey_command(hey, load, duration, share, per_conn, body_file)
            started = time.perf_counter()
            running.append(
                (started, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
            )
        outputs = []
        for started, proc in running:
            out, err = proc.communicate(timeout=duration + 120)
            if proc.returncode != 0:
                raise RuntimeError(f"hey failed ({proc.returncode}): {err[-2000:]}")
            outputs.append((started, out))
    finally:
        for _, proc in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    first, last = math.inf, 0.0
    for started, text in outputs:
        for row in csv.DictReader(io.StringIO(text)):
            try:
                rt, offset = float(row["response-time"]), float(row["offset"])
                status = int(row["status-code"])
            except (KeyError, TypeError, ValueError):
                continue
            latencies.append(rt)
            statuses[status] += 1
            first, last = min(first, started + offset), max(last, started + offset + rt)
    elapsed = last - first if latencies else duration
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # hey's CSV lists answered requests only; transport errors would show as a rate shortfall.
    return Sample(latencies, statuses, 0, elapsed, cpu)


async def _python_load(load: Load, duration: float, concurrency: int, rate: float | None) -> Sample:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    headers = dict(load.headers)
    if load.content_type:
        headers["Content-Type"] = load.content_type
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=20) as client:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                reply = await client.request(load.method, load.url, headers=headers, content=load.body)
            except httpx.HTTPError:
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            statuses[reply.status_code] += 1

        begin = time.perf_counter()
        end = begin + duration
        if rate:  # open loop: request i is due at begin + i/rate, at most `concurrency` in flight
            gate = asyncio.Semaphore(concurrency)

            async def gated() -> None:
                try:
                    await one()
                finally:
                    gate.release()

            tasks = []
            i = 0
            while True:
                due = begin + i / rate
                if due >= end:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                tasks.append(asyncio.create_task(gated()))
                i += 1
            await asyncio.gather(*tasks)
        else:  # closed loop: `concurrency` connections, each sends when its reply came

            async def worker() -> None:
                while time.perf_counter() < end:
                    await one()

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - begin
    return Sample(latencies, statuses, errors, elapsed, 0.0)


def run_python(load: Load, *, duration: float, concurrency: int, rate: float | None) -> Sample:
    cpu = time.process_time()
    sample = asyncio.run(_python_load(load, duration, concurrency, rate))
    sample.loadgen_cpu_s = time.process_time() - cpu
    return sample


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


# ---------------------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack, workdir: Path) -> None:
        self.args, self.stack, self.workdir = args, stack, workdir
        hey = shutil.which("hey") if args.loadgen in ("auto", "hey") else None
        if args.loadgen == "hey" and hey is None:
            raise SystemExit("--loadgen hey: hey is not installed (apt-get install hey)")
        self.hey = hey
        self.loadgen = (
            {"name": "hey", "version": hey_version(hey), "path": hey}
            if hey
            else {
                "name": "python-httpx",
                "version": f"httpx {httpx.__version__}",
                "note": "fallback client (hey not found or --loadgen python): an asyncio httpx client in "
                "this process, far slower than hey and competing with the API for the same cores; "
                "its figures understate the API",
            }
        )
        self.auth = {"Authorization": f"Bearer {stack.key}"}

    def measure(
        self, name: str, endpoint: str, load: Load, *, duration: float, concurrency: int, rate: float | None
    ) -> dict[str, Any]:
        cpu_before = tree_cpu(self.stack.pids) if self.stack.pids else {}
        busy_before = machine_busy_cpu()
        wall = time.perf_counter()
        if self.hey:
            sample = run_hey(
                load,
                duration=duration,
                concurrency=concurrency,
                rate=rate,
                workdir=self.workdir,
                hey=self.hey,
                procs=self.args.hey_procs,
            )
        else:
            sample = run_python(load, duration=duration, concurrency=concurrency, rate=rate)
        wall = time.perf_counter() - wall
        cpu_after = tree_cpu(self.stack.pids) if self.stack.pids else {}
        busy = machine_busy_cpu() - busy_before
        lat = sorted(sample.latencies)
        ok = sum(n for status, n in sample.statuses.items() if 200 <= status < 300)
        cpu = {k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after}
        cpu["loadgen"] = round(sample.loadgen_cpu_s, 2)
        # Everything else the machine ran meanwhile (this script, the kernel, other users): a large
        # value means the figures are disturbed.
        cpu["other"] = round(max(0.0, busy - sum(cpu.values())), 2)

        def ms(v: float) -> float:
            return round(v * 1000, 2)

        return {
            "name": name,
            "endpoint": endpoint,
            "mode": "fixed-rate" if rate else "closed-loop",
            "offered_rps": rate,
            "concurrency": concurrency,
            "duration_s": duration,
            "requests": len(lat),
            "ok": ok,
            "non_2xx": len(lat) - ok,
            "errors": sample.errors,
            "status_codes": {str(k): v for k, v in sorted(sample.statuses.items())},
            # over the phase (not just first send to last answer, which a short run makes look faster)
            "achieved_rps": round(len(lat) / max(sample.elapsed, duration), 1),
            "latency_ms": {
                "p50": ms(percentile(lat, 50)),
                "p95": ms(percentile(lat, 95)),
                "p99": ms(percentile(lat, 99)),
                "max": ms(lat[-1]) if lat else math.nan,
                "mean": ms(sum(lat) / len(lat)) if lat else math.nan,
            },
            "cpu_s": cpu,
            "cpu_busy_of_machine": round(busy / (wall * (os.cpu_count() or 1)), 2),
        }

    def submit(self, body: bytes, content_type: str) -> dict[str, Any]:
        reply = httpx.post(
            self.stack.url + "/animations",
            content=body,
            headers={**self.auth, "Content-Type": content_type},
            timeout=30,
        )
        if reply.status_code != 202:
            raise RuntimeError(f"submit refused: {reply.status_code} {reply.text[:500]}")
        return dict(reply.json())

    def wait_succeeded(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = httpx.get(f"{self.stack.url}/animations/{job_id}", headers=self.auth, timeout=10).json()
            if job.get("status") == "succeeded":
                return job
            if job.get("status") in ("failed", "canceled"):
                raise RuntimeError(f"the probe job ended {job.get('status')}: {job.get('error')}")
            time.sleep(0.2)
        raise TimeoutError(f"the probe job did not succeed in {timeout} s (is a worker running?): {job}")

    def run(self) -> list[dict[str, Any]]:
        a = self.args
        png = make_png(a.image_size)
        self.png_bytes = len(png)
        bodies = {"multipart": (multipart_body(png), MULTIPART_TYPE), "json": (json_body(png), JSON_TYPE)}
        self.body_bytes = {k: len(v[0]) for k, v in bodies.items()}
        probe = self.submit(*bodies["multipart"])
        job = self.wait_succeeded(probe["id"], timeout=a.job_timeout)
        assert job["output"] and job["output"]["video_url"]
        if not a.keep_worker:
            self.stack.stop_worker()
        status_load = Load("GET", f"{self.stack.url}/animations/{probe['id']}", self.auth)
        results: list[dict[str, Any]] = []
        if "status" in a.phases:
            results += self.status_phases(status_load)
        for kind, (body, ctype) in bodies.items():
            if kind in a.phases:
                results += self.submit_phases(kind, body, ctype)
        return results

    def status_phases(self, status_load: Load) -> list[dict[str, Any]]:
        a = self.args
        results = []
        # warm-up: connections, code paths, allocator
        self.measure(
            "warmup", "", status_load, duration=a.warmup, concurrency=a.status_concurrency, rate=a.status_rate
        )
        results.append(
            self.measure(
                "status @ fixed rate",
                "GET /animations/{id}",
                status_load,
                duration=a.duration,
                concurrency=a.status_concurrency,
                rate=a.status_rate,
            )
        )
        results.append(
            self.measure(
                "status, closed loop",
                "GET /animations/{id}",
                status_load,
                duration=a.duration,
                concurrency=a.status_concurrency,
                rate=None,
            )
        )
        return results

    def submit_phases(self, kind: str, body: bytes, ctype: str) -> list[dict[str, Any]]:
        a = self.args
        results = []
        load = Load("POST", self.stack.url + "/animations", self.auth, body, ctype)
        self.measure(
            "warmup", "", load, duration=a.warmup, concurrency=a.submit_concurrency, rate=a.submit_rate
        )
        self.stack.reset_queue()
        results.append(
            self.measure(
                f"submit {kind} @ fixed rate",
                f"POST /animations ({kind})",
                load,
                duration=a.duration,
                concurrency=a.submit_concurrency,
                rate=a.submit_rate,
            )
        )
        self.stack.reset_queue()
        results.append(
            self.measure(
                f"submit {kind}, closed loop",
                f"POST /animations ({kind})",
                load,
                duration=a.duration,
                concurrency=a.submit_concurrency,
                rate=None,
            )
        )
        self.stack.reset_queue()
        return results


def evaluate_targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        if r["name"] == "status @ fixed rate":
            out.append(
                {
                    "target": f"status p99 < {TARGETS['status_p99_ms']:g} ms at {TARGETS['status_rate']:g} req/s",
                    "offered_rps": r["offered_rps"],
                    "achieved_rps": r["achieved_rps"],
                    "p99_ms": r["latency_ms"]["p99"],
                    "holds": bool(
                        r["latency_ms"]["p99"] < TARGETS["status_p99_ms"]
                        and (r["offered_rps"] or 0) >= TARGETS["status_rate"]
                        and r["achieved_rps"] >= 0.95 * TARGETS["status_rate"]
                        and r["non_2xx"] == 0
                        and r["errors"] == 0
                    ),
                }
            )
        elif r["name"].startswith("submit") and r["mode"] == "fixed-rate":
            out.append(
                {
                    "target": f"{r['endpoint']}: p99 < {TARGETS['submit_p99_ms']:g} ms",
                    "offered_rps": r["offered_rps"],
                    "achieved_rps": r["achieved_rps"],
                    "p99_ms": r["latency_ms"]["p99"],
                    "holds": bool(
                        r["latency_ms"]["p99"] < TARGETS["submit_p99_ms"]
                        and r["non_2xx"] == 0
                        and r["errors"] == 0
                    ),
                }
            )
    return out


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def print_table(report: dict[str, Any]) -> None:
    t = report["target"]
    lg = report["loadgen"]
    print(
        f"# API load benchmark — {t['url']} ({'started by this script' if t['self_started'] else 'external'}, "
        f"{t['api_workers'] or '?'} API worker process(es)), load generator {lg['version']}, "
        f"{report['machine']['cpus']} CPUs ({report['machine']['cpu_model']})"
    )
    print(
        f"\nimage: {report['image']['width']}x{report['image']['height']} PNG, {report['image']['png_bytes']} bytes "
        f"(multipart body {report['image']['body_bytes']['multipart']} B, JSON/base64 body "
        f"{report['image']['body_bytes']['json']} B); {report['settings']['duration_s']} s per phase"
    )
    if lg.get("note"):
        print(f"\nNOTE: {lg['note']}")
    print(
        "\n| phase | offered req/s | conns | requests | achieved req/s | p50 ms | p95 ms | p99 ms | max ms "
        "| non-2xx | CPU s api / redis / loadgen / other | machine busy |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for r in report["results"]:
        lat, cpu = r["latency_ms"], r["cpu_s"]
        cpu_text = " / ".join(f"{cpu.get(k, 0):.1f}" for k in ("api", "redis", "loadgen", "other"))
        print(
            f"| {r['name']} | {r['offered_rps'] or 'max'} | {r['concurrency']} | {r['requests']} "
            f"| {r['achieved_rps']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | {lat['max']} "
            f"| {r['non_2xx'] + r['errors']} | {cpu_text} | {100 * r['cpu_busy_of_machine']:.0f}% |"
        )
    cpus = report["machine"]["cpus"] or 1
    disturbed = [
        r["name"] for r in report["results"] if r["cpu_s"].get("other", 0) > 0.1 * cpus * r["duration_s"]
    ]
    if disturbed:
        print(
            f"\nWARNING: other work used over 10% of the machine during: {', '.join(disturbed)} "
            "(CPU column 'other'): those figures are disturbed; rerun on a quiet machine"
        )
    print("\n| target | offered req/s | achieved req/s | p99 ms | holds |\n|---|---:|---:|---:|---|")
    for tg in report["targets"]:
        print(
            f"| {tg['target']} | {tg['offered_rps']} | {tg['achieved_rps']} | {tg['p99_ms']} "
            f"| {'yes' if tg['holds'] else 'NO'} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="an API already running (then --key); default: start a stack")
    parser.add_argument("--key", help="API key for --url")
    parser.add_argument(
        "--api-workers",
        type=int,
        default=None,
        help="API processes, where `poseanimate serve` has a --workers option (default: its default, 1)",
    )
    parser.add_argument("--loadgen", choices=["auto", "hey", "python"], default="auto")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before a phase group")
    parser.add_argument("--status-rate", type=float, default=1000.0, help="offered GET req/s")
    parser.add_argument("--status-concurrency", type=int, default=50, help="connections for GET")
    parser.add_argument("--submit-rate", type=float, default=20.0, help="offered POST req/s")
    parser.add_argument("--submit-concurrency", type=int, default=4, help="connections for POST")
    parser.add_argument("--image-size", type=int, default=512, help="PNG side, pixels")
    parser.add_argument("--job-timeout", type=float, default=120.0, help="wait for the probe job, s")
    parser.add_argument(
        "--keep-worker", action="store_true", help="leave the no-op worker running during the phases"
    )
    parser.add_argument(
        "--hey-procs",
        type=int,
        default=5,
        help="fixed-rate phases: split the connections over this many hey processes started "
        "evenly staggered over one send interval (hey's per-connection timers start together)",
    )
    parser.add_argument(
        "--phases",
        type=lambda v: set(v.split(",")),
        default={"status", "multipart", "json"},
        help="comma-separated subset of status,multipart,json (default: all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, storage)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.url and not args.key:
        parser.error("--url needs --key")

    with contextlib.ExitStack() as exit_stack:
        if args.url:
            stack = Stack(url=args.url.rstrip("/"), key=args.key)
        else:
            stack = exit_stack.enter_context(start_stack(args.api_workers, args.keep))
        workdir = Path(exit_stack.enter_context(tempfile.TemporaryDirectory(prefix="api-load-bodies-")))
        bench = Bench(args, stack, workdir)
        results = bench.run()

    report = {
        "tool": "bench/api_load.py",
        "machine": machine(),
        "target": {"url": stack.url, "self_started": not args.url, "api_workers": stack.api_workers},
        "loadgen": bench.loadgen,
        "image": {
            "width": args.image_size,
            "height": args.image_size,
            "png_bytes": bench.png_bytes,
            "body_bytes": bench.body_bytes,
        },
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "status_rate": args.status_rate,
            "status_concurrency": args.status_concurrency,
            "submit_rate": args.submit_rate,
            "submit_concurrency": args.submit_concurrency,
            "hey_procs": args.hey_procs if bench.hey else None,
            "job_fields": JOB_FIELDS,
        },
        "results": results,
        "targets": evaluate_targets(results),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
