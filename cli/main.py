"""``poseanimate``: ``serve`` (the API), ``worker`` (Celery consumers), and the engine's ``animate`` and
``make-tiny-model`` (registered from ``cli.engine_commands``).

``serve`` never imports torch. ``worker`` sets ``CUDA_VISIBLE_DEVICES`` and the Prometheus
multiprocess directory before any child process starts, then supervises one Celery worker per
queue kind:

- ``gpu``: prefork pool, concurrency 1 (one job per GPU); the model loads in the pool child, after
  the fork, so CUDA is never initialised in a process that forks;
- ``io``: thread pool (webhook deliveries wait on the network, not the CPU), so a slow receiver
  never occupies the GPU process.

The supervisor serves the aggregated ``/metrics`` of both on one port and forwards SIGTERM/SIGINT
(warm shutdown: the running job finishes, or is redelivered if it cannot).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENGINE_COMMANDS = ("animate", "make-tiny-model")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.server import server_options
    from jobs.logs import configure_logging
    from jobs.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        "api.main:create_served_app",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,  # our JSON logging, not uvicorn's
        access_log=False,  # the request middleware logs requests (without credentials)
        proxy_headers=args.proxy_headers,
        timeout_graceful_shutdown=30,
        # h11 with bounded request heads, head/body read timeouts, a connection cap (api/server.py)
        **server_options(),
    )
    return 0


def _celery_command(queue: str, concurrency: int, loglevel: str) -> list[str]:
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
        "worker.celery_app:app",
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


def _serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    # POSEANIMATE_WORKER_METRICS_HOST: loopback unless a scraper must reach it (containers: 0.0.0.0).
    start_http_server(port, addr=host, registry=registry)


PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> Any:
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


def _worker(args: argparse.Namespace) -> int:
    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = set(queues) - {"gpu", "io"}
    if not queues or unknown:
        print(f"poseanimate: error: --queues takes gpu and/or io, got {args.queues!r}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.gpu is not None:
        # Before any child exists, so torch in the job process only ever sees this GPU.
        env["CUDA_VISIBLE_DEVICES"] = str(args.gpu)
    from jobs.settings import get_settings

    settings = get_settings()
    metrics_dir = Path(tempfile.mkdtemp(prefix="poseanimate-metrics-"))
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    port = (
        args.metrics_port if args.metrics_port is not None else settings.worker_metrics_port + (args.gpu or 0)
    )
    if port:
        _serve_metrics(port, settings.worker_metrics_host)

    children: list[subprocess.Popen[bytes]] = []
    die_with_supervisor = _die_with_supervisor()
    for queue in queues:
        child_env = dict(env, POSEANIMATE_PRELOAD_MODEL="true" if queue == "gpu" else "false")
        children.append(
            subprocess.Popen(
                _celery_command(queue, args.io_concurrency, args.loglevel),
                env=child_env,
                preexec_fn=die_with_supervisor,
            )
        )

    def forward(signum: int, _: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # A warm shutdown lets the running job finish; it cannot run past the hard time limit anyway.
    shutdown_timeout = (
        args.shutdown_timeout if args.shutdown_timeout is not None else settings.hard_time_limit_s + 60.0
    )
    code = 0
    try:
        # If one consumer dies the worker is degraded: stop the other and let the orchestrator restart us.
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        code = next((child.returncode for child in children if child.returncode), 0)
        forward(signal.SIGTERM, None)
        for child in children:
            try:
                child.wait(timeout=shutdown_timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return code


def _engine_stub(args: argparse.Namespace) -> int:
    print(
        f"poseanimate: error: '{args.command}' needs the engine extras (pip install 'poseanimate[engine]')",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poseanimate", description="PoseAnimate service and tools")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show third-party log output (absl, mediapipe, transformers)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from a proxy")
    serve.set_defaults(func=_serve)

    work = sub.add_parser("worker", help="run Celery consumers for the gpu and/or io queues")
    work.add_argument("--gpu", type=int, default=None, help="GPU index (sets CUDA_VISIBLE_DEVICES)")
    work.add_argument("--queues", default="gpu,io", help="comma-separated: gpu, io (default: both)")
    work.add_argument("--io-concurrency", type=int, default=8, help="threads delivering webhooks")
    work.add_argument(
        "--metrics-port", type=int, default=None, help="default: POSEANIMATE_WORKER_METRICS_PORT + gpu"
    )
    work.add_argument("--loglevel", default="INFO")
    work.add_argument(
        "--shutdown-timeout",
        type=float,
        default=None,
        help="seconds a warm shutdown waits for the running job (default: the hard time limit + 60)",
    )
    work.set_defaults(func=_worker)

    from cli.submit_commands import add_submit_commands  # torch-free: always there

    add_submit_commands(sub)

    try:
        from cli.engine_commands import add_engine_commands
        from cli.eval_commands import add_eval_commands
        from cli.poses_commands import add_poses_commands
        from cli.random_model_commands import add_random_model_commands
    except ImportError:
        for name in (*ENGINE_COMMANDS, "poses", "make-random-model", "eval"):
            sub.add_parser(name, help="(needs the engine extras)").set_defaults(func=_engine_stub)
    else:
        add_engine_commands(sub)
        add_eval_commands(sub)
        add_poses_commands(sub)
        add_random_model_commands(sub)
    return parser


def quiet_third_party_logs() -> None:
    """absl/mediapipe (C++ glog), TensorFlow Lite, transformers and diffusers print warnings and
    progress a user cannot act on; keep them to errors unless ``--verbose``."""
    import logging

    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("absl", "mediapipe", "transformers", "diffusers", "huggingface_hub", "PIL"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_third_party_logs()
    try:
        return int(args.func(args))
    except ValueError as exc:  # a user error from an engine command: one line, no traceback
        print(f"poseanimate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
