"""`make up` / `make demo` / `make down` end to end, isolated from a developer's own `make up`: its
own run directory, free ports, and a Redis URL nothing answers on, so `up` starts (and `down`
stops) a redis-server of its own. Tiny random-weight model on the CPU. Also: the Redis list a
queued animation lands in is the one KEDA watches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from jobs.webhooks import verify
from tests.support.manifests import REPO, gpu_broker_lists
from tests.support.servers import webhook_receiver

pytestmark = pytest.mark.integration
EXAMPLES = REPO / "examples"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # an exited child of an init that has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _make_is_current() -> bool:
    """`make up` would first re-run `setup` if the venv is stale: too slow for a test."""
    if (
        shutil.which("make") is None
        or Path(sys.executable).resolve().parent != (REPO / ".venv/bin").resolve()
    ):
        return False
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "setup"], cwd=REPO, capture_output=True, text=True
    )
    return dry.returncode == 0 and "pip install" not in dry.stdout


@pytest.fixture
def stack_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make services installs it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEANIMATE_")}
    env.update(
        RUN_DIR=str(tmp_path / "run"),
        PORT=str(_free_port()),
        WORKER_METRICS_PORT=str(_free_port()),
        MODEL="tiny",
        POSEANIMATE_REDIS_URL=f"redis://127.0.0.1:{_free_port()}/0",
        POSEANIMATE_MODEL_CACHE_DIR=str(tmp_path / "models"),
        POSEANIMATE_LOG_JSON="true",
    )
    yield env
    # Whatever happened, leave nothing running.
    subprocess.run(
        [sys.executable, str(REPO / "deploy/local/stack.py"), "down"],
        env=env,
        capture_output=True,
        timeout=90,
    )


def _run(target: str, env: dict[str, str], timeout: float) -> str:
    if _make_is_current():
        command = ["make", "--no-print-directory", target]
    else:
        script = "demo.py" if target == "demo" else "stack.py"
        command = [sys.executable, str(REPO / "deploy/local" / script)] + (
            [] if target == "demo" else [target]
        )
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(command)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_make_up_serves_jobs_and_make_down_stops_everything(stack_env: dict[str, str]) -> None:
    run_dir = Path(stack_env["RUN_DIR"])
    started = time.monotonic()

    # 1. up: its own Redis, the API and a worker; prints URL, key and a curl line.
    out = _run("up", stack_env, timeout=120)
    assert "RANDOM-WEIGHT" in out and "nothing answers" in out
    state = json.loads((run_dir / "stack.json").read_text())
    assert [p["name"] for p in state["procs"]] == ["redis", "api", "worker"]
    assert state["api_key"] in out and state["api_url"] in out and "curl" in out

    # 2. the curl example, in httpx: a job through the API with the printed key; its webhook reaches
    #    a receiver on this machine, signed with the secret `up` generated (development defaults).
    assert "Webhooks:" in out and (run_dir / "webhook-secret").exists()
    with (
        webhook_receiver() as receiver,
        httpx.Client(
            base_url=state["api_url"], headers={"Authorization": f"Bearer {state['api_key']}"}
        ) as api,
    ):
        reply = api.post(
            "/animations",
            # The demo's own settings: its run below reuses this job's inversion (the engine's cache).
            data={
                "prompt": "a photo of an astronaut",
                "subject_words": "astronaut",
                "size": "64",
                "steps": "2",
                "webhook_url": receiver.url,
                "webhook_events": "completed",
            },
            files={
                "image": (EXAMPLES / "astronaut.jpg").read_bytes(),
                "poses": (EXAMPLES / "raise_arms.json").read_bytes(),
                "source_pose": (EXAMPLES / "astronaut_pose.json").read_bytes(),
            },
            headers={"Prefer": "wait=60"},
            timeout=90,
        )
        job = reply.json()
        assert reply.status_code == 200 and job["status"] == "succeeded", job
        assert job["model"]["random_weights"] is True
        video = httpx.get(job["output"]["video_url"], timeout=30)
        assert video.status_code == 200 and video.content[4:8] == b"ftyp"
        hook = receiver.get(timeout=30)
        verify((run_dir / "webhook-secret").read_text().strip(), hook.headers, hook.body)
        assert hook.json()["type"] == "animation.completed" and hook.json()["data"]["id"] == job["id"]

    # 3. demo: submits the example, follows the events, saves the MP4.
    out = _run("demo", stack_env, timeout=120)
    assert (run_dir / "demo.mp4").read_bytes()[4:8] == b"ftyp"
    assert "saved" in out

    # 4. a component that died: `make up` again restarts just it and keeps the others (issue 10).
    worker = next(p for p in state["procs"] if p["name"] == "worker")
    api_pid = next(p["pid"] for p in state["procs"] if p["name"] == "api")
    os.killpg(worker["pid"], signal.SIGKILL)  # the supervisor's group: as an OOM kill of the lot
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(worker["pid"]):
        time.sleep(0.1)
    out = _run("up", stack_env, timeout=120)
    assert "worker: not running, starting it again" in out and f"still running (pid {api_pid}), kept" in out
    state = json.loads((run_dir / "stack.json").read_text())
    restarted = next(p for p in state["procs"] if p["name"] == "worker")
    assert restarted["pid"] != worker["pid"] and _alive(restarted["pid"])
    assert next(p["pid"] for p in state["procs"] if p["name"] == "api") == api_pid

    # 5. down: every process `up` started is gone, its Redis included, and nothing listens.
    pids = [p["pid"] for p in state["procs"]] + [worker["pid"]]
    _run("down", stack_env, timeout=90)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if _alive(pid)]
    redis_port = urlsplit(stack_env["POSEANIMATE_REDIS_URL"]).port
    for port in (int(stack_env["PORT"]), int(stack_env["WORKER_METRICS_PORT"]), redis_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert not (run_dir / "stack.json").exists()
    assert time.monotonic() - started < 240


def test_animation_messages_land_in_the_list_keda_watches(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    import redis

    from jobs.queue import QueueClient, create_celery
    from jobs.settings import Settings

    port = _free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{port}/0")
        QueueClient(create_celery(settings)).enqueue_animation(f"anim_{uuid.uuid4().hex[:26].upper()}")
        lists = {key.decode() for key in client.keys("*") if client.type(key) == b"list"}
        assert lists == gpu_broker_lists() == {"gpu"}
        assert client.llen("gpu") == 1
    finally:
        server.terminate()
        server.wait(10)
