"""Job record -> public ``Job`` envelope (with fresh expiring output links).

Used by the API for replies and SSE, and for webhook payloads (``jobs.services.emit_webhook``), so
both say the same.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from engine.inputs.timing import frame_timeline
from jobs.contract import (
    AnimationParams,
    FrameTiming,
    Job,
    JobError,
    JobOutput,
    JobStatus,
    MemoryPlan,
    ModelInfo,
    Stage,
    WebhookAttempt,
    WebhookInfo,
)
from jobs.intake.limits import effective_params
from jobs.storage import Storage
from jobs.store import JobRecord

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
        memory_plan=MemoryPlan.model_validate(record.memory_plan) if record.memory_plan else None,
        model=ModelInfo(name=record.model_name, random_weights=record.random_weights)
        if record.model_name
        else None,
        error=error,
        output=output,
        webhook=webhook,
        timeline=_timeline(record),
        notes=record.notes,
    )


def _timeline(record: JobRecord) -> list[FrameTiming]:
    """The stored timeline (a clip's job, once extracted), else the roles the frame count implies."""
    frames = record.timeline
    if frames is None:
        params = effective_params(record.params)
        frames = frame_timeline(record.num_frames, params["fps"], params["transition_frames"])
    return [FrameTiming.model_validate(f) for f in frames]
