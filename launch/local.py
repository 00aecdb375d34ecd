"""Local launchers on loopback: free ports, a ``redis-server`` of our own, and the service (Redis, the
API, a worker) as child processes in a work directory.

The test harness (tests/support), the benchmarks (bench/) and ``make up`` (deploy/local/stack.py,
which keeps its processes detached across invocations) start Redis, the API and the worker with the
command lines of ``launch.commands``; the child-process stack here is what the benchmarks run.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from launch.commands import redis_argv, serve_argv, worker_argv


class MissingService(RuntimeError):
    """A binary a launcher needs is not installed (tests turn this into a skip)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    command: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown save; only what the append-only file holds survives."""
        self.proc.kill()
        self.proc.wait(5)

    def start(self) -> None:
        """Start again on the same port and directory (after ``stop`` or ``kill``)."""
        self.proc = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)


@contextmanager
def redis_server(workdir: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    """``redis-server`` on a free loopback port, data in ``workdir``; ``appendonly``: persist every
    write (AOF, fsync always) so a restart keeps the data."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise MissingService("redis-server is not installed (make services installs it)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    command = redis_argv(binary, port, workdir, appendonly=appendonly, logfile=str(workdir / "redis.log"))
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(port, proc, workdir, command)
    try:
        wait_for_port(port)
        yield server
    finally:
        if server.proc.poll() is None:
            server.stop()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM (a warm shutdown for ``poseanimate worker``), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def http_status(url: str, timeout: float = 2.0) -> int:
    """The status of a GET (0: nothing answered)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return 0


def stop_all(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop the processes in the reverse order of their start."""
    for proc in reversed(list(procs.values())):
        stop_process(proc)


@dataclass
class ProcessStack:
    """Redis, ``poseanimate serve`` and ``poseanimate worker`` as children of this process."""

    url: str
    redis: RedisServer
    workdir: Path
    metrics_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # "api", "worker"

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str) -> None:
        """Stop one process now (e.g. the worker, so it does not compete with the API for the cores)."""
        proc = self.procs.pop(name, None)
        if proc is not None:
            stop_process(proc)


@contextmanager
def process_stack(
    workdir: Path,
    environment: Callable[[RedisServer], dict[str, str]],
    *,
    queues: str = "gpu,io",
    serve_options: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[ProcessStack]:
    """Start ``redis-server``, the API and a worker (logs ``api.log``, ``worker.log`` in ``workdir``, also
    their working directory); yield once ``/readyz`` answers 200; stop all three afterwards.

    ``environment(redis)``: the processes' whole environment, given the Redis that was started.
    Raises ``MissingService`` without ``redis-server``, ``RuntimeError`` if the API exits and
    ``TimeoutError`` if it is not ready within ``ready_timeout`` seconds."""
    api_port, metrics_port = free_port(), free_port()
    with redis_server(workdir / "redis") as redis, contextlib.ExitStack() as stack:
        env = environment(redis)
        stack_ = ProcessStack(f"http://127.0.0.1:{api_port}", redis, workdir, metrics_port)
        stack.callback(lambda: stop_all(stack_.procs))
        for name, argv in (
            ("api", [*serve_argv(api_port), *serve_options]),
            ("worker", worker_argv(queues=queues, metrics_port=metrics_port)),
        ):
            log = stack.enter_context((workdir / f"{name}.log").open("wb"))
            stack_.procs[name] = subprocess.Popen(
                argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
        api = stack_.procs["api"]
        deadline = time.monotonic() + ready_timeout
        while http_status(stack_.url + "/readyz") != 200:
            if api.poll() is not None:
                raise RuntimeError(f"the API exited:\n{stack_.log('api')[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not become ready in {ready_timeout:g} s")
            time.sleep(0.2)
        yield stack_
