"""A driving-video job's progress never goes backwards (issue 24's walk: SSE showed ``extracting_poses``
0.03, then ``loading`` 0.0): every event published from submission to the end, through the io
worker's extraction and the GPU run, is at least the one before it."""

from __future__ import annotations

import json

import pytest

from jobs.intake.acceptance import ValidatedJob, accept_job
from jobs.intake.limits import effective_params
from jobs.store import new_job_id
from tests.support.clips import astronaut_mp4
from tests.support.jobs import noop_runner, png
from worker.extraction import run_job_extraction

pytest.importorskip("mediapipe")


class _Queue:
    def enqueue_animation(self, job_id):
        pass

    def enqueue_job_extraction(self, job_id):
        pass

    def enqueue_webhook(self, *args, **kwargs):
        pass


def _events(events) -> list[tuple[str | None, float]]:
    """(stage, progress) of every event published so far, then the subscription closed."""
    seen, quiet = [], 0
    while quiet < 3:  # until three reads in a row find nothing (the subscribe reply reads as None)
        message = events.get_message(timeout=0.1)
        quiet = 0 if message is not None else quiet + 1
        if message is not None:
            event = json.loads(message["data"])
            seen.append((event.get("stage"), event["progress"]))
    events.close()
    return seen


def test_progress_is_monotonic_from_extraction_through_the_run(store, redis_srv, redis_client, tmp_path):
    _, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=_Queue())
    params = effective_params({"prompt": "a person", "steps": 2, "fps": 8, "size": 64})
    job = ValidatedJob(
        params=params, image_png=png(), poses=None, driving_video=astronaut_mp4(4, fps=8), num_frames=1
    )
    job_id = new_job_id()
    events = redis_client.pubsub(ignore_subscribe_messages=True)
    events.subscribe(store.channel(job_id))
    accept_job(job_id, "key_a", job, store=store, storage=storage, queue=_Queue(), max_active=10)
    assert run_job_extraction(job_id, runner.services) == "sent"
    assert runner.run(job_id) == "succeeded"
    seen = _events(events)
    stages = [stage for stage, _ in seen]
    assert "extracting_poses" in stages and "loading" in stages, seen
    progress = [value for _, value in seen]
    assert progress == sorted(progress), seen
    assert progress[-1] == 1.0


def test_a_second_attempt_does_not_take_progress_back(store, redis_srv, redis_client, tmp_path):
    from tests.support.jobs import submit

    settings, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=_Queue())
    record = submit((settings, store, storage, runner))
    store.start_attempt(record.id, 3, "noop", False)
    store.update_progress(record.id, "sampling", 0.5)
    store.r.hset(store.job_key(record.id), "status", "queued")  # its worker died: the job runs again
    events = redis_client.pubsub(ignore_subscribe_messages=True)
    events.subscribe(store.channel(record.id))
    assert runner.run(record.id) == "succeeded"
    seen = _events(events)
    assert store.get(record.id).attempts == 2
    assert [p for _, p in seen] == sorted(p for _, p in seen) and min(p for _, p in seen) >= 0.5, seen
