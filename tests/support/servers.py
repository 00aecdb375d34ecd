"""Real servers for the service tests: redis-server, a moto S3 endpoint, a webhook receiver, a fault
proxy, ``poseanimate worker`` as a child process.

Each starts on a free loopback port and is stopped by its fixture. Shared by the conftests of
tests/api, tests/worker and tests/integration. Ports, Redis and the command lines come from
``launch`` (what ``make up`` and the benchmarks use too); they are re-exported here for the tests.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launch.commands import celery_argv, worker_argv
from launch.local import MissingService, RedisServer, free_port, redis_server, wait_for_port

__all__ = [
    "MissingService",
    "Received",
    "RedisServer",
    "TcpProxy",
    "WebhookReceiver",
    "WorkerProcess",
    "free_port",
    "moto_s3",
    "redis_server",
    "wait_for_port",
    "webhook_receiver",
    "worker_process",
]


@contextmanager
def moto_s3(bucket: str = "poseanimate-test") -> Iterator[str]:
    """A moto S3 server over real HTTP; yields its endpoint URL (the bucket exists)."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records every POST; ``responses`` (a list of status codes) scripts the answers, then 200."""

    port: int
    requests: queue.Queue[Received] = field(default_factory=queue.Queue)
    responses: list[int] = field(default_factory=list)
    delay_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def get(self, timeout: float = 20.0) -> Received:
        return self.requests.get(timeout=timeout)

    def drain(self) -> list[Received]:
        out = []
        while not self.requests.empty():
            out.append(self.requests.get_nowait())
        return out


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(port=free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if receiver.delay_s:
                time.sleep(receiver.delay_s)
            code = receiver.responses.pop(0) if receiver.responses else 200
            receiver.requests.put(Received(self.path, dict(self.headers.items()), body))
            self.send_response(code)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", receiver.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


class TcpProxy:
    """A loopback TCP proxy that fakes an outage of whatever is behind it (an S3 endpoint, a broker).

    ``up = False``: new connections are reset at once (``attempts`` records when each came).
    ``hang = True``: new connections are accepted and never answered, like a blackholed host.
    ``delay_s``: every chunk forwarded waits this long (a slow endpoint).
    ``cut()`` closes the connections already open, so clients must reconnect into the outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = True
        self.hang = False
        self.delay_s = 0.0
        self.attempts: list[float] = []
        self._open: list[socket.socket] = []
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self.hang:
                self._open.append(client)  # held open, never answered
                continue
            if not self.up:
                self.attempts.append(time.monotonic())
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()  # RST: the endpoint is down
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        open_now, self._open = self._open, []
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()
        self.cut()


@dataclass
class WorkerProcess:
    """``poseanimate worker`` (or a Celery worker of another app module) as a child process."""

    env: dict[str, str]
    cwd: Path
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                start_new_session=True,
            )

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole worker (supervisor, Celery and job processes), as a lost node."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def records(self) -> list[dict[str, Any]]:
        """The JSON log records (Celery's own plain-text lines are skipped)."""
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


@contextmanager
def worker_process(
    env: dict[str, str],
    cwd: Path,
    *,
    name: str = "worker",
    queues: str = "gpu,io",
    metrics_port: int | None = None,
    celery_app: str | None = None,
) -> Iterator[WorkerProcess]:
    """``poseanimate worker --queues ...``; with ``celery_app`` ("module:app"), one plain Celery
    worker of that app on ``queues`` with the command line ``poseanimate worker`` would use."""
    if celery_app is None:
        port = metrics_port if metrics_port is not None else free_port()
        args = worker_argv(queues=queues, metrics_port=port, shutdown_timeout=10)
    else:
        args = celery_argv(queues, 8, "INFO", app=celery_app)
        repo = str(Path(__file__).resolve().parents[2])  # the app module lives in tests/
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [repo, env.get("PYTHONPATH")]))}
    worker = WorkerProcess(env, cwd, cwd / f"{name}.log", args)
    worker.start()
    try:
        if metrics_port:
            wait_for_port(metrics_port, timeout=30)
        if celery_app is not None:
            deadline = time.monotonic() + 30
            while " ready." not in worker.log():
                assert worker.proc is not None and worker.proc.poll() is None, worker.log()[-3000:]
                assert time.monotonic() < deadline, "the Celery worker did not get ready"
                time.sleep(0.1)
        yield worker
    finally:
        worker.stop()
