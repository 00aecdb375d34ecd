"""``poseanimate``: ``serve`` (the API), ``worker`` (Celery consumers), and the engine's ``animate`` and
``make-tiny-model`` (registered from ``cli.engine_commands``).

Argument parsing only: ``serve`` runs the API under uvicorn (never importing torch); ``worker`` hands
its options to the supervisor in ``launch.supervisor`` (one Celery consumer per queue kind, their
``/metrics``, warm shutdown).
"""

from __future__ import annotations

import argparse
import os
import sys

ENGINE_COMMANDS = ("animate", "make-tiny-model")
# Commands that may load MediaPipe, whose C++ logs go to fd 2 (cli.native_logs filters them unless
# --verbose). Never the long-running serve/worker: their stderr is left alone.
NATIVE_LOGGING_COMMANDS = frozenset({*ENGINE_COMMANDS, "poses", "eval"})


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


def _worker(args: argparse.Namespace) -> int:
    from launch.supervisor import parse_queues, supervise

    try:
        queues = parse_queues(args.queues)
    except ValueError as exc:
        print(f"poseanimate: error: {exc}", file=sys.stderr)
        return 2
    return supervise(
        queues,
        gpu=args.gpu,
        io_concurrency=args.io_concurrency,
        metrics_port=args.metrics_port,
        loglevel=args.loglevel,
        shutdown_timeout=args.shutdown_timeout,
    )


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
    restore_stderr = None
    if not args.verbose:
        quiet_third_party_logs()
        if args.command in NATIVE_LOGGING_COMMANDS:
            from cli.native_logs import filter_native_logs

            restore_stderr = filter_native_logs()
    try:
        return int(args.func(args))
    except ValueError as exc:  # a user error from an engine command: one line, no traceback
        print(f"poseanimate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if restore_stderr is not None:
            restore_stderr()


if __name__ == "__main__":
    sys.exit(main())
