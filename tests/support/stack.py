"""A whole test stack on real parts: redis-server (optionally with AOF), a moto S3 server (optionally
behind a ``TcpProxy`` to fake outages), a webhook receiver, the API under uvicorn on a real socket,
and ``poseanimate worker`` (gpu + io consumers) with the tiny model or the noop backend.

``tests/integration/conftest.py`` starts one per session (the ``service`` fixture); the fault and load
tests start their own, to break them."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from jobs.webhooks import generate_secret
from tests.support.servers import (
    RedisServer,
    TcpProxy,
    WebhookReceiver,
    WorkerProcess,
    free_port,
    moto_s3,
    redis_server,
    wait_for_port,
    webhook_receiver,
    worker_process,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    worker: WorkerProcess | None = None
    s3_proxy: TcpProxy | None = None
    tmp: Path | None = None

    def log_tail(self, lines: int = 60) -> str:
        text = self.worker_log.read_text(errors="replace") if self.worker_log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_for_job(
        self, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < deadline:
            reply = self.api.get(f"/animations/{job_id}")
            if reply.status_code == 200:  # 503 while a dependency is down: keep waiting
                job = reply.json()
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
def start_api(settings: Any) -> Iterator[str]:
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


def service_env(tmp: Path, redis_url: str, s3_endpoint: str, secret: str, **overrides: str) -> dict[str, str]:
    """POSEANIMATE_* for a test stack: S3 storage, one API key, fast retries and locks, the tiny
    model on the CPU; ``overrides`` (e.g. ``ANIMATOR="noop"``) win."""
    env = {
        "POSEANIMATE_REDIS_URL": redis_url,
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
    env.update({f"POSEANIMATE_{k.upper()}": v for k, v in overrides.items()})
    return env


def local_storage_env(tmp: Path, redis_url: str, **overrides: str) -> dict[str, str]:
    """:func:`service_env` with local-folder storage (``tmp/storage``, no S3) and a fresh webhook
    secret, for stacks that need Redis and a worker only."""
    env = service_env(
        tmp,
        redis_url,
        "",
        generate_secret(),
        storage_url=f"file:{tmp}/storage",
        env="development",
        **overrides,
    )
    env.pop("POSEANIMATE_S3_ENDPOINT_URL")
    return env


def settings_from_env(env: dict[str, str]) -> Any:
    from jobs.settings import Settings

    return Settings(_env_file=None, **{k.removeprefix("POSEANIMATE_").lower(): v for k, v in env.items()})


def process_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a worker or API child process."""
    return {
        **os.environ,
        **env,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "2",
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def running_service(
    tmp: Path,
    *,
    redis_appendonly: bool = False,
    s3_proxy: bool = False,
    worker: bool = True,
    **overrides: str,
) -> Iterator[Service]:
    """The whole service on real parts: redis-server, moto S3 (behind a ``TcpProxy`` when
    ``s3_proxy``), a webhook receiver, the API under uvicorn and ``poseanimate worker``."""
    secret = generate_secret()
    with (
        redis_server(tmp / "redis", appendonly=redis_appendonly) as redis_srv,
        moto_s3(BUCKET) as moto_endpoint,
        webhook_receiver() as receiver,
    ):
        proxy = TcpProxy(int(moto_endpoint.rsplit(":", 1)[1])) if s3_proxy else None
        s3_endpoint = proxy.url if proxy else moto_endpoint
        env = service_env(tmp, redis_srv.url, s3_endpoint, secret, **overrides)
        metrics_port = free_port()
        with contextlib.ExitStack() as stack:
            worker_proc = (
                stack.enter_context(worker_process(process_env(env), tmp, metrics_port=metrics_port))
                if worker
                else None
            )
            headers = {"Authorization": f"Bearer {API_KEY}"}
            api_url = stack.enter_context(start_api(settings_from_env(env)))
            api = stack.enter_context(httpx.Client(base_url=api_url, headers=headers, timeout=30))
            try:
                yield Service(
                    api=api,
                    api_url=api_url,
                    env=env,
                    redis=redis_srv,
                    s3_endpoint=s3_endpoint,
                    receiver=receiver,
                    webhook_secret=secret,
                    worker_metrics_url=f"http://127.0.0.1:{metrics_port}/metrics",
                    worker_log=tmp / "worker.log",
                    worker=worker_proc,
                    s3_proxy=proxy,
                    tmp=tmp,
                )
            finally:
                if proxy:
                    proxy.close()
