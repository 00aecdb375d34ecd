"""The `poseanimate` command: subcommands, argument errors, and `serve` answering over HTTP."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from cli.main import build_parser, main
from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]


def test_all_subcommands_are_registered():
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"serve", "worker", "animate", "make-tiny-model"} <= set(choices)


def test_worker_refuses_unknown_queues(capsys):
    assert main(["worker", "--queues", "gpu,bogus"]) == 2
    assert "--queues" in capsys.readouterr().err


def test_serve_runs_the_api(redis_srv, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "POSEANIMATE_REDIS_URL": redis_srv.url,
        "POSEANIMATE_STORAGE_URL": f"file://{tmp_path}",
        "POSEANIMATE_AUTH_ENABLED": "false",
        "POSEANIMATE_LINK_SIGNING_SECRET": "a-link-secret-of-its-own",  # production mode requires one
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ready"
        assert httpx.get(f"http://127.0.0.1:{port}/animations").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
    assert '"msg": "request"' in output  # JSON access log
    assert "Authorization" not in output
