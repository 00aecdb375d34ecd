"""Job record -> public ``Job`` envelope (with fresh expiring output links), and webhook emission.

Used by the API for replies and SSE, and by workers for webhook payloads, so both say the same.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from jobs import openai_compat
from jobs.contract import (
    AnimationParams,
    Job,
    JobError,
    JobOutput,
    JobStatus,
    ModelInfo,
    Stage,
    WebhookAttempt,
    WebhookEvent,
    WebhookInfo,
)
from jobs.queue import QueueClient
from jobs.storage import Storage
from jobs.store import JobRecord, JobStore
from jobs.webhooks import build_payload, new_message_id

log = logging.getLogger(__name__)
PREVIEW_KINDS = ("poses", "skeleton", "side_by_side")


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def job_view(
    record: JobRecord,
    *,
    storage: Storage | None,
    url_ttl_s: int,
    base_url: str | None = None,
    queue_position: int | None = None,
    deliveries: list[dict[str, Any]] | None = None,
    retention_s: int | None = None,
) -> Job:
    output = None
    if record.status is JobStatus.SUCCEEDED and record.outputs and storage is not None:
        ended = record.finished_at or record.updated_at or time.time()
        output = JobOutput(
            video_url=storage.url(record.outputs["video"], url_ttl_s, base_url),
            poster_url=storage.url(record.outputs["poster"], url_ttl_s, base_url),
            **{  # the previews; jobs finished before previews existed have none
                f"{kind}_url": storage.url(record.outputs[kind], url_ttl_s, base_url)
                for kind in PREVIEW_KINDS
                if kind in record.outputs
            },
            expires_at=datetime.fromtimestamp(int(time.time()) + url_ttl_s, UTC),
            files_expire_at=None if retention_s is None else datetime.fromtimestamp(ended + retention_s, UTC),
        )
    error = None
    if record.status is JobStatus.FAILED:
        error = JobError(code=record.error_code or "internal_error", message=record.error_message or "")
    webhook = None
    if record.webhook_url:
        webhook = WebhookInfo(
            url=record.webhook_url,
            events=record.webhook_events,
            deliveries=[WebhookAttempt.model_validate(d) for d in deliveries or []],
        )
    stage = Stage(record.stage) if record.stage in {s.value for s in Stage} else None
    return Job(
        id=record.id,
        status=record.status,
        stage=stage,
        progress=1.0 if record.status is JobStatus.SUCCEEDED else record.progress,
        queue_position=queue_position if record.status is JobStatus.QUEUED else None,
        attempts=record.attempts,
        cancel_requested=record.cancel_requested,
        created_at=_dt(record.created_at),  # type: ignore[arg-type]
        started_at=_dt(record.started_at),
        finished_at=_dt(record.finished_at),
        params=AnimationParams.model_validate(record.params),
        num_frames=record.num_frames,
        timings=record.timings,
        unet_evals=record.unet_evals,
        model=ModelInfo(name=record.model_name, random_weights=record.random_weights)
        if record.model_name
        else None,
        error=error,
        output=output,
        webhook=webhook,
    )


def _webhook_body(
    record: JobRecord, event: WebhookEvent, *, storage: Storage | None, url_ttl_s: int, base_url: str | None
) -> str | None:
    """The event's body in the job's flavour: ours (the whole job), or OpenAI's for a ``/v1/videos``
    job (None for the events OpenAI has no type for: not sent)."""
    if record.api == openai_compat.API:
        body = openai_compat.webhook_body(record.id, event)
        return None if body is None else body.decode()
    job = job_view(record, storage=storage, url_ttl_s=url_ttl_s, base_url=base_url)
    return build_payload(event.type, job.model_dump(mode="json", exclude={"webhook"})).decode()


def emit_webhook(
    job_id: str,
    event: WebhookEvent,
    *,
    store: JobStore,
    storage: Storage | None,
    queue: QueueClient,
    url_ttl_s: int,
    base_url: str | None,
) -> str | None:
    """Enqueue one webhook event on ``io`` if the job subscribed to it; returns the webhook-id.

    The payload is frozen here (the job as it is now), so every retry sends the same body under
    the same ``webhook-id``; only ``webhook-timestamp`` and the signature change per attempt.
    """
    record = store.get(job_id)
    if record is None or not record.webhook_url or event.value not in record.webhook_events:
        return None
    body = _webhook_body(record, event, storage=storage, url_ttl_s=url_ttl_s, base_url=base_url)
    if body is None:
        return None
    msg_id = new_message_id()
    try:
        queue.enqueue_webhook(job_id, event.value, body, msg_id)
    except Exception:  # the job outcome stands even if its notification cannot be queued
        log.exception("could not enqueue webhook", extra={"job_id": job_id, "event": event.value})
        return None
    return msg_id
