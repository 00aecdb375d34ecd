"""Accepting a checked submission: for a job, its quota slot, inputs to storage, job record, then
the queue message; for a pose extraction, its clip to storage, its record, then the queue message.

The order matters: inputs are in storage and the record exists before the message is sent, so a
worker never receives an id it cannot run; if anything fails midway, what was taken is given back.
A process that dies between creating the record and sending the message leaves the job in the
store's outbox; ``jobs.recovery.send_unsent`` (the API's sweeper) sends it later.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from jobs.contract import ErrorCode, JobStatus
from jobs.extractions import ExtractionStore, new_extraction_id, video_key
from jobs.intake.extraction import CheckedClip
from jobs.queue import QueueClient
from jobs.storage import Storage, input_key
from jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)


@dataclass
class ValidatedJob:
    """Everything the API checked, ready to store. Images are normalised PNG bytes."""

    params: dict[str, Any]
    image_png: bytes
    poses: dict[str, Any] | None
    """None when the job came with a driving video: its poses are extracted on io first."""
    source_pose: dict[str, Any] | None = None
    mask_png: bytes | None = None
    webhook_url: str | None = None
    webhook_events: list[str] = field(default_factory=list)
    num_frames: int = 1
    driving_video: bytes | None = None
    driving_video_ext: str = "mp4"
    api: str | None = None
    """Which API submitted it when not ours (``jobs.openai_compat.API``), and what it was remixed from."""
    remixed_from: str | None = None


class QuotaExceeded(Exception):
    pass


class QueueUnavailable(Exception):
    pass


def store_inputs(storage: Storage, job_id: str, job: ValidatedJob) -> list[str]:
    names = ["image.png"]
    storage.put_bytes(input_key(job_id, "image.png"), job.image_png, "image/png")
    if job.poses is not None:
        storage.put_bytes(input_key(job_id, "poses.json"), json.dumps(job.poses).encode(), "application/json")
        names.append("poses.json")
    if job.driving_video is not None:  # extracted into poses.json by an io worker (worker.extraction)
        name = f"driving_video.{job.driving_video_ext}"
        storage.put_bytes(input_key(job_id, name), job.driving_video, "application/octet-stream")
        names.append(name)
    if job.source_pose is not None:
        storage.put_bytes(
            input_key(job_id, "source_pose.json"), json.dumps(job.source_pose).encode(), "application/json"
        )
        names.append("source_pose.json")
    if job.mask_png is not None:
        storage.put_bytes(input_key(job_id, "mask.png"), job.mask_png, "image/png")
        names.append("mask.png")
    return names


def send_first_message(queue: QueueClient, job_id: str, inputs: list[str]) -> None:
    """A job's first message: its pose extraction (io) when it came with a driving video and has
    no poses yet, else the animation (gpu). A GPU worker never receives a job without poses."""
    if "poses.json" in inputs:
        queue.enqueue_animation(job_id)
    else:
        queue.enqueue_job_extraction(job_id)


def accept_job(
    job_id: str,
    owner: str,
    job: ValidatedJob,
    *,
    store: JobStore,
    storage: Storage,
    queue: QueueClient,
    max_active: int,
    request_hash: str = "",
    interrupted_after_s: float = 600.0,
) -> JobRecord:
    """Persist and enqueue. Raises ``QuotaExceeded``, ``StorageUnavailable`` or ``QueueUnavailable``.

    A quota slot whose job was never created (its request died after ``interrupted_after_s``) is
    given back by the next reservation."""
    if not store.reserve_slot(owner, job_id, max_active, stale_after_s=interrupted_after_s):
        raise QuotaExceeded()
    try:
        names = store_inputs(storage, job_id, job)
        record = JobRecord(
            id=job_id,
            owner=owner,
            status=JobStatus.QUEUED,
            params=job.params,
            num_frames=job.num_frames,
            created_at=time.time(),
            inputs=names,
            request_hash=request_hash,
            webhook_url=job.webhook_url,
            webhook_events=job.webhook_events,
            api=job.api,
            remixed_from=job.remixed_from,
        )
        store.create(record)
    except BaseException:
        store.release_slot(owner, job_id)
        raise
    try:
        send_first_message(queue, job_id, names)
    except Exception as exc:
        log.exception("enqueue failed", extra={"job_id": job_id})
        store.fail(job_id, ErrorCode.QUEUE_UNAVAILABLE, "the job could not be queued; submit it again")
        raise QueueUnavailable() from exc
    try:
        store.mark_sent(job_id)
    except Exception:  # the job is queued; at worst the sweeper sends a duplicate, which is skipped
        log.warning("could not clear the outbox entry", extra={"job_id": job_id}, exc_info=True)
    return record


def accept_extraction(
    owner: str, clip: CheckedClip, *, extractions: ExtractionStore, storage: Storage, queue: QueueClient
) -> str:
    """Store, record and enqueue one clip; returns the extraction id. Raises ``StorageUnavailable``
    or ``QueueUnavailable`` (the stored clip is deleted again)."""
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, clip.ext)
    storage.put_bytes(key, clip.data, "application/octet-stream")
    extractions.create(extraction_id, owner, clip.params, key)
    try:
        queue.enqueue_extraction(extraction_id)
    except Exception as exc:
        storage.delete_prefix(f"extractions/{extraction_id}")
        raise QueueUnavailable() from exc
    return extraction_id
