"""Issue 6's faults against the real parts, with the noop backend (no model) so jobs take a second.

Each test breaks something the way production does (SIGKILL, a server restart, a dependency that
answers with resets, a receiver that hangs) and checks that every job ends ``succeeded`` exactly
once, or ``failed`` with a clear code, and that nothing is lost. The slow ones are ``chaos`` tests
(``make chaos``); docs/reliability.md lists them all with the command to rerun each.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from jobs.store import JobStore, owner_id_for_key
from launch.commands import serve_argv
from tests.support.payloads import job_body
from tests.support.servers import TcpProxy, free_port, wait_for_port, worker_process
from tests.support.stack import (
    API_KEY,
    BUCKET,
    Service,
    process_env,
    running_service,
    settings_from_env,
    start_api,
)

pytestmark = pytest.mark.integration

# No model; long jobs by step count; limits far above what a test submits.
NOOP = {
    "ANIMATOR": "noop",
    "NOOP_STEP_SECONDS": "0.02",
    "MAX_STEPS": "1000",
    "RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "100000",
    "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
    "MAX_ACTIVE_JOBS": "1000",
}


def body(steps: int = 2, **overrides: object) -> dict[str, object]:
    return job_body(steps=steps, transition_frames=1, **overrides)


def terminal(job: dict) -> bool:
    return job["status"] in ("succeeded", "failed", "canceled")


def running_past_loading(attempt: int = 1):
    return lambda j: (
        j["status"] == "running" and j["attempts"] == attempt and j["stage"] not in (None, "loading")
    )


def store_of(svc: Service) -> JobStore:
    return JobStore.from_url(svc.env["POSEANIMATE_REDIS_URL"])


def job_pid(svc: Service, job_id: str) -> int:
    """The process running the job's current attempt (the prefork child)."""
    worker = store_of(svc).get(job_id).worker
    assert worker, "a running attempt records its process"
    return int(worker.rsplit(":", 1)[1])


def log_records(svc: Service, job_id: str, msg: str) -> list[dict]:
    """The worker's JSON log records with this message for this job, over all worker logs."""
    out = []
    for path in Path(svc.tmp).glob("*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{msg}"' in line and job_id in line:
                record = json.loads(line)
                if record.get("msg") == msg and record.get("job_id") == job_id:
                    out.append(record)
    return out


def outputs_in_s3(svc: Service, job_id: str) -> list[str]:
    listing = svc.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"it/outputs/{job_id}/")
    return [o["Key"] for o in listing.get("Contents", [])]


def broker_is_empty(svc: Service) -> bool:
    """No copy of any message left: neither queued nor delivered-and-unacknowledged."""
    with redis.Redis.from_url(svc.env["POSEANIMATE_REDIS_URL"]) as r:
        return r.llen("gpu") == 0 and r.hlen("unacked") == 0


def wait_until(condition, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout}s")


def logged_once(svc: Service, job_id: str, msg: str) -> bool:
    """Exactly one ``msg`` record for the job (waiting a moment: the worker writes the line just
    after the status the test saw)."""
    wait_until(lambda: log_records(svc, job_id, msg), 5, f"{msg!r} logged for {job_id}")
    return len(log_records(svc, job_id, msg)) == 1


# What a finished job uploads: the MP4, the poster and the three previews.
OUTPUT_NAMES = {"animation.mp4", "poster.png", "poses.json", "skeleton.mp4", "side_by_side.mp4"}


def assert_succeeded_once(svc: Service, job_id: str, attempts: int = 1) -> dict:
    job = svc.api.get(f"/animations/{job_id}").json()
    assert job["status"] == "succeeded" and job["attempts"] == attempts, job
    assert logged_once(svc, job_id, "job succeeded")
    assert sorted(outputs_in_s3(svc, job_id)) == [
        f"it/outputs/{job_id}/{name}" for name in sorted(OUTPUT_NAMES)
    ]
    return job


# --------------------------------------------------------------------------------------------
# 1. Worker killed (SIGKILL) mid-job
# --------------------------------------------------------------------------------------------
def test_job_that_kills_its_worker_every_time_fails_as_worker_lost_after_the_cap(tmp_path):
    with running_service(tmp_path, **NOOP, MAX_ATTEMPTS="2") as svc:
        job_id = svc.api.post("/animations", json=body(steps=300)).json()["id"]
        for attempt in (1, 2):  # as the OOM killer would, every time the job runs
            svc.wait_for_job(job_id, running_past_loading(attempt), timeout=60)
            os.kill(job_pid(svc, job_id), signal.SIGKILL)

        job = svc.wait_for_job(job_id, terminal, timeout=60)
        assert job["status"] == "failed" and job["error"]["code"] == "worker_lost", job
        assert job["attempts"] == 2 and "2 times" in job["error"]["message"]
        assert outputs_in_s3(svc, job_id) == []
        wait_until(lambda: broker_is_empty(svc), 10, "no requeued copy left (no endless requeue)")

        nxt = svc.api.post("/animations", json=body()).json()["id"]  # the worker keeps serving
        assert svc.wait_for_job(nxt, terminal, timeout=60)["status"] == "succeeded"


@pytest.mark.chaos
def test_job_of_a_lost_worker_node_runs_again_on_a_restarted_worker(tmp_path):
    with running_service(tmp_path, worker=False, **NOOP) as svc:
        env = process_env(svc.env)
        with worker_process(env, tmp_path, name="node-1") as node:
            job_id = svc.api.post("/animations", json=body(steps=150)).json()["id"]
            svc.wait_for_job(job_id, running_past_loading(), timeout=60)
            node.kill()  # the whole worker: supervisor, Celery consumer and job process
        assert svc.api.get(f"/animations/{job_id}").json()["status"] == "running"
        with worker_process(env, tmp_path, name="node-2"):
            # Redis alone would redeliver after VISIBILITY_TIMEOUT_S (hours); the API's sweeper
            # re-sends the job once its lock (LOCK_TTL_S = 3 s here) has expired.
            job = svc.wait_for_job(job_id, terminal, timeout=60)
            assert job["status"] == "succeeded" and job["attempts"] == 2, job
            assert_succeeded_once(svc, job_id, attempts=2)


# --------------------------------------------------------------------------------------------
# 2. Redis restarted with persistence (AOF) while jobs are queued and running
# --------------------------------------------------------------------------------------------
@pytest.mark.chaos
@pytest.mark.parametrize(
    "outage_s", [2.0, 8.0], ids=["outage-within-the-lock-ttl", "outage-past-the-lock-ttl"]
)
def test_redis_restart_with_aof_loses_no_job_and_the_api_recovers_by_itself(tmp_path, outage_s):
    with running_service(tmp_path, redis_appendonly=True, **NOOP, LOCK_TTL_S="5") as svc:
        long_id = svc.api.post("/animations", json=body(steps=80)).json()["id"]  # ~5 s of steps
        queued = [svc.api.post("/animations", json=body()).json()["id"] for _ in range(3)]
        svc.wait_for_job(long_id, running_past_loading(), timeout=60)

        svc.redis.kill()  # SIGKILL: only the append-only file survives
        for r in (
            svc.api.get(f"/animations/{long_id}"),
            svc.api.post("/animations", json=body()),
            svc.api.get("/readyz"),
        ):
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] in ("service_unavailable", "not_ready")
        time.sleep(outage_s)
        svc.redis.start()

        # The API recovers by itself: no restart, the next requests just work.
        wait_until(lambda: svc.api.get("/readyz").status_code == 200, 15, "API ready again")
        after = svc.api.post("/animations", json=body()).json()["id"]
        for job_id in [long_id, *queued, after]:
            job = svc.wait_for_job(job_id, terminal, timeout=90)
            assert job["status"] == "succeeded", job
            assert_succeeded_once(svc, job_id, attempts=job["attempts"])
            assert job["attempts"] <= 2
        for job_id in queued:
            assert svc.api.get(f"/animations/{job_id}").json()["attempts"] == 1


# --------------------------------------------------------------------------------------------
# 3. API process restarted during submissions
# --------------------------------------------------------------------------------------------
class ApiProcess:
    """``poseanimate serve`` on a fixed port, to be SIGKILLed and started again."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd, self.port = process_env(env), cwd, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with (self.cwd / "api.log").open("ab") as log:
            self.proc = subprocess.Popen(
                serve_argv(self.port),
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=log,
            )
        wait_for_port(self.port, timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


@pytest.mark.chaos
def test_api_killed_during_submissions_every_acknowledged_job_exists_and_runs(tmp_path):
    overrides = {
        **NOOP,
        "NOOP_STEP_SECONDS": "0.005",
        "INTERRUPTED_SUBMISSION_S": "3",
    }
    with running_service(tmp_path, **overrides) as svc:
        api = ApiProcess(svc.env, tmp_path)
        acknowledged: dict[str, set[str]] = {}  # Idempotency-Key -> job ids answered 202/200
        stop = threading.Event()
        lock = threading.Lock()

        def client(n: int) -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=15) as http:
                i = 0
                while not stop.is_set():
                    key = f"client{n}-{i}"
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:  # a careful client retries with its key
                        try:
                            r = http.post(
                                f"{api.url}/animations", json=body(), headers={"Idempotency-Key": key}
                            )
                        except httpx.HTTPError:
                            time.sleep(0.2)
                            continue
                        if r.status_code in (200, 202):
                            with lock:
                                acknowledged.setdefault(key, set()).add(r.json()["id"])
                            break
                        assert r.status_code in (409, 503), r.text  # in progress / dependency down
                        time.sleep(0.3)
                    else:
                        raise AssertionError(f"{key} never acknowledged")
                    i += 1

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client, n) for n in range(4)]
            for _ in range(4):
                time.sleep(random.uniform(0.5, 1.5))
                api.kill()  # SIGKILL mid-submissions: no graceful shutdown
                time.sleep(0.3)
                api.start()
            time.sleep(1)
            stop.set()
            for f in futures:
                f.result()
        api.kill()

        store = store_of(svc)
        assert len(acknowledged) >= 10
        # Retries with the same key answered the same job, whatever the API went through.
        assert all(len(ids) == 1 for ids in acknowledged.values()), acknowledged
        # Every job in the store - acknowledged or not (created, then the API died) - runs to the
        # end: none stranded in the queue without a message, none holding a quota slot.
        owner = owner_id_for_key(API_KEY)
        all_ids = store.r.zrange(store.index_key(owner), 0, -1)
        assert set().union(*acknowledged.values()) <= set(all_ids)
        assert len(all_ids) == len(acknowledged), "one job per Idempotency-Key, none lost, none doubled"
        for job_id in all_ids:
            job = svc.wait_for_job(job_id, terminal, timeout=120)
            assert job["status"] == "succeeded", job
            assert logged_once(svc, job_id, "job succeeded")
        assert store.r.zcard(store.unsent_key) == 0
        # Quota slots taken by requests that died before creating their job are given back.
        time.sleep(3.5)
        last = svc.api.post("/animations", json=body()).json()["id"]
        assert svc.wait_for_job(last, terminal, timeout=30)["status"] == "succeeded"
        assert store.r.zcard(store.active_key(owner)) == 0


@pytest.mark.chaos
def test_api_killed_between_creating_a_job_and_sending_its_message_the_job_still_runs(tmp_path):
    """The crash window of a submission, made wide: the API's broker connection hangs (blackholed),
    so the request blocks after the job record is written and before its message is sent; then the
    API is SIGKILLed there. The client never got a 202; its retry with the same key must get that
    job, and the job must run (the outbox sweeper sends its message) rather than sit queued forever."""
    with running_service(tmp_path, **NOOP, INTERRUPTED_SUBMISSION_S="2") as svc:
        broker = TcpProxy(svc.redis.port)
        api = ApiProcess(
            {**svc.env, "POSEANIMATE_BROKER_URL": f"redis://127.0.0.1:{broker.port}/0"}, tmp_path
        )
        store = store_of(svc)

        def submit(key: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key}
            return httpx.post(f"{api.url}/animations", json=body(), headers=headers, timeout=60)

        try:
            assert submit("warm-up").status_code == 202  # the API's broker connection is open
            broker.hang = True
            broker.cut()
            with ThreadPoolExecutor(1) as pool:
                pending = pool.submit(submit, "stuck")
                wait_until(lambda: store.r.zcard(store.unsent_key) == 1, 15, "job created, message unsent")
                time.sleep(0.5)
                api.kill()
                with pytest.raises(httpx.HTTPError):
                    pending.result()  # no 202 reached the client
            (job_id,) = store.r.zrange(store.unsent_key, 0, -1)
            assert store.get(job_id).status.value == "queued"

            broker.hang = False
            api.start()
            retry = submit("stuck")
            assert retry.status_code in (200, 202) and retry.json()["id"] == job_id
            assert svc.wait_for_job(job_id, terminal, timeout=30)["status"] == "succeeded"
            assert_succeeded_once(svc, job_id)
            assert store.r.zcard(store.unsent_key) == 0
        finally:
            api.kill()
            broker.close()


# --------------------------------------------------------------------------------------------
# 4. S3 endpoint down during upload
# --------------------------------------------------------------------------------------------
@pytest.mark.chaos
def test_s3_outage_during_upload_is_retried_then_fails_as_storage_unavailable_and_a_retry_works(tmp_path):
    with running_service(tmp_path, s3_proxy=True, **NOOP, STORAGE_RETRY_S="6") as svc:
        proxy = svc.s3_proxy
        assert proxy is not None

        # A 1.5-second blip during the upload (boto3's own retries span well under a second): the
        # worker waits it out with backoff and the finished render is uploaded.
        blip = svc.api.post("/animations", json=body(steps=40)).json()["id"]
        svc.wait_for_job(blip, lambda j: j["stage"] in ("sampling", "encoding"), timeout=60)
        proxy.up = False
        wait_until(lambda: len(proxy.attempts) >= 1, 30, "the upload hit the outage")
        time.sleep(1.5)
        proxy.up = True
        assert svc.wait_for_job(blip, terminal, timeout=60)["status"] == "succeeded"
        assert_succeeded_once(svc, blip)
        assert len(proxy.attempts) > 5  # more than one round of boto3's retries
        assert log_records(svc, blip, "storage unavailable; retrying")

        # An outage longer than STORAGE_RETRY_S: retried with backoff, then the job fails with a
        # clear code, nothing half-published.
        proxy.attempts.clear()
        job_id = svc.api.post("/animations", json=body(steps=40)).json()["id"]
        svc.wait_for_job(job_id, lambda j: j["stage"] in ("sampling", "encoding"), timeout=60)
        proxy.up = False
        job = svc.wait_for_job(job_id, terminal, timeout=90)
        assert job["status"] == "failed" and job["error"]["code"] == "storage_unavailable", job
        assert job["output"] is None and job["progress"] < 1
        assert len(proxy.attempts) > 5 and proxy.attempts[-1] - proxy.attempts[0] > 1.5, proxy.attempts
        # not silent: the worker says so, with the job id, at every retry and at the end
        assert log_records(svc, job_id, "storage unavailable; retrying")
        assert log_records(svc, job_id, "storage unavailable")

        # While it is down the API refuses new jobs with 503 (inputs cannot be stored) and takes
        # nothing: the quota slot and the Idempotency-Key are given back.
        r = svc.api.post("/animations", json=body(), headers={"Idempotency-Key": "after-outage"})
        assert r.status_code == 503 and r.json()["code"] == "storage_unavailable"
        proxy.up = True

        # A retry of the job works: the same request with the same key, now that S3 is back.
        r = svc.api.post("/animations", json=body(steps=40), headers={"Idempotency-Key": "after-outage"})
        assert r.status_code == 202, r.text
        assert svc.wait_for_job(r.json()["id"], terminal, timeout=60)["status"] == "succeeded"
        assert_succeeded_once(svc, r.json()["id"])
        # the failed job's inputs were kept, so it can be run again from them too
        keys = svc.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"it/inputs/{job_id}/")["Contents"]
        assert {k["Key"].rsplit("/", 1)[1] for k in keys} == {"image.png", "poses.json"}


# --------------------------------------------------------------------------------------------
# 5. Webhook receiver down / slow / 500 / 410
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def noop(tmp_path_factory: pytest.TempPathFactory):
    """One noop stack for the quicker tests below; webhook attempts time out after 1 s."""
    overrides = {**NOOP, "NOOP_STEP_SECONDS": "0.01", "WEBHOOK_TIMEOUT_S": "1"}
    with running_service(tmp_path_factory.mktemp("noop"), **overrides) as svc:
        yield svc


def test_webhook_to_a_receiver_that_is_down_is_retried_with_backoff_then_given_up(noop):
    down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    job_id = noop.api.post("/animations", json=body(webhook_url=down, webhook_events=["completed"])).json()[
        "id"
    ]
    job = noop.wait_for_job(job_id, lambda j: len(j["webhook"]["deliveries"]) == 4, timeout=60)
    deliveries = job["webhook"]["deliveries"]
    assert [d["attempt"] for d in deliveries] == [1, 2, 3, 4]
    assert [d["result"] for d in deliveries] == ["retrying", "retrying", "retrying", "failed"]
    assert len({d["webhook_id"] for d in deliveries}) == 1  # one event, one id, every attempt
    assert all(d["status_code"] is None and d["error"] for d in deliveries)
    time.sleep(1.5)  # past the whole backoff schedule: no fifth attempt
    assert len(noop.api.get(f"/animations/{job_id}").json()["webhook"]["deliveries"]) == 4


def test_a_slow_webhook_receiver_never_holds_up_gpu_work(noop):
    noop.receiver.drain()
    noop.receiver.delay_s = 2.5  # longer than WEBHOOK_TIMEOUT_S: every attempt times out
    try:
        hooked = noop.api.post(
            "/animations", json=body(webhook_url=noop.receiver.url, webhook_events=["completed"])
        ).json()["id"]
        noop.wait_for_job(hooked, lambda j: j["webhook"]["deliveries"], timeout=60)
        others = [noop.api.post("/animations", json=body()).json()["id"] for _ in range(3)]
        for job_id in others:
            assert noop.wait_for_job(job_id, terminal, timeout=30)["status"] == "succeeded"
        # ... all done while the slow receiver's deliveries are still being retried
        deliveries = noop.api.get(f"/animations/{hooked}").json()["webhook"]["deliveries"]
        assert deliveries[-1]["result"] == "retrying" and deliveries[0]["error"] == "ReadTimeout"
        noop.receiver.delay_s = 0
        job = noop.wait_for_job(
            hooked, lambda j: j["webhook"]["deliveries"][-1]["result"] == "delivered", timeout=30
        )
        assert len({d["webhook_id"] for d in job["webhook"]["deliveries"]}) == 1
    finally:
        noop.receiver.delay_s = 0
        time.sleep(3)  # let the receiver's sleeping handlers finish
        noop.receiver.drain()


# --------------------------------------------------------------------------------------------
# 6. Visibility timeout and time limits
# --------------------------------------------------------------------------------------------
SHORT_VISIBILITY_APP = "tests.integration.short_visibility:app"


@pytest.mark.chaos
def test_job_running_past_the_visibility_timeout_is_not_run_twice(tmp_path):
    with running_service(tmp_path, worker=False, **NOOP, LOCK_TTL_S="2") as svc:
        env = process_env({**svc.env, "TEST_VISIBILITY_TIMEOUT_S": "2"})
        with (
            worker_process(env, tmp_path, name="gpu-1", queues="gpu", celery_app=SHORT_VISIBILITY_APP) as w1,
            worker_process(env, tmp_path, name="gpu-2", queues="gpu", celery_app=SHORT_VISIBILITY_APP) as w2,
        ):
            job_id = svc.api.post("/animations", json=body(steps=150)).json()["id"]  # ~9 s
            job = svc.wait_for_job(job_id, terminal, timeout=90)
            time.sleep(5)  # later redeliveries of the finished job's message find it finished
            wait_until(lambda: broker_is_empty(svc), 20, "every redelivered copy consumed")
            received = [
                line
                for line in (w1.log() + w2.log()).splitlines()
                if "poseanimate.animate[" in line and "] received" in line
            ]
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        assert len(received) >= 2, "the message was redelivered while the job ran (the test exercised it)"
        assert logged_once(svc, job_id, "job started")
        assert_succeeded_once(svc, job_id)


def test_job_past_its_time_limits_fails_as_timeout_and_the_worker_goes_on(tmp_path):
    with running_service(tmp_path, **NOOP, SOFT_TIME_LIMIT_S="2", HARD_TIME_LIMIT_S="4") as svc:
        # Soft limit: the job is interrupted where it is and fails cleanly.
        soft = svc.api.post("/animations", json=body(steps=300)).json()["id"]
        job = svc.wait_for_job(soft, terminal, timeout=30)
        assert job["status"] == "failed" and job["error"]["code"] == "timeout", job
        assert "2 s time limit" in job["error"]["message"]

        # Hard limit: a job stuck where the soft limit cannot reach it (stopped, like a hung native
        # call) is killed by Celery's parent, which records the timeout; no rerun.
        hung = svc.api.post("/animations", json=body(steps=300)).json()["id"]
        svc.wait_for_job(hung, running_past_loading(), timeout=30)
        os.kill(job_pid(svc, hung), signal.SIGSTOP)
        job = svc.wait_for_job(hung, terminal, timeout=30)
        assert job["status"] == "failed" and job["error"]["code"] == "timeout", job
        assert "4 s hard time limit" in job["error"]["message"] and job["attempts"] == 1

        nxt = svc.api.post("/animations", json=body()).json()["id"]  # a fresh job process serves on
        assert svc.wait_for_job(nxt, terminal, timeout=30)["status"] == "succeeded"
        assert svc.api.get(f"/animations/{hung}").json()["attempts"] == 1
        wait_until(lambda: broker_is_empty(svc), 10, "the timed-out message is acked, not requeued")


# --------------------------------------------------------------------------------------------
# 7. Duplicate submissions with the same Idempotency-Key, concurrently, over two API processes
# --------------------------------------------------------------------------------------------
def test_concurrent_duplicates_across_two_api_instances_make_one_job(noop):
    second = noop.env
    with start_api(settings_from_env(second)) as other_url:
        urls = [noop.api_url, other_url]
        same = body(prompt="once only")

        def post(i: int, payload: dict) -> httpx.Response:
            return httpx.post(
                f"{urls[i % 2]}/animations",
                json=payload,
                headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "dup-key"},
                timeout=30,
            )

        with ThreadPoolExecutor(16) as pool:
            replies = list(pool.map(lambda i: post(i, same), range(24)))
        assert {r.status_code for r in replies} <= {200, 202}, [r.text for r in replies]
        ids = {r.json()["id"] for r in replies}
        assert len(ids) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in replies) == 23
        (job_id,) = ids
        # Same key, another body, concurrently: refused, and still one job.
        with ThreadPoolExecutor(8) as pool:
            others = list(pool.map(lambda i: post(i, body(prompt=f"other {i}")), range(8)))
        assert {r.status_code for r in others} == {422}
        assert {r.json()["code"] for r in others} == {"idempotency_key_reused"}
        assert noop.wait_for_job(job_id, terminal, timeout=30)["status"] == "succeeded"
        assert logged_once(noop, job_id, "job started")


def test_cancel_that_lands_during_the_upload_wins_and_leaves_no_outputs(tmp_path):
    with running_service(tmp_path, s3_proxy=True, **NOOP) as svc:
        proxy = svc.s3_proxy
        assert proxy is not None
        job_id = svc.api.post("/animations", json=body(steps=10)).json()["id"]
        svc.wait_for_job(job_id, running_past_loading(), timeout=30)
        proxy.delay_s = 0.3  # a slow S3: the upload takes a second or two
        svc.wait_for_job(job_id, lambda j: j["stage"] == "uploading", timeout=30)
        r = svc.api.post(f"/animations/{job_id}/cancel")
        assert r.status_code == 202 and r.json()["cancel_requested"] is True
        job = svc.wait_for_job(job_id, terminal, timeout=30)
        assert job["status"] == "canceled" and job["output"] is None, job
        proxy.delay_s = 0
        # Uploaded, then deleted by the worker right after the cancel won the final transition.
        wait_until(lambda: outputs_in_s3(svc, job_id) == [], 15, "the canceled job's outputs deleted")
        assert log_records(svc, job_id, "job canceled") and not log_records(svc, job_id, "job succeeded")


# --------------------------------------------------------------------------------------------
# 8. Cancel races
# --------------------------------------------------------------------------------------------
def test_cancel_races_end_in_a_consistent_state_and_canceled_jobs_upload_nothing(noop):
    noop.receiver.drain()
    events = ["completed", "failed", "canceled"]
    jobs = [
        noop.api.post(
            "/animations", json=body(steps=15, webhook_url=noop.receiver.url, webhook_events=events)
        ).json()["id"]
        for _ in range(20)
    ]
    rng = random.Random(6)
    replies: dict[str, int] = {}

    def status(job_id: str) -> dict:
        return noop.api.get(f"/animations/{job_id}").json()

    def cancel(job_id: str, when: str) -> None:
        """Cancel at a random moment, or the moment the job starts / runs / has finished."""
        deadline = time.monotonic() + 60
        if when == "random":
            time.sleep(rng.uniform(0, 3))
        while when != "random" and time.monotonic() < deadline:
            job = status(job_id)
            if (
                (when == "starting" and job["status"] != "queued")
                or (when == "running" and job["stage"] in ("optimizing", "sampling"))
                or (when == "finished" and terminal(job))
            ):
                break
            time.sleep(0.005)
        replies[job_id] = noop.api.post(f"/animations/{job_id}/cancel").status_code

    modes = ["random"] * 8 + ["starting", "running", "finished"] * 4
    threads = [threading.Thread(target=cancel, args=(j, m)) for j, m in zip(jobs, modes, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finals = {job_id: noop.wait_for_job(job_id, terminal, timeout=60) for job_id in jobs}

    for job_id, job in finals.items():
        reply = replies[job_id]
        if reply in (200, 202):  # canceled at once (queued) or on request (running): it stays so
            assert job["status"] == "canceled", (reply, job)
            assert job["output"] is None and outputs_in_s3(noop, job_id) == [], job
        else:
            assert reply == 409 and job["status"] == "succeeded", (reply, job)
            # the MP4, the poster and the three previews (poses.json, skeleton, side by side)
            assert {key.rsplit("/", 1)[1] for key in outputs_in_s3(noop, job_id)} == OUTPUT_NAMES
    outcomes = [(replies[i], j["status"], j["attempts"]) for i, j in finals.items()]
    assert (200, "canceled", 0) in outcomes, outcomes  # canceled while queued: never started
    assert (202, "canceled", 1) in outcomes, outcomes  # canceled while running
    assert any(r == 409 for r, _, _ in outcomes), outcomes  # after it finished

    # Exactly one final webhook per job, saying how it really ended.
    expected = {"succeeded": "animation.completed", "canceled": "animation.canceled"}
    want = {i: [expected[j["status"]]] for i, j in finals.items()}
    seen: dict[str, list[str]] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and {i: seen.get(i) for i in want} != want:
        try:
            hook = noop.receiver.get(timeout=0.5)
        except Exception:
            continue
        seen.setdefault(hook.json()["data"]["id"], []).append(hook.json()["type"])
    time.sleep(1)
    for hook in noop.receiver.drain():
        seen.setdefault(hook.json()["data"]["id"], []).append(hook.json()["type"])
    assert {i: seen.get(i) for i in want} == want
