"""The whole service on real parts, once per session: redis-server, a moto S3 server, a webhook
receiver, the API under uvicorn on a real socket, and ``poseanimate worker`` (gpu + io consumers)
running the tiny random-weight model on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
from tests.integration.servers import (  # noqa: E402
    RedisServer,
    WebhookReceiver,
    free_port,
    moto_s3,
    redis_server,
    wait_for_port,
    webhook_receiver,
)
from worker.webhooks import generate_secret  # noqa: E402

API_KEY = "sk-integration"
BUCKET = "poseanimate-it"


@dataclass
class Service:
    api: httpx.Client
    api_url: str
    env: dict[str, str]
    redis: RedisServer
    s3_endpoint: str
    receiver: WebhookReceiver
    webhook_secret: str
    worker_metrics_url: str
    worker_log: Path

    def log_tail(self, lines: int = 60) -> str:
        text = self.worker_log.read_text(errors="replace") if self.worker_log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_job(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            job = self.api.get(f"/animations/{job_id}").json()
            if done(job):
                return job
            time.sleep(0.1)
        raise AssertionError(
            f"job {job_id} did not get there in {timeout}s: {job}\n--- worker log ---\n{self.log_tail()}"
        )

    def s3(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@contextmanager
def _start_api(settings: Any) -> Iterator[str]:
    import uvicorn

    from api.main import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    from worker.settings import Settings

    tmp = tmp_path_factory.mktemp("service")
    secret = generate_secret()
    with (
        redis_server(tmp / "redis") as redis_srv,
        moto_s3(BUCKET) as s3_endpoint,
        webhook_receiver() as receiver,
    ):
        env = {
            "POSEANIMATE_REDIS_URL": redis_srv.url,
            "POSEANIMATE_STORAGE_URL": f"s3://{BUCKET}/it",
            "POSEANIMATE_S3_ENDPOINT_URL": s3_endpoint,
            "POSEANIMATE_S3_ACCESS_KEY_ID": "test",
            "POSEANIMATE_S3_SECRET_ACCESS_KEY": "test",
            "POSEANIMATE_API_KEYS": API_KEY,
            "POSEANIMATE_WEBHOOK_SECRET": secret,
            "POSEANIMATE_ALLOW_PRIVATE_URLS": "true",
            "POSEANIMATE_WEBHOOK_BACKOFF_BASE_S": "0.2",
            "POSEANIMATE_WEBHOOK_BACKOFF_MAX_S": "1",
            "POSEANIMATE_WEBHOOK_MAX_ATTEMPTS": "4",
            "POSEANIMATE_MODEL": "tiny",
            "POSEANIMATE_MODEL_CACHE_DIR": str(tmp / "model-cache"),
            "POSEANIMATE_DEVICE": "cpu",
            "POSEANIMATE_LOCK_TTL_S": "3",
            "POSEANIMATE_CANCEL_POLL_INTERVAL_S": "0.1",
            "POSEANIMATE_PROGRESS_INTERVAL_S": "0.2",
            "POSEANIMATE_WORKER_TMP_DIR": str(tmp),
            "POSEANIMATE_LOG_LEVEL": "INFO",
        }
        settings = Settings(
            _env_file=None, **{k.removeprefix("POSEANIMATE_").lower(): v for k, v in env.items()}
        )
        worker_env = {
            **os.environ,
            **env,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "2",
            "PYTHONUNBUFFERED": "1",
        }
        metrics_port = free_port()
        console_script = Path(sys.executable).parent / "poseanimate"
        command = [str(console_script)] if console_script.exists() else [sys.executable, "-m", "worker.cli"]
        log_path = tmp / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [
                    *command,
                    "worker",
                    "--queues",
                    "gpu,io",
                    "--metrics-port",
                    str(metrics_port),
                    "--shutdown-timeout",
                    "10",
                ],
                env=worker_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        try:
            wait_for_port(metrics_port, timeout=30)
            headers = {"Authorization": f"Bearer {API_KEY}"}
            with (
                _start_api(settings) as api_url,
                httpx.Client(base_url=api_url, headers=headers, timeout=30) as api,
            ):
                yield Service(
                    api=api,
                    api_url=api_url,
                    env=env,
                    redis=redis_srv,
                    s3_endpoint=s3_endpoint,
                    receiver=receiver,
                    webhook_secret=secret,
                    worker_metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                    worker_log=log_path,
                )
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
