"""The one-machine stack behind ``make up`` / ``make down``: Redis, the API and one worker, no containers.

``up``:
1. Redis: ``POSEANIMATE_REDIS_URL`` (or the settings' default) if it answers; else, for a loopback
   URL, a ``redis-server`` of our own on that port (AOF on, data under ``<run-dir>/redis``),
   installing Debian's package when absent and running as root.
2. Model: ``--model`` / ``POSEANIMATE_MODEL`` as given; by default the real SD-1.5 + OpenPose
   ControlNet weights when they are in the Hugging Face cache or the hub answers, else the tiny
   RANDOM-WEIGHT smoke-test model, said loudly.
3. ``poseanimate serve`` and ``poseanimate worker --queues gpu,io`` (GPU 0 when CUDA is there),
   local file storage under ``<run-dir>/storage``, each detached in its own session; PIDs in
   ``<run-dir>/stack.json``, logs in ``<run-dir>/logs/``.
4. Waits for ``/readyz`` and for the worker's model, then prints the URL, the API key and a curl line.

``down`` stops exactly the processes ``up`` recorded (checked by PID and start time, so a reused PID
is never signalled), the Redis it started included.

Standard library only (plus ``redis`` from the venv for the ping), so the script reads top to bottom.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_openpose"
LOOPBACK = {"localhost", "127.0.0.1", "::1", ""}
STATE = "stack.json"


def say(message: str = "") -> None:
    print(message, flush=True)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


# ------------------------------------------------------------------------------------------------
# Processes: started in their own session (pgid = pid), recorded with their start time
# ------------------------------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    pid: int
    start: str | None  # /proc/<pid>/stat field 22; guards against a recycled PID
    log: str


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after "comm)": state is field 3, starttime 22


def alive(proc: Proc) -> bool:
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    if proc.start is not None and _start_time(proc.pid) not in (proc.start, None):
        return False  # the PID now belongs to someone else
    # A zombie (our child that exited, not yet reaped) is gone for our purposes.
    try:
        state = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state != "Z"


def spawn(name: str, argv: list[str], env: dict[str, str], logs: Path) -> Proc:
    log_path = logs / f"{name}.log"
    with log_path.open("ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # detached; its own process group, so `down` can stop its children
        )
    return Proc(name, child.pid, _start_time(child.pid), str(log_path))


def stop(proc: Proc, timeout: float) -> None:
    """SIGTERM to the process we started (a warm shutdown: ``poseanimate worker`` passes it on to
    its Celery consumers, which finish or requeue the running job), then SIGKILL to its whole
    process group after ``timeout``. Signalling the group at once would also hit Celery's pool
    child directly and abort the job instead of letting it finish. If the process we started is
    already gone but members of its group remain (a SIGKILLed supervisor's consumers), the group
    gets the SIGTERM."""
    if not alive(proc) and not _group_alive(proc.pid):
        return
    try:
        if alive(proc):
            os.kill(proc.pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(proc) and not _group_alive(proc.pid):
            return
        time.sleep(0.2)
    say(f"  {proc.name} did not stop in {timeout:.0f}s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (alive(proc) or _group_alive(proc.pid)):
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # Members may be zombies of an init that has not reaped them yet.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return not Path("/proc/self").exists()  # no /proc: trust killpg


# ------------------------------------------------------------------------------------------------
# State file
# ------------------------------------------------------------------------------------------------
def load_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((run_dir / STATE).read_text())
    except (OSError, ValueError):
        return None
    state["procs"] = [Proc(**p) for p in state.get("procs", [])]
    return state


def save_state(run_dir: Path, state: dict[str, Any]) -> None:
    out = dict(state, procs=[asdict(p) for p in state["procs"]])
    tmp = run_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(run_dir / STATE)


# ------------------------------------------------------------------------------------------------
# Redis
# ------------------------------------------------------------------------------------------------
def redis_answers(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        return bool(client.ping())
    except Exception:
        return False


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("redis-server is not installed: installing Debian's package")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-q", "redis-server"]
        if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, check=False)
            subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
    return shutil.which("redis-server")


def start_redis(url: str, run_dir: Path, logs: Path) -> Proc:
    from launch.commands import redis_argv  # the project's venv: `make up` runs it (`down` needs none)

    parts = urlsplit(url)
    port = parts.port or 6379
    data = run_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    binary = redis_binary()
    if binary is None:
        raise RuntimeError(
            f"Redis does not answer at {url} and redis-server is not installed. Install it with\n"
            "    sudo apt-get install -y redis-server\n"
            "or point POSEANIMATE_REDIS_URL at a Redis that answers, then run `make up` again."
        )
    # appendonly: jobs survive a restart of this Redis; logfile "": stdout, which spawn() sends to
    # logs/redis.log.
    argv = [*redis_argv(binary, port, data, appendonly=True, logfile=""), "--daemonize", "no"]
    if parts.password:
        argv += ["--requirepass", parts.password]
    proc = spawn("redis", argv, dict(os.environ), logs)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            return proc
        if not alive(proc):
            break
        time.sleep(0.1)
    stop(proc, 5)
    raise RuntimeError(f"redis-server did not start on port {port}; see {proc.log}")


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------
@dataclass
class ModelChoice:
    spec: str
    tiny: bool
    offline: bool  # set HF_HUB_OFFLINE: the weights are local and the hub does not answer
    note: str


def hub_answers(repo_id: str) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models/{repo_id}", timeout=5) as reply:
            return int(reply.status) == 200
    except (OSError, ValueError):
        return False


def in_hf_cache(repo_id: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    found = try_to_load_from_cache(repo_id, filename)
    return isinstance(found, str)


def choose_model(requested: str | None) -> ModelChoice:
    tiny_note = (
        "POSEANIMATE_MODEL=tiny: a tiny RANDOM-WEIGHT smoke-test model. Every code path runs, "
        "but the videos are noise (jobs say model.random_weights=true)."
    )
    if requested == "tiny":
        return ModelChoice("tiny", True, True, tiny_note)
    controlnet = os.environ.get("POSEANIMATE_CONTROLNET", DEFAULT_CONTROLNET)
    spec = requested or DEFAULT_BASE
    if Path(spec).expanduser().is_dir():
        return ModelChoice(spec, False, False, f"model: local pipeline directory {spec}")
    cached = in_hf_cache(spec, "model_index.json") and (
        Path(controlnet).is_dir() or in_hf_cache(controlnet, "config.json")
    )
    if hub_answers(spec):
        where = "from the Hugging Face cache" if cached else "downloading from the hub at first load (~5 GB)"
        return ModelChoice(spec, False, False, f"model: {spec} + {controlnet}, {where}")
    if cached:
        return ModelChoice(spec, False, True, f"model: {spec} + {controlnet} from the HF cache (hub offline)")
    if requested:
        raise RuntimeError(
            f"model {spec!r} is neither a local directory nor in the Hugging Face cache, and the hub "
            "does not answer. Use MODEL=tiny (random weights) or a local pipeline directory."
        )
    return ModelChoice(
        "tiny",
        True,
        True,
        "the real weights are not available here (the Hugging Face hub does not answer and "
        f"{spec} is not in the HF cache), so falling back to " + tiny_note + "\n"
        "      For real output: download the weights on a machine with hub access "
        "(huggingface-cli download ...) or set POSEANIMATE_MODEL to a local pipeline directory.",
    )


def cuda_available(python: str) -> bool:
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ------------------------------------------------------------------------------------------------
# Waiting
# ------------------------------------------------------------------------------------------------
def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return int(reply.status), reply.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return 0, ""


def wait_ready(url: str, procs: list[Proc], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, _ = http_get(url)
        if code == 200:
            return
        dead = [p for p in procs if not alive(p)]
        if dead:
            raise RuntimeError(f"{dead[0].name} exited during start-up; see {dead[0].log}")
        time.sleep(0.25)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


def wait_model(metrics_url: str, worker: Proc, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = http_get(metrics_url)
        if any(
            line.startswith("poseanimate_model_loaded ") and line.split()[-1] != "0.0"
            for line in body.splitlines()
        ):
            return True
        if not alive(worker):
            raise RuntimeError(f"the worker exited while loading the model; see {worker.log}")
        time.sleep(0.5)
    return False


def tail(path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------
def private_file(path: Path, make: Any) -> str:
    """The value kept in ``path`` (mode 0600), made by ``make()`` the first time."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(str(make()) + "\n")
    return path.read_text().strip()


def effective_settings(python: str, *names: str) -> dict[str, Any]:
    """Settings as the service will see them (environment, then ``.env``, then the defaults)."""
    code = (
        "import json, sys; from jobs.settings import Settings; s = Settings().model_dump(mode='json'); "
        "print(json.dumps({n: s[n] for n in sys.argv[1:]}))"
    )
    out = subprocess.run([python, "-c", code, *names], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the settings do not load:\n{out.stderr.strip()}")
    values: dict[str, Any] = json.loads(out.stdout)
    return values


def up(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    logs = run_dir / "logs"
    state = load_state(run_dir)
    if state and state["procs"] and all(alive(p) for p in state["procs"]):
        say(f"already running (state in {run_dir / STATE}); `make down` first to restart.")
        print_banner(state)
        return 0
    # A component that died is started again; the ones still running are kept.
    kept: dict[str, Proc] = {}
    for proc in state["procs"] if state else []:
        if alive(proc):
            kept[proc.name] = proc
            say(f"{proc.name}: still running (pid {proc.pid}), kept")
        else:
            stop(proc, 5)  # what it left behind in its process group
            say(f"{proc.name}: not running, starting it again")
    logs.mkdir(parents=True, exist_ok=True)
    from launch.commands import serve_argv, worker_argv  # the processes the tests and benchmarks start too

    python = sys.executable
    bin_dir = Path(python).parent
    if not (bin_dir / "poseanimate").exists():
        return fail(f"no `poseanimate` console script next to {python}: run `make setup`")
    for port, what, name in ((args.port, "API", "api"), (args.metrics_port, "worker metrics", "worker")):
        if name not in kept and not port_free(port):
            return fail(f"port {port} ({what}) is taken: pass PORT=... / WORKER_METRICS_PORT=...")

    procs: list[Proc] = []
    state = {"run_dir": str(run_dir), "procs": procs}
    try:
        # 1. Redis
        configured = effective_settings(
            python, "redis_url", "api_keys", "link_signing_secret", "webhook_secret", "allow_private_urls"
        )
        redis_url = str(configured["redis_url"])
        if "redis" in kept:
            procs.append(kept["redis"])
        elif redis_answers(redis_url):
            say(f"redis:   using {redis_url} (already answers)")
        elif (urlsplit(redis_url).hostname or "") in LOOPBACK:
            say(f"redis:   nothing answers at {redis_url}: starting redis-server (data in {run_dir}/redis)")
            procs.append(start_redis(redis_url, run_dir, logs))
            save_state(run_dir, state)
        else:
            return fail(f"Redis does not answer at {redis_url} (POSEANIMATE_REDIS_URL); start it or unset it")

        # 2. Model and device
        choice = choose_model(args.model or os.environ.get("POSEANIMATE_MODEL") or None)
        say(("WARNING: " if choice.tiny else "") + choice.note)
        gpu = cuda_available(python)
        say(f"device:  {'CUDA GPU 0' if gpu else 'CPU (no CUDA device found)'}")

        # 3. Environment shared by the API and the worker
        # The configured keys (environment or .env) if any; else a generated dev key, kept in the run dir.
        keys = ",".join(configured["api_keys"])
        api_key = configured["api_keys"][0] if configured["api_keys"] else None
        if api_key is not None and api_key.startswith("sha256:"):
            api_key = "<one of your POSEANIMATE_API_KEYS>"  # only its hash is configured
        if not keys:
            key_file = run_dir / "api-key"
            if not key_file.exists():
                key_file.write_text("dev-" + secrets.token_urlsafe(18) + "\n")
                key_file.chmod(0o600)
            api_key = key_file.read_text().strip()
            keys = api_key
        api_url = f"http://127.0.0.1:{args.port}"
        env = dict(os.environ)
        env.update(
            {
                "POSEANIMATE_REDIS_URL": redis_url,
                "POSEANIMATE_STORAGE_URL": (run_dir / "storage").resolve().as_uri(),
                "POSEANIMATE_API_KEYS": keys,
                "POSEANIMATE_PUBLIC_BASE_URL": api_url,
                "POSEANIMATE_MODEL": choice.spec,
                "POSEANIMATE_DEVICE": "cuda" if gpu else "cpu",
                "POSEANIMATE_WORKER_TMP_DIR": str((run_dir / "tmp").resolve()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        if configured["link_signing_secret"] is None:
            # Links get their own key (never the webhook secret's), generated once, kept in the run dir.
            env["POSEANIMATE_LINK_SIGNING_SECRET"] = private_file(
                run_dir / "link-secret", lambda: secrets.token_urlsafe(32)
            )
        if configured["webhook_secret"] is None:
            # Local webhooks work out of the box: signed with a generated secret (kept in the run
            # dir) and allowed to reach this machine's receivers. Development only: `make up` runs
            # the service for the person at this machine, never as a public service.
            from jobs.webhooks import generate_secret

            env["POSEANIMATE_WEBHOOK_SECRET"] = private_file(run_dir / "webhook-secret", generate_secret)
            if not configured["allow_private_urls"]:
                env["POSEANIMATE_ALLOW_PRIVATE_URLS"] = "true"
                state["webhooks"] = "loopback"
            state["webhook_secret_file"] = str(run_dir / "webhook-secret")
        (run_dir / "tmp").mkdir(exist_ok=True)
        if choice.offline:
            env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})

        # 4. API and worker (gpu + io consumers under one supervisor)
        procs.append(kept.get("api") or spawn("api", serve_argv(args.port), env, logs))
        save_state(run_dir, state)
        worker = worker_argv(
            metrics_port=args.metrics_port, shutdown_timeout=args.shutdown_timeout, gpu=0 if gpu else None
        )
        procs.append(kept.get("worker") or spawn("worker", worker, env, logs))
        state.update(
            api_url=api_url,
            api_key=api_key,
            redis_url=redis_url,
            metrics_url=f"http://127.0.0.1:{args.metrics_port}/metrics",
            model=choice.spec,
            random_weights=choice.tiny,
            device="cuda" if gpu else "cpu",
            logs=str(logs),
        )
        save_state(run_dir, state)

        # 5. Ready?
        wait_ready(f"{api_url}/readyz", procs, timeout=args.timeout)
        say(f"api:     ready at {api_url} (pid {procs[-2].pid})")
        worker = procs[-1]
        if wait_model(str(state["metrics_url"]), worker, timeout=args.model_timeout):
            say(f"worker:  model loaded (pid {worker.pid})")
        else:
            say(
                f"worker:  still loading the model after {args.model_timeout:.0f}s; jobs wait until it is ready "
                f"(follow {worker.log})"
            )
    except (RuntimeError, OSError, KeyboardInterrupt) as exc:
        for proc in reversed(procs):
            stop(proc, 15)
        (run_dir / STATE).unlink(missing_ok=True)
        for proc in procs:
            if proc.name != "redis" and tail(proc.log):
                say(f"--- last lines of {proc.log}\n{tail(proc.log)}")
        return fail(str(exc) or type(exc).__name__)
    print_banner(state)
    return 0


def print_banner(state: dict[str, Any]) -> None:
    url, key = state.get("api_url"), state.get("api_key")
    tiny = " (tiny RANDOM-WEIGHT model: output is noise)" if state.get("random_weights") else ""
    size = "-F size=64 -F steps=2 " if state.get("random_weights") else ""
    run_dir = Path(str(state.get("run_dir") or REPO / ".run"))
    where = "" if run_dir == REPO / ".run" else f" RUN_DIR={run_dir}"
    webhooks = ""
    if state.get("webhook_secret_file"):
        loopback = " (development: loopback receivers allowed)" if state.get("webhooks") == "loopback" else ""
        webhooks = (
            f"\nWebhooks: add -F webhook_url=http://127.0.0.1:PORT/hook; deliveries are signed with the "
            f"secret in {state['webhook_secret_file']}{loopback}\n"
        )
    say(
        f"""
PoseAnimate is running{tiny}
  API:       {url}   (docs: {url}/docs)
  API key:   {key}
  metrics:   {url}/metrics   {state.get("metrics_url")}
  logs:      {state.get("logs")}/{{api,worker}}.log

Submit a job:
  curl -sS -X POST {url}/animations -H "Authorization: Bearer {key}" \\
    -F image=@examples/astronaut.jpg -F poses=@examples/raise_arms.json \\
    -F source_pose=@examples/astronaut_pose.json -F prompt="a photo of an astronaut" {size}\\
    -H "Prefer: wait=60"

{webhooks}
  make demo{where}   # the same, following progress; saves the MP4
  make down{where}   # stops everything `make up` started"""
    )


def down(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir
    state = load_state(run_dir)
    if state is None:
        say(f"nothing to stop (no {run_dir / STATE})")
        return 0
    procs: list[Proc] = state["procs"]
    # Workers first (warm shutdown: a running job finishes or is requeued), then the API, Redis last.
    order = {"worker": 0, "api": 1, "redis": 2}
    for proc in sorted(procs, key=lambda p: order.get(p.name, 1)):
        if alive(proc):
            say(f"stopping {proc.name} (pid {proc.pid})")
            stop(proc, args.timeout)
        elif _group_alive(proc.pid):
            say(f"{proc.name} (pid {proc.pid}) died but left processes in its group: stopping them")
            stop(proc, args.timeout)
        else:
            say(f"{proc.name} (pid {proc.pid}) is not running")
    # Verify: nothing `up` started remains, the children of each process included (its group).
    left = [p for p in procs if alive(p) or _group_alive(p.pid)]
    if left:
        return fail("still running: " + ", ".join(f"{p.name} (process group {p.pid})" for p in left))
    (run_dir / STATE).unlink(missing_ok=True)
    say("stopped")
    return 0


def status(args: argparse.Namespace) -> int:
    state = load_state(args.run_dir)
    if state is None:
        say("not running")
        return 1
    for proc in state["procs"]:
        say(f"{proc.name:7s} pid {proc.pid:<8d} {'running' if alive(proc) else 'stopped'}")
    return 0 if all(alive(p) for p in state["procs"]) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stack.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("RUN_DIR") or REPO / ".run"),
        help="state, logs, storage and Redis data (default: .run/; env RUN_DIR)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start Redis (if needed), the API and a worker")
    p_up.add_argument(
        "--port", type=int, default=int(os.environ.get("PORT") or 8000), help="API port (env PORT)"
    )
    p_up.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("WORKER_METRICS_PORT") or 9101),
        help="worker /metrics port (env WORKER_METRICS_PORT)",
    )
    p_up.add_argument(
        "--model", default=os.environ.get("MODEL") or None, help="tiny | hub id | local dir (env MODEL)"
    )
    p_up.add_argument("--timeout", type=float, default=60, help="seconds to wait for /readyz")
    p_up.add_argument("--model-timeout", type=float, default=120, help="seconds to wait for the model")
    p_up.add_argument("--shutdown-timeout", type=float, default=30, help="worker warm-shutdown limit")
    p_up.set_defaults(func=up)
    p_down = sub.add_parser("down", help="stop what `up` started")
    p_down.add_argument("--timeout", type=float, default=40, help="seconds before SIGKILL")
    p_down.set_defaults(func=down)
    sub.add_parser("status", help="list the processes `up` started").set_defaults(func=status)
    args = parser.parse_args(argv)
    args.run_dir = args.run_dir.resolve()
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
