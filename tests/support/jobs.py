"""Submitting a job straight through the job core (no HTTP), for runner and task tests."""

from __future__ import annotations

import io

from PIL import Image

from jobs.contract import EXAMPLE_POSES
from jobs.limits import effective_params
from jobs.store import new_job_id
from jobs.submission import ValidatedJob, accept_job


def png(color="red", size=64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format="PNG")
    return out.getvalue()


def submit(env, steps=3, **params):
    _, store, storage, runner = env
    effective = effective_params({"prompt": "a person", "steps": steps, "fps": 8, "size": 64, **params})
    job = ValidatedJob(
        params=effective,
        image_png=png(),
        poses=EXAMPLE_POSES,
        num_frames=1 + effective["transition_frames"] + len(EXAMPLE_POSES["frames"]),
    )
    return accept_job(
        new_job_id(), "key_a", job, store=store, storage=storage, queue=runner.queue, max_active=10
    )
