"""The process command lines of ``launch`` (what ``make up``, the benchmarks, the tests and
``poseanimate worker`` itself start) and the supervisor's queue list."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from launch.commands import celery_argv, redis_argv, serve_argv, worker_argv
from launch.supervisor import parse_queues


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_gpu_consumer_is_one_prefork_process_and_io_a_thread_pool():
    gpu = celery_argv("gpu", 8, "INFO")
    assert gpu[:4] == [sys.executable, "-m", "celery", "-A"] and _option(gpu, "-A") == "worker.celery_app:app"
    assert (_option(gpu, "--pool"), _option(gpu, "--concurrency")) == ("prefork", "1")
    io = celery_argv("io", 8, "DEBUG", app="tests.integration.short_visibility:app")
    assert (_option(io, "--pool"), _option(io, "--concurrency")) == ("threads", "8")
    assert (
        _option(io, "-A") == "tests.integration.short_visibility:app" and _option(io, "--loglevel") == "DEBUG"
    )
    for argv, queue in ((gpu, "gpu"), (io, "io")):
        assert _option(argv, "--queues") == queue and _option(argv, "--hostname").startswith(f"{queue}-")
        assert _option(argv, "--prefetch-multiplier") == "1"


def test_serve_worker_and_redis_command_lines():
    serve = serve_argv(8123)
    assert serve[-5:] == ["serve", "--host", "127.0.0.1", "--port", "8123"]
    worker = worker_argv(queues="gpu", metrics_port=9200, shutdown_timeout=2.5, gpu=1)
    assert worker[worker.index("worker") :] == [
        *("worker", "--queues", "gpu", "--metrics-port", "9200"),
        *("--shutdown-timeout", "2.5", "--gpu", "1"),
    ]
    redis = redis_argv("/usr/bin/redis-server", 6390, Path("/tmp/r"), appendonly=True, logfile="")
    assert _option(redis, "--bind") == "127.0.0.1" and _option(redis, "--appendfsync") == "always"
    assert _option(redis, "--port") == "6390" and _option(redis, "--dir") == "/tmp/r"


@pytest.mark.parametrize(("spec", "queues"), [("gpu,io", ["gpu", "io"]), (" io ", ["io"]), ("gpu,", ["gpu"])])
def test_queue_lists(spec: str, queues: list[str]):
    assert parse_queues(spec) == queues


@pytest.mark.parametrize("spec", ["", ",", "gpu,cpu", "celery"])
def test_unknown_or_empty_queue_lists_are_refused(spec: str):
    with pytest.raises(ValueError, match="--queues takes gpu and/or io"):
        parse_queues(spec)


def test_the_io_kind_runs_webhooks_on_their_own_thread_pool_consumer():
    """M1 (issue 24): webhooks and extractions shared one io consumer, so one key's queued
    extractions held another key's webhook for 117 s. Each Celery queue has its own consumer."""
    from jobs.queue import WEBHOOK_QUEUE, celery_config
    from jobs.settings import Settings
    from launch.supervisor import CONSUMERS

    assert CONSUMERS["io"] == ("io", WEBHOOK_QUEUE) and CONSUMERS["gpu"] == ("gpu",)
    hooks = celery_argv(WEBHOOK_QUEUE, 8, "INFO")
    assert _option(hooks, "--queues") == "webhooks" and _option(hooks, "--pool") == "threads"
    routes = celery_config(Settings(_env_file=None))["task_routes"]
    assert routes["poseanimate.deliver_webhook"] == {"queue": WEBHOOK_QUEUE}
    assert {routes[t]["queue"] for t in ("poseanimate.extract_poses", "poseanimate.extract_job_poses")} == {
        "io"
    }
