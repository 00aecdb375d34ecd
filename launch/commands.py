"""The command lines of the processes the service is made of: Redis, the API, the worker (and the
Celery consumers the worker supervises).

One definition, used wherever they are started: ``make up`` (deploy/local/stack.py), the test
launchers (tests/support), the benchmarks (bench/) and ``poseanimate worker`` itself, so all of them
run the same processes.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def poseanimate_command() -> list[str]:
    """The ``poseanimate`` console script of this interpreter's environment (or ``-m cli.main``)."""
    console_script = Path(sys.executable).parent / "poseanimate"
    return [str(console_script)] if console_script.exists() else [sys.executable, "-m", "cli.main"]


def serve_argv(port: int, host: str = "127.0.0.1") -> list[str]:
    """``poseanimate serve``: the API under uvicorn."""
    return [*poseanimate_command(), "serve", "--host", host, "--port", str(port)]


def worker_argv(
    *,
    queues: str = "gpu,io",
    metrics_port: int,
    shutdown_timeout: float | None = None,
    gpu: int | None = None,
) -> list[str]:
    """``poseanimate worker``: the supervisor of the gpu and/or io Celery consumers."""
    argv = [*poseanimate_command(), "worker", "--queues", queues, "--metrics-port", str(metrics_port)]
    if shutdown_timeout is not None:
        argv += ["--shutdown-timeout", f"{shutdown_timeout:g}"]
    if gpu is not None:
        argv += ["--gpu", str(gpu)]
    return argv


def redis_argv(binary: str, port: int, workdir: Path, *, appendonly: bool, logfile: str) -> list[str]:
    """``redis-server`` on loopback; ``appendonly``: every write persisted (a restart keeps jobs).
    ``logfile=""`` logs to stdout."""
    persistence = ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
    return [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        *persistence,
        "--dir", str(workdir),
        "--logfile", logfile,
    ]  # fmt: skip


def celery_argv(queue: str, concurrency: int, loglevel: str, app: str = "worker.celery_app:app") -> list[str]:
    """One Celery consumer of ``queue``, as ``poseanimate worker`` starts it: ``gpu`` is a prefork pool
    of one process (one job per GPU), ``io`` and ``webhooks`` a thread pool of ``concurrency`` threads."""
    pool = (
        ["--pool", "prefork", "--concurrency", "1"]
        if queue == "gpu"
        else ["--pool", "threads", "--concurrency", str(concurrency)]
    )
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--queues",
        queue,
        *pool,
        "--hostname",
        f"{queue}-{os.getpid()}@{socket.gethostname()}",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
        "--prefetch-multiplier",
        "1",
    ]
