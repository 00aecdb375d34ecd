"""Submitting a job straight through the job core (no HTTP), for runner and task tests."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from jobs.contract import EXAMPLE_POSES
from jobs.intake.acceptance import ValidatedJob, accept_job
from jobs.intake.limits import effective_params
from jobs.queue import QueueClient, create_celery
from jobs.services import JobServices
from jobs.settings import Settings
from jobs.storage import LocalStorage
from jobs.store import JobStore, new_job_id
from worker.animators import AnimatorHolder
from worker.metrics import count_finished
from worker.runner import JobRunner


def png(color="red", size=64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def submit(env, steps=3, source_pose=None, poses=None, driving_video=None, **params):
    """Accept a job with ``poses`` (default: the example poses) or, given its bytes, a ``driving_video``
    (queued for its extraction stage)."""
    _, store, storage, runner = env
    poses = EXAMPLE_POSES if poses is None and driving_video is None else poses
    effective = effective_params({"prompt": "a person", "steps": steps, "fps": 8, "size": 64, **params})
    job = ValidatedJob(
        params=effective,
        image_png=png(),
        poses=poses,
        source_pose=source_pose,
        driving_video=driving_video,
        num_frames=1 + effective["transition_frames"] + (63 if poses is None else len(poses["frames"])),
    )
    return accept_job(
        new_job_id(), "key_a", job, store=store, storage=storage, queue=runner.queue, max_active=10
    )


def noop_runner(
    store: JobStore, redis_url: str, tmp_path: Path, *, queue: Any = None, **overrides: Any
) -> tuple[Settings, LocalStorage, JobRunner]:
    """A job runner in-process on real Redis and local storage with the noop backend (no model),
    over job services counting as the worker does; ``queue``: a stand-in for the Celery client
    (default: the real one, sending by name)."""
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "animator": "noop",
        "noop_step_seconds": 0.0,
        "storage_url": f"file://{tmp_path}/storage",
        "lock_ttl_s": 2,
        "progress_interval_s": 0.01,
        **overrides,
    }
    settings = Settings(_env_file=None, **values)
    storage = LocalStorage(tmp_path / "storage", b"k" * 32)
    queue = queue if queue is not None else QueueClient(create_celery(settings))
    services = JobServices(settings, store, storage, queue, count_finished)
    return settings, storage, JobRunner(services, AnimatorHolder(settings))
