"""The worker supervisor behind ``poseanimate worker``.

It sets ``CUDA_VISIBLE_DEVICES`` and the Prometheus multiprocess directory before any child process
starts, then supervises one Celery consumer per queue kind:

- ``gpu``: prefork pool, concurrency 1 (one job per GPU); the model loads in the pool child, after
  the fork, so CUDA is never initialised in a process that forks;
- ``io``: two thread-pool consumers, one of the ``io`` queue (driving-video extractions) and one
  of the ``webhooks`` queue (deliveries wait on the network, not the CPU), so a slow receiver never
  occupies the GPU process and queued extractions never delay a webhook (issue 24, M1).

The supervisor serves the aggregated ``/metrics`` of both on one port and forwards SIGTERM/SIGINT
(warm shutdown: the running job finishes, or is redelivered if it cannot).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from launch.commands import celery_argv

QUEUES = ("gpu", "io")
# The Celery queues each kind's consumers take, one consumer (process) per queue.
CONSUMERS = {"gpu": ("gpu",), "io": ("io", "webhooks")}
PR_SET_PDEATHSIG = 1


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """The consumers' aggregated ``/metrics`` (Prometheus multiprocess mode) on ``host:port``."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # POSEANIMATE_WORKER_METRICS_HOST: loopback unless a scraper must reach it (containers: 0.0.0.0).
    start_http_server(port, addr=host, registry=registry)


def die_with_supervisor() -> Any:
    """A preexec_fn for each consumer: SIGTERM it (a warm shutdown) when the supervisor dies, even by
    SIGKILL, so no orphaned consumer goes on taking jobs. Consumers stay in the supervisor's process
    group, so signalling the group (`make down`, an orchestrator) reaches them and their pool too.
    libc is resolved here, in the parent: the child between fork and exec only makes the call."""
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: the process group is the only tie
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def parse_queues(spec: str) -> list[str]:
    """``"gpu,io"`` -> ``["gpu", "io"]``; ``ValueError`` for an empty list or an unknown queue."""
    queues = [q.strip() for q in spec.split(",") if q.strip()]
    if not queues or set(queues) - set(QUEUES):
        raise ValueError(f"--queues takes gpu and/or io, got {spec!r}")
    return queues


def supervise(
    queues: list[str],
    *,
    gpu: int | None = None,
    io_concurrency: int = 8,
    metrics_port: int | None = None,
    loglevel: str = "INFO",
    shutdown_timeout: float | None = None,
) -> int:
    """Run one Celery consumer per queue until one of them ends; return its exit code.

    ``metrics_port`` None: ``POSEANIMATE_WORKER_METRICS_PORT + gpu``; 0: no ``/metrics``.
    ``shutdown_timeout`` None: the hard time limit + 60 s."""
    env = dict(os.environ)
    if gpu is not None:
        # Before any child exists, so torch in the job process only ever sees this GPU.
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from jobs.settings import get_settings

    settings = get_settings()
    metrics_dir = Path(tempfile.mkdtemp(prefix="poseanimate-metrics-"))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    port = metrics_port if metrics_port is not None else settings.worker_metrics_port + (gpu or 0)
    if port:
        serve_metrics(port, settings.worker_metrics_host)

    children: list[subprocess.Popen[bytes]] = []
    preexec = die_with_supervisor()
    for queue in (consumer for kind in queues for consumer in CONSUMERS[kind]):
        child_env = dict(env, POSEANIMATE_PRELOAD_MODEL="true" if queue == "gpu" else "false")
        children.append(
            subprocess.Popen(celery_argv(queue, io_concurrency, loglevel), env=child_env, preexec_fn=preexec)
        )

    def forward(signum: int, _: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # A warm shutdown lets the running job finish; it cannot run past the hard time limit anyway.
    timeout = shutdown_timeout if shutdown_timeout is not None else settings.hard_time_limit_s + 60.0
    code = 0
    try:
        # If one consumer dies the worker is degraded: stop the other and let the orchestrator restart us.
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = next((child.returncode for child in children if child.returncode), 0)
        forward(signal.SIGTERM, None)
        for child in children:
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code
