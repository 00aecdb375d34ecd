"""Issue 10 against the real parts (redis-server, the API under uvicorn, ``poseanimate worker`` with
the noop backend, moto S3 where storage matters): unforgeable links, multipart refusals counted,
deletion and retention, SSE on one Redis connection, processes that die together.

docs/security.md lists each check with the command that reruns it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from jobs.webhooks import generate_secret
from tests.support.payloads import job_body
from tests.support.stack import Service, running_service

pytestmark = pytest.mark.integration

NOOP = {
    "ANIMATOR": "noop",
    "NOOP_STEP_SECONDS": "0.01",
    "MAX_STEPS": "1000",
    "RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "100000",
    "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
    "MAX_ACTIVE_JOBS": "1000",
}


def body(**overrides: object) -> dict[str, object]:
    return job_body(steps=2, transition_frames=1, **overrides)


def succeeded(svc: Service, **overrides: object) -> dict:
    reply = svc.api.post("/animations", json=body(**overrides))
    assert reply.status_code == 202, reply.text
    return svc.wait_for_job(reply.json()["id"], lambda j: j["status"] == "succeeded", timeout=60)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory):
    """Local-file storage, development mode, no link-signing secret configured: the mode that used
    to derive the link key from the webhook secret."""
    tmp = tmp_path_factory.mktemp("local")
    overrides = {
        **NOOP,
        "STORAGE_URL": (tmp / "storage").as_uri(),
        "ENV": "development",
        "MAX_STREAMS_PER_KEY": "100",  # the 50-stream test below
    }
    with running_service(tmp, **overrides) as svc:
        yield svc


# --------------------------------------------------------------------------------------------
# 1. Links: their own secret, one key each, hostile values refused with 403
# --------------------------------------------------------------------------------------------
def _candidate_keys(webhook_secret: str) -> list[bytes]:
    """Every key a webhook receiver could derive from the secret it holds."""
    raw = base64.b64decode(webhook_secret.removeprefix("whsec_"))
    return [
        hashlib.sha256(b"poseanimate-links:" + webhook_secret.encode()).digest(),  # the old derivation
        webhook_secret.encode(),
        raw,
        hashlib.sha256(raw).digest(),
    ]


def test_links_forged_from_the_webhook_secret_are_refused(local):
    job = succeeded(local)
    key = f"outputs/{job['id']}/animation.mp4"
    assert local.api.get(job["output"]["video_url"]).status_code == 200  # the genuine link works
    expires = int(time.time()) + 365 * 24 * 3600
    for secret in _candidate_keys(local.webhook_secret):
        sig = hmac.new(secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()
        reply = local.api.get(f"/files/{key}", params={"expires": expires, "sig": sig})
        assert reply.status_code == 403 and reply.json()["code"] == "link_invalid"


def test_a_link_authorises_exactly_one_key_until_it_expires(local):
    job = succeeded(local)
    link = job["output"]["video_url"]
    query = link.split("?", 1)[1]
    poster = f"/files/outputs/{job['id']}/poster.png?{query}"
    other = succeeded(local)
    neighbour = f"/files/outputs/{other['id']}/animation.mp4?{query}"
    for url in (poster, neighbour):
        reply = local.api.get(url)
        assert reply.status_code == 403 and reply.json()["code"] == "link_invalid", url


@pytest.mark.parametrize(
    "query",
    [
        "",  # no query at all
        "expires=99999999999",
        "sig=" + "0" * 64,
        "expires=99999999999&sig=" + "%C3%A9" * 64,  # non-ASCII signature
        "expires=99999999999&sig=" + "0" * 63,  # truncated
        "expires=99999999999&sig=" + "0" * 65,
        "expires=abc&sig=" + "0" * 64,  # non-integer expiry
        "expires=-1&sig=" + "0" * 64,
        "expires=%EF%BC%91%EF%BC%92&sig=" + "0" * 64,  # full-width digits
        "expires=1e12&sig=" + "0" * 64,
        "expires=" + "9" * 40 + "&sig=" + "0" * 64,
        "expires=99999999999&sig=" + "%00" * 64,
    ],
)
def test_hostile_sig_and_expires_answer_403_link_invalid(local, query):
    job_id = "anim_" + "0" * 26
    reply = local.api.get(f"/files/outputs/{job_id}/animation.mp4?{query}")
    assert reply.status_code == 403, (query, reply.status_code, reply.text)
    assert reply.json()["code"] == "link_invalid"


@pytest.mark.parametrize("path", ["/files/inputs/x/image.png", "/files/outputs/../inputs/x", "/files/%00"])
def test_hostile_paths_never_give_a_5xx(local, path):
    assert local.api.get(f"{path}?expires=1&sig={'0' * 64}").status_code == 404


def test_the_api_refuses_to_start_without_a_link_secret_in_production_or_with_the_webhook_one(tmp_path: Path):
    from api.main import create_app
    from jobs.settings import Settings
    from jobs.storage import LinkSecretMissing

    secret = generate_secret()
    base = {"storage_url": (tmp_path / "s").as_uri(), "redis_url": "redis://127.0.0.1:9/0"}
    with pytest.raises(LinkSecretMissing):
        create_app(Settings(_env_file=None, webhook_secret=secret, **base))
    with pytest.raises(ValueError, match="webhook secret"):
        Settings(_env_file=None, webhook_secret=secret, link_signing_secret=secret, **base)
    assert create_app(Settings(_env_file=None, link_signing_secret="l" * 32, **base))  # configured: starts


# --------------------------------------------------------------------------------------------
# 2. Malformed multipart: 400 malformed_multipart, counted as an invalid submission
# --------------------------------------------------------------------------------------------
def _invalid_count(svc: Service) -> float:
    import re

    text = svc.api.get("/metrics").text
    match = re.search(r'^poseanimate_jobs_submitted_total\{outcome="invalid"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


MULTIPART_CASES = {
    "missing boundary": ("multipart/form-data", _multipart([("prompt", None, b"x")])),
    "garbage body": ("multipart/form-data; boundary=XyZ", b"\x00\xff garbage \r\n--nope\r\n" * 50),
    "too many files": (
        "multipart/form-data; boundary=XyZ",
        _multipart([(f"f{i}", f"f{i}.png", b"x") for i in range(6)]),
    ),
    "too many fields": (
        "multipart/form-data; boundary=XyZ",
        _multipart([(f"field{i}", None, b"x") for i in range(40)]),
    ),
    "oversize part": (
        "multipart/form-data; boundary=XyZ",
        _multipart([("poses", None, b"[" * (4 * 1024 * 1024 + 10))]),
    ),
}


@pytest.mark.parametrize("case", sorted(MULTIPART_CASES))
def test_malformed_multipart_answers_400_malformed_multipart_and_is_counted_invalid(local, case):
    content_type, data = MULTIPART_CASES[case]
    before = _invalid_count(local)
    reply = local.api.post("/animations", content=data, headers={"Content-Type": content_type})
    assert reply.status_code == 400, (case, reply.status_code, reply.text[:300])
    problem = reply.json()
    assert problem["code"] == "malformed_multipart" and problem["detail"], problem
    assert _invalid_count(local) == before + 1


# --------------------------------------------------------------------------------------------
# 6. Data lifecycle: DELETE, inputs gone when the job ends, outputs after their retention
# --------------------------------------------------------------------------------------------
OTHER_KEY = "sk-integration-other"


def _files(root: Path, job_id: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and job_id in str(p))


def _redis_keys(svc: Service, job_id: str) -> list[str]:
    import redis

    with redis.Redis.from_url(svc.env["POSEANIMATE_REDIS_URL"], decode_responses=True) as r:
        keys = [k for k in r.scan_iter(match="*") if job_id in k]
        for kind in ("zset",):
            for key in r.scan_iter(match="*"):
                if r.type(key) == kind and r.zscore(key, job_id) is not None and ":deleted" not in key:
                    keys.append(key)
        return keys


def _wait(condition, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory):
    """Local storage with a second API key and a fast retention sweep (every 2 s)."""
    tmp = tmp_path_factory.mktemp("lifecycle")
    overrides = {
        **NOOP,
        "STORAGE_URL": (tmp / "storage").as_uri(),
        "LINK_SIGNING_SECRET": "lifecycle-link-secret-" + "x" * 16,
        "API_KEYS": f"sk-integration,{OTHER_KEY}",
        "INTERRUPTED_SUBMISSION_S": "4",
        "OUTPUT_RETENTION_S": "60",
    }
    with running_service(tmp, **overrides) as svc:
        yield svc


def test_delete_removes_record_inputs_and_outputs_and_old_links_stop_working(lifecycle):
    svc, root = lifecycle, Path(lifecycle.tmp) / "storage"
    job = succeeded(svc)
    job_id, link = job["id"], job["output"]["video_url"]
    assert _files(root, job_id) and svc.api.get(link).status_code == 200
    other = svc.api.delete(f"/animations/{job_id}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 404  # another key's job looks missing, and stays
    assert svc.api.get(f"/animations/{job_id}").status_code == 200

    assert svc.api.delete(f"/animations/{job_id}").status_code == 204
    assert _files(root, job_id) == []
    assert _redis_keys(svc, job_id) == []
    assert svc.api.get(f"/animations/{job_id}").status_code == 404
    assert job_id not in [j["id"] for j in svc.api.get("/animations").json()["data"]]
    assert svc.api.get(link).status_code in (403, 404)
    assert svc.api.delete(f"/animations/{job_id}").status_code == 204  # idempotent for the owner
    other = svc.api.delete(f"/animations/{job_id}", headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert other.status_code == 404
    assert svc.api.delete(f"/animations/anim_{'0' * 26}").status_code == 404


def test_delete_of_a_running_job_cancels_it_and_leaves_nothing(lifecycle):
    svc, root = lifecycle, Path(lifecycle.tmp) / "storage"
    job_id = svc.api.post("/animations", json=job_body(steps=400, transition_frames=1)).json()["id"]
    svc.wait_for_job(job_id, lambda j: j["status"] == "running" and j["stage"] not in (None, "loading"))
    assert svc.api.delete(f"/animations/{job_id}").status_code == 204
    assert svc.api.get(f"/animations/{job_id}").status_code == 404
    # The worker sees the cancel and stops; it uploads nothing, and its stub is removed or bare.
    _wait(lambda: "job canceled" in svc.log_tail(400), 30, "the worker did not stop the deleted job")
    time.sleep(2.5)  # one retention pass
    assert _files(root, job_id) == []


def test_inputs_are_deleted_when_the_job_ends_and_outputs_after_their_retention(lifecycle):
    import os

    svc, root = lifecycle, Path(lifecycle.tmp) / "storage"
    job = succeeded(svc)
    job_id = job["id"]
    from datetime import datetime, timedelta

    expire = datetime.fromisoformat(job["output"]["files_expire_at"])
    assert expire - datetime.fromisoformat(job["finished_at"]) == timedelta(seconds=60)  # the view says when
    _wait(lambda: not (root / "inputs" / job_id).exists(), 10, "inputs kept after the job ended")
    assert (root / "outputs" / job_id / "animation.mp4").exists()
    old = time.time() - 61  # the outputs age past OUTPUT_RETENTION_S=60
    for path in (root / "outputs" / job_id).iterdir():
        os.utime(path, (old, old))
    _wait(lambda: not (root / "outputs" / job_id).exists(), 10, "outputs kept past their retention")


def test_delete_removes_inputs_and_outputs_from_s3(tmp_path: Path):
    import httpx

    from tests.support.stack import BUCKET

    with running_service(tmp_path, **NOOP) as svc:
        job = succeeded(svc)
        job_id, link = job["id"], job["output"]["video_url"]

        def objects() -> list[str]:
            listing = svc.s3().list_objects_v2(Bucket=BUCKET)
            return [o["Key"] for o in listing.get("Contents", []) if job_id in o["Key"]]

        assert f"it/outputs/{job_id}/animation.mp4" in objects()
        assert httpx.get(link).status_code == 200
        assert svc.api.delete(f"/animations/{job_id}").status_code == 204
        assert objects() == []
        assert httpx.get(link).status_code in (403, 404)  # the presigned link finds nothing
        assert svc.api.get(f"/animations/{job_id}").status_code == 404
        assert svc.api.delete(f"/animations/{job_id}").status_code == 204


# --------------------------------------------------------------------------------------------
# 3 and 4. The worker: consumers die with their supervisor; /metrics on loopback unless configured
# --------------------------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of the LISTEN sockets on ``port`` (from /proc/net/tcp, hex little-endian)."""
    import socket
    import struct

    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:
            out.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return out


def test_worker_metrics_listen_on_loopback_by_default_and_on_the_configured_address(tmp_path: Path):
    from tests.support.servers import free_port, worker_process
    from tests.support.stack import process_env

    with running_service(tmp_path, worker=False, **NOOP) as svc:
        for host, expected in ((None, {"127.0.0.1"}), ("0.0.0.0", {"0.0.0.0"})):
            env = dict(svc.env, **({"POSEANIMATE_WORKER_METRICS_HOST": host} if host else {}))
            port = free_port()
            with worker_process(process_env(env), tmp_path, name=f"w{port}", queues="io", metrics_port=port):
                assert _listen_addresses(port) == expected


def test_sigkill_of_the_worker_supervisor_takes_its_consumers_with_it(tmp_path: Path):
    import os
    import signal

    with running_service(tmp_path, **NOOP) as svc:
        succeeded(svc)  # the consumers are up and serving
        supervisor = svc.worker.proc
        consumers = _children(supervisor.pid)
        assert len(consumers) == 3, consumers  # gpu + io + webhooks (deliveries have their own consumer)
        os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor only, not its group
        supervisor.wait(5)
        _wait(lambda: not any(_alive(c) for c in consumers), 15, "consumers outlived their supervisor")


# --------------------------------------------------------------------------------------------
# 5. SSE: one Redis pub/sub connection per API process, however many streams
# --------------------------------------------------------------------------------------------
def _redis_clients(svc: Service) -> int:
    import redis

    with redis.Redis.from_url(svc.env["POSEANIMATE_REDIS_URL"]) as r:
        return int(r.info("clients")["connected_clients"]) - 1  # not this probe


def test_many_sse_streams_share_one_redis_connection(local):
    import threading

    import httpx

    job_id = local.api.post("/animations", json=job_body(steps=600, transition_frames=1)).json()["id"]
    local.wait_for_job(job_id, lambda j: j["status"] == "running")
    first = threading.Event()
    opened, stop = [], threading.Event()

    def hold() -> None:
        headers = dict(local.api.headers)
        with (
            httpx.Client(base_url=local.api_url, headers=headers, timeout=30) as client,
            client.stream("GET", f"/animations/{job_id}/events") as reply,
        ):
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    opened.append(1)
                    first.set()
                    break
            stop.wait(30)

    with (
        httpx.Client(base_url=local.api_url, headers=dict(local.api.headers)) as warm,
        warm.stream("GET", f"/animations/{job_id}/events") as reply,
    ):
        next(reply.iter_lines())  # the broker exists now (its one connection)
    time.sleep(0.3)
    before = _redis_clients(local)
    threads = [threading.Thread(target=hold, daemon=True) for _ in range(50)]
    try:
        for n, thread in enumerate(threads, 1):  # one after another: what is measured is holding them
            thread.start()
            _wait(lambda n=n: len(opened) == n, 10, f"stream {n} did not open")
        during = _redis_clients(local)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        local.api.post(f"/animations/{job_id}/cancel")
    # A held stream no longer holds a connection (it was +1 per stream: +50 here).
    assert during - before <= 3, f"Redis clients went from {before} to {during} for 50 streams"


def test_streams_beyond_the_per_key_cap_answer_429_with_retry_after(lifecycle):
    import threading

    import httpx

    svc = lifecycle  # MAX_STREAMS_PER_KEY: the default, 10
    job_id = svc.api.post("/animations", json=job_body(steps=800, transition_frames=1)).json()["id"]
    svc.wait_for_job(job_id, lambda j: j["status"] == "running")
    opened, stop = [], threading.Event()

    def hold() -> None:
        with (
            httpx.Client(base_url=svc.api_url, headers=dict(svc.api.headers), timeout=30) as client,
            client.stream("GET", f"/animations/{job_id}/events") as reply,
        ):
            opened.append(reply.status_code)
            stop.wait(30)

    threads = [threading.Thread(target=hold, daemon=True) for _ in range(10)]
    for thread in threads:
        thread.start()
    try:
        _wait(lambda: len(opened) == 10, 20, f"{len(opened)} streams opened")
        assert opened == [200] * 10
        extra = svc.api.get(f"/animations/{job_id}/events")
        assert extra.status_code == 429 and extra.json()["code"] == "too_many_streams"
        assert int(extra.headers["Retry-After"]) >= 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    # Streams the clients closed give their slots back (the job is still running).
    _wait(
        lambda: (
            svc.api.get(f"/animations/{job_id}", timeout=5).json()["status"] == "running"
            and _stream_opens(svc, job_id)
        ),
        15,
        "closed streams kept their slots",
    )
    svc.api.post(f"/animations/{job_id}/cancel")


def _stream_opens(svc: Service, job_id: str) -> bool:
    import httpx

    with (
        httpx.Client(base_url=svc.api_url, headers=dict(svc.api.headers), timeout=10) as client,
        client.stream("GET", f"/animations/{job_id}/events") as reply,
    ):
        return reply.status_code == 200
