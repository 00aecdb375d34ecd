"""Every way a worker ends a job, observed from outside: the status and code on the record, one
``poseanimate_jobs_finished_total`` count, and exactly one webhook of the ending. A path that failed or
canceled a job without going through ``jobs.services`` (so without its webhook or its count) fails
here; ``tests/jobs/test_services.py`` checks that no such path can be written unnoticed."""

from __future__ import annotations

import threading

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from prometheus_client import REGISTRY

from jobs.contract import EXAMPLE_POSES, JobStatus
from jobs.intake.acceptance import ValidatedJob, accept_job
from jobs.intake.limits import effective_params
from jobs.store import new_job_id
from tests.support.jobs import noop_runner, png
from worker.extraction import run_job_extraction

EVENTS = ["started", "failed", "canceled"]


class RecordingQueue:
    """Messages sent (nothing is consumed); webhooks as (job id, event)."""

    def __init__(self) -> None:
        self.webhooks: list[tuple[str, str]] = []
        self.sent: list[tuple[str, str]] = []

    def enqueue_animation(self, job_id):
        self.sent.append(("gpu", job_id))

    def enqueue_job_extraction(self, job_id):
        self.sent.append(("io", job_id))

    def enqueue_webhook(self, job_id, event, body, msg_id, **kwargs):
        self.webhooks.append((job_id, event))


@pytest.fixture
def env(store, redis_srv, tmp_path):
    queue = RecordingQueue()
    _, storage, runner = noop_runner(
        store, redis_srv.url, tmp_path, queue=queue, max_attempts=2, noop_step_seconds=0.01
    )
    return store, storage, queue, runner


def submit(env, *, video: bool = False, steps: int = 2):
    store, storage, queue, _ = env
    params = effective_params({"prompt": "a person", "steps": steps, "fps": 8, "size": 64})
    job = ValidatedJob(
        params=params,
        image_png=png(),
        poses=None if video else EXAMPLE_POSES,
        driving_video=b"\x00\x00\x00\x18ftypmp42" if video else None,
        webhook_url="https://hooks.example.com/poseanimate",
        webhook_events=EVENTS,
        num_frames=1 + params["transition_frames"] + 2,
    )
    return accept_job(new_job_id(), "key_a", job, store=store, storage=storage, queue=queue, max_active=10)


def finished(outcome: str) -> float:
    return REGISTRY.get_sample_value("poseanimate_jobs_finished_total", {"outcome": outcome}) or 0.0


class Failing:
    name, random_weights = "failing", False

    def __init__(self, exc):
        self.exc = exc

    def render(self, job, out_dir, on_progress, should_cancel):
        raise self.exc


def engine_error(env, job_id, monkeypatch):
    env[3].holder._animator = Failing(RuntimeError("boom"))
    assert env[3].run(job_id) == "failed"


def soft_time_limit(env, job_id, monkeypatch):
    env[3].holder._animator = Failing(SoftTimeLimitExceeded())
    assert env[3].run(job_id) == "failed"


def attempt_cap(env, job_id, monkeypatch):
    store = env[0]
    for _ in range(2):  # two attempts whose workers died
        store.start_attempt(job_id, 2, "noop", False)
    assert env[3].run(job_id) == "failed"


def hard_time_limit(env, job_id, monkeypatch):
    from worker import tasks

    monkeypatch.setattr(tasks, "_runner", env[3])
    env[0].start_attempt(job_id, 2, "noop", False)
    tasks.animate.on_failure(TimeLimitExceeded(3600), "task-id", [job_id], {}, None)


def video_missing(env, job_id, monkeypatch):
    env[1].delete_prefix(f"inputs/{job_id}")
    assert run_job_extraction(job_id, env[3].services) == "failed"


def no_poses_nor_video(env, job_id, monkeypatch):
    assert env[0].update_queued(job_id, inputs=["image.png"])
    assert run_job_extraction(job_id, env[3].services) == "failed"


@pytest.mark.parametrize(
    "path,video,code",
    [
        (engine_error, False, "internal_error"),
        (soft_time_limit, False, "timeout"),
        (attempt_cap, False, "worker_lost"),
        (hard_time_limit, False, "timeout"),
        (video_missing, True, "internal_error"),
        (no_poses_nor_video, True, "invalid_input"),
    ],
)
def test_every_failure_path_records_counts_and_notifies_once(env, path, video, code, monkeypatch):
    store, _, queue, runner = env
    record = submit(env, video=video)
    before = finished(code)
    path(env, record.id, monkeypatch)
    failed = store.get(record.id)
    assert (failed.status, failed.error_code) == (JobStatus.FAILED, code)
    assert finished(code) == before + 1
    assert [event for job, event in queue.webhooks if job == record.id and event != "started"] == ["failed"]
    # Ending it again changes nothing: no second count, no second webhook.
    assert runner.services.fail_job(record.id, "internal_error", "again") is False
    assert finished(code) == before + 1 and queue.webhooks.count((record.id, "failed")) == 1


def test_a_cancel_seen_by_the_worker_records_counts_and_notifies_once(env):
    store, _, queue, runner = env
    record = submit(env, steps=200)
    before = finished("canceled")
    threading.Timer(0.3, store.request_cancel, args=(record.id,)).start()
    assert runner.run(record.id) == "canceled"  # running: the worker sees the request between steps
    assert store.get(record.id).status is JobStatus.CANCELED
    assert finished("canceled") == before + 1
    assert [event for job, event in queue.webhooks if job == record.id] == ["started", "canceled"]


def test_a_job_deleted_while_it_runs_leaves_nothing_once_the_worker_stops(env):
    """L4 (issue 24): the canceled stub of a deleted running job stayed for 7 days (the retention of
    a finished job); now nothing of it stays once its worker stops."""
    from jobs.deletion import delete_job

    store, _, queue, runner = env
    record = submit(env, steps=200)
    before = finished("canceled")
    threading.Timer(0.3, lambda: delete_job(store.get(record.id), runner.services)).start()
    assert runner.run(record.id) == "canceled"
    assert store.get(record.id) is None and not store.r.exists(store.job_key(record.id))
    assert not store.r.exists(store.deliveries_key(record.id))
    assert store.r.zscore(store.running_key, record.id) is None
    assert finished("canceled") == before + 1
    assert [event for job, event in queue.webhooks if job == record.id] == ["started", "deleted"]


def test_a_job_deleted_as_it_starts_is_canceled_not_failed(env, monkeypatch):
    """L4: deleted between its start and reading its inputs, it ended failed/internal_error
    ("source_pose.json missing") and counted as a failure."""
    from jobs.deletion import delete_job

    store, _, queue, runner = env
    record = submit(env)
    real_start = store.start_attempt

    def start_then_delete(job_id, *args, **kwargs):
        started = real_start(job_id, *args, **kwargs)
        delete_job(store.get(job_id), runner.services)  # its inputs go, a stub stays for the worker
        return started

    monkeypatch.setattr(store, "start_attempt", start_then_delete)
    failures, canceled = finished("internal_error"), finished("canceled")
    runner.run(record.id)
    assert finished("internal_error") == failures and finished("canceled") == canceled + 1
    assert not store.r.exists(store.job_key(record.id))
    assert [event for job, event in queue.webhooks if job == record.id and event == "failed"] == []
