"""The io tasks honour the per-key extraction slots (issue 24, M1; ``jobs.fairness``): a job's
extraction whose key has no free slot is deferred (the job untouched, still queued), runs once the
slot frees, and the task retries without a cap."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry

from jobs.contract import JobStatus
from jobs.extractions import ExtractionStore, new_extraction_id
from jobs.fairness import ExtractionSlots
from jobs.intake.acceptance import ValidatedJob, accept_job
from jobs.intake.limits import effective_params
from jobs.store import new_job_id
from tests.support.clips import astronaut_mp4
from tests.support.jobs import noop_runner, png
from worker import tasks
from worker.extraction import run_extraction, run_job_extraction

pytest.importorskip("mediapipe")


class _Queue:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def enqueue_animation(self, job_id):
        self.sent.append(job_id)

    def enqueue_job_extraction(self, job_id):
        pass


def test_a_jobs_extraction_waits_for_its_keys_slot_then_runs(store, redis_srv, tmp_path):
    queue = _Queue()
    _, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=queue)
    params = effective_params({"prompt": "a person", "steps": 2, "fps": 8, "size": 64})
    job = ValidatedJob(
        params=params, image_png=png(), poses=None, driving_video=astronaut_mp4(2, fps=8), num_frames=1
    )
    record = accept_job(
        new_job_id(), "key_slots", job, store=store, storage=storage, queue=queue, max_active=10
    )
    slots = ExtractionSlots(store.r, store.p, 1, 60, 1)
    assert slots.acquire("key_slots", "another_extraction")
    assert run_job_extraction(record.id, runner.services) == "deferred"
    waiting = store.get(record.id)
    assert waiting.status is JobStatus.QUEUED and waiting.stage != "extracting_poses" and not queue.sent
    # another key's extraction is not held by key_slots' slot
    other = new_extraction_id()
    ExtractionStore(store.r, store.p).create(other, "key_other", {"max_frames": 4}, "extractions/none")
    assert run_extraction(other, runner.services) == "failed"  # ran (its clip is missing), not deferred
    slots.release("key_slots", "another_extraction")
    assert run_job_extraction(record.id, runner.services) == "sent" and queue.sent == [record.id]
    assert slots.running("key_slots") == []  # released after the run


def test_a_deferred_task_retries_after_the_defer_delay_without_a_cap(monkeypatch):
    assert tasks.extract_poses.max_retries is None and tasks.extract_job_poses.max_retries is None
    seen = {}

    class _Task:
        def retry(self, countdown):
            seen["countdown"] = countdown
            return Retry()

    class _Services:
        class settings:
            extraction_defer_s = 0.7

    with pytest.raises(Retry):
        tasks._deferred(_Task(), _Services(), "deferred")
    assert seen == {"countdown": 0.7}
    assert tasks._deferred(_Task(), _Services(), "succeeded") == "succeeded"


def test_a_job_canceled_while_waiting_leaves_its_keys_line(store, redis_srv, tmp_path):
    queue = _Queue()
    _, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=queue)
    params = effective_params({"prompt": "a person", "steps": 2, "fps": 8, "size": 64})
    job = ValidatedJob(
        params=params, image_png=png(), poses=None, driving_video=astronaut_mp4(2, fps=8), num_frames=1
    )
    first, second = (
        accept_job(new_job_id(), "key_line", job, store=store, storage=storage, queue=queue, max_active=10)
        for _ in range(2)
    )
    slots = ExtractionSlots(store.r, store.p, 1, 60, 60)  # a waiter goes quiet only after 5 minutes
    assert slots.acquire("key_line", "running_one")
    assert run_job_extraction(first.id, runner.services) == "deferred"
    assert run_job_extraction(second.id, runner.services) == "deferred"
    store.request_cancel(first.id)
    assert run_job_extraction(first.id, runner.services) == "skipped"
    slots.release("key_line", "running_one")
    assert run_job_extraction(second.id, runner.services) == "sent"  # not held behind the canceled one
