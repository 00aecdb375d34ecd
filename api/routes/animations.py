"""``/animations``: submit, read, list, cancel, follow. Thin: parsing and policy live elsewhere."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import (
    BearerCredentials,
    Owner,
    Services,
    ServicesDep,
    enforce_rate_limit,
    identify,
)
from api.errors import ApiError, retry_after
from api.intake import read_submission, validate_submission
from api.openapi import CREATE_BODY, problems
from api.waiting import StreamSlot, follow, wait_for_terminal
from jobs.contract import Job, JobList, JobStatus, WebhookEvent
from jobs.deletion import was_deleted_by
from jobs.storage import LocalStorage
from jobs.store import CancelOutcome, JobRecord, JobSnapshot, new_job_id
from jobs.submission import QuotaExceeded, accept_job
from jobs.views import emit_webhook, job_view

router = APIRouter(prefix="/animations", tags=["animations"])

JOB_ID_PATTERN = r"^anim_[0-9A-Z]{26}$"
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, examples=["anim_01JD8X3K4M5N6P7Q8R9S0T1V2W"])]
_JOB_ID = re.compile(JOB_ID_PATTERN)
MAX_PREFER_WAIT_S = 60
IDEMPOTENCY_WAIT_S = 10.0
_WAIT = re.compile(r"(?:^|[\s,;])wait=(\d+)")


class ListQuery(BaseModel):
    """``GET /animations`` query; an unknown parameter is refused, not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = Field(
        default=None, pattern=JOB_ID_PATTERN, description="next_cursor of the previous page"
    )
    status: JobStatus | None = Field(default=None, description="only jobs in this status")


def snapshot_of(services: Services, record: JobRecord) -> JobSnapshot:
    """A record with what its view shows besides: queue position and webhook deliveries."""
    store = services.store
    return JobSnapshot(
        record,
        queue_position=store.queue_position(record.id) if record.status is JobStatus.QUEUED else None,
        deliveries=store.deliveries(record.id) if record.webhook_url else [],
    )


def view(services: Services, request: Request, snapshot: JobSnapshot) -> Job:
    """The one view builder of the API's replies (fresh expiring output links)."""
    return job_view(
        snapshot.record,
        storage=services.storage,
        url_ttl_s=services.settings.output_url_ttl_s,
        base_url=services.settings.public_base_url or str(request.base_url),
        retention_s=services.settings.output_retention_s,
        queue_position=snapshot.queue_position,
        deliveries=snapshot.deliveries if snapshot.record.webhook_url else None,
    )


def view_of(services: Services, request: Request, record: JobRecord) -> Job:
    return view(services, request, snapshot_of(services, record))


def _prefer_wait(prefer: str | None) -> int:
    match = _WAIT.search(prefer or "")
    digits = match.group(1).lstrip("0") if match else ""
    # No int() of thousands of digits (a ValueError, after the job was created): long means the cap.
    return MAX_PREFER_WAIT_S if len(digits) > 4 else min(int(digits or "0"), MAX_PREFER_WAIT_S)


async def _wait_for_record(services: Services, job_id: str) -> JobRecord:
    """A concurrent request with the same Idempotency-Key is still creating the job: wait for it."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
    while time.monotonic() < deadline:
        record = await run_in_threadpool(services.store.get, job_id)
        if record is not None:
            return record
        await asyncio.sleep(0.05)
    raise ApiError(
        409, "idempotency_in_progress", "a request with this Idempotency-Key is still being processed"
    )


async def submit(
    request: Request, services: Services, owner: str, idempotency_key: str | None
) -> tuple[JobRecord, bool]:
    """Rate limit, read, (idempotent) validate and accept one submission; counts each outcome.
    Returns the job and whether it is an Idempotency-Key replay."""
    settings, store, metrics = services.settings, services.store, services.metrics
    decision = await run_in_threadpool(
        store.rate_limit, "submit", owner, settings.rate_limit_submissions_per_minute
    )
    if not decision.allowed:
        metrics.submitted.labels("rate_limited").inc()
        raise ApiError(
            429,
            "rate_limited",
            "too many submissions for this API key",
            headers=retry_after(decision.retry_after_s),
        )
    try:
        submission = await read_submission(request, settings)
    except ApiError:
        metrics.submitted.labels("invalid").inc()
        raise
    job_id = new_job_id()
    if idempotency_key:
        claim = functools.partial(
            store.claim_idempotency,
            owner,
            idempotency_key,
            job_id,
            submission.request_hash,
            settings.idempotency_ttl_s,
            settings.interrupted_submission_s,
        )
        existing = await run_in_threadpool(claim)
        if existing is not None and await run_in_threadpool(was_deleted_by, store, existing["job_id"], owner):
            # Its job was deleted: the key is free again (no 10 s wait for a record that is gone).
            await run_in_threadpool(store.release_idempotency, owner, idempotency_key, existing["job_id"])
            existing = await run_in_threadpool(claim)
        if existing is not None:
            if existing["hash"] != submission.request_hash:
                metrics.submitted.labels("invalid").inc()
                raise ApiError(
                    422, "idempotency_key_reused", "this Idempotency-Key was used with a different body"
                )
            metrics.submitted.labels("replayed").inc()
            return await _wait_for_record(services, existing["job_id"]), True
    try:
        validated = await run_in_threadpool(validate_submission, submission, settings, services.resolver)
        record = await run_in_threadpool(
            lambda: accept_job(
                job_id,
                owner,
                validated,
                store=store,
                storage=services.storage,
                queue=services.queue,
                max_active=settings.max_active_jobs,
                interrupted_after_s=settings.interrupted_submission_s,
                request_hash=submission.request_hash,
            )
        )
    except BaseException as exc:
        if idempotency_key:
            await run_in_threadpool(store.release_idempotency, owner, idempotency_key, job_id)
        if isinstance(exc, QuotaExceeded):
            metrics.submitted.labels("quota_exceeded").inc()
            raise ApiError(
                429,
                "quota_exceeded",
                f"this API key already has {settings.max_active_jobs} active jobs",
                headers=retry_after(30),
            ) from exc
        metrics.submitted.labels("invalid" if isinstance(exc, ValueError | ApiError) else "unavailable").inc()
        raise
    metrics.submitted.labels("accepted").inc()
    return record, False


@router.post(
    "",
    status_code=202,
    response_model=Job,
    summary="Submit an animation job",
    openapi_extra=CREATE_BODY,
    responses={
        200: {"model": Job, "description": "The job finished within `Prefer: wait=N`"},
        **problems(400, 401, 409, 413, 415, 422, 429, 503),
    },
)
async def create_animation(
    request: Request,
    response: Response,
    services: ServicesDep,
    owner: Owner,
    idempotency_key: Annotated[
        str | None, Header(max_length=255, description="Same key + same body = same job")
    ] = None,
    prefer: Annotated[
        str | None, Header(description="`wait=N` (<= 60): hold the reply until the job ends")
    ] = None,
) -> Job:
    """JSON (image as URL or data URI, poses inline) or multipart (files). Returns the queued job
    with `Location: /animations/{id}`; poll it, follow `/events`, or receive a webhook."""
    record, replayed = await submit(request, services, owner, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return await _reply(services, request, response, record, prefer)


async def _reply(
    services: Services, request: Request, response: Response, record: JobRecord, prefer: str | None
) -> Job:
    response.headers["Location"] = f"/animations/{record.id}"
    wait = _prefer_wait(prefer)
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
        await wait_for_terminal(services.settings.redis_url, services.store, record.id, wait)
        latest = await run_in_threadpool(services.store.get, record.id)
        record = latest or record
    if record.status.is_terminal():
        response.status_code = 200
    return await run_in_threadpool(view_of, services, request, record)


def owned_job(job_id: JobId, services: ServicesDep, owner: Owner) -> JobRecord:
    record = services.store.get_owned(job_id, owner)
    if record is None:  # another key's job is indistinguishable from a missing one
        raise ApiError(404, "not_found", "no such animation")
    return record


OwnedJob = Annotated[JobRecord, Depends(owned_job)]


async def read_status(request: Request, services: Services, credentials: Any, job_id: str) -> Job:
    """The status poll: auth (401), then the per-key rate limit (429) and the job with its queue
    position and deliveries in ONE Redis pipeline, then the id's shape (422), 404, the view.

    The pipeline is awaited on the event loop (asyncio client, while the app is served) rather than
    handed to a thread; local-file links are an HMAC, built inline; other storage may do I/O to
    presign (credential refresh), so that view is built in the threadpool.
    """
    owner = identify(services, credentials)
    wanted = job_id if _JOB_ID.fullmatch(job_id) else None
    store, per_minute = services.store, services.settings.rate_limit_requests_per_minute
    if services.aredis is not None:
        decision, snapshot = await store.rate_limited_read_async(
            services.aredis, "req", owner, per_minute, wanted
        )
    else:  # the app without its lifespan (a TestClient outside `with`): the same read, in a thread
        decision, snapshot = await run_in_threadpool(
            store.rate_limited_read, "req", owner, per_minute, wanted
        )
    enforce_rate_limit(decision)
    if wanted is None:
        raise ApiError(
            422,
            "validation_error",
            "the request does not match the schema",
            errors=[
                {
                    "loc": ["path", "job_id"],
                    "msg": f"must match {JOB_ID_PATTERN}",
                    "type": "string_pattern_mismatch",
                }
            ],
        )
    if snapshot is None:  # another key's job is indistinguishable from a missing one
        raise ApiError(404, "not_found", "no such animation")
    build = functools.partial(view, services, request, snapshot)
    return build() if isinstance(services.storage, LocalStorage) else await run_in_threadpool(build)


@router.get("/{job_id}", response_model=Job, summary="Get a job", responses=problems(401, 404, 422, 429, 503))
async def get_animation(
    request: Request,
    services: ServicesDep,
    credentials: BearerCredentials,
    job_id: Annotated[str, Path(examples=["anim_01JD8X3K4M5N6P7Q8R9S0T1V2W"], description=JOB_ID_PATTERN)],
) -> Job:
    return await read_status(request, services, credentials, job_id)


@router.get(
    "", response_model=JobList, summary="List your jobs, newest first", responses=problems(401, 422, 429)
)
def list_animations(
    request: Request, services: ServicesDep, owner: Owner, query: Annotated[ListQuery, Query()]
) -> JobList:
    records, next_cursor = services.store.list_owned(owner, query.limit, query.cursor, query.status)
    return JobList(data=[view_of(services, request, r) for r in records], next_cursor=next_cursor)


@router.post(
    "/{job_id}/cancel",
    response_model=Job,
    summary="Cancel a job",
    responses={
        202: {"model": Job, "description": "Running: the worker stops it within a step"},
        **problems(401, 404, 409),
    },
)
def cancel_animation(request: Request, response: Response, services: ServicesDep, record: OwnedJob) -> Job:
    """Queued jobs are canceled at once (200) and never reach a GPU; running jobs stop within one
    engine step (202, `cancel_requested: true`); finished jobs cannot be canceled (409)."""
    outcome = services.store.request_cancel(record.id)
    if outcome is CancelOutcome.TERMINAL and record.status is not JobStatus.CANCELED:
        current = services.store.get(record.id) or record
        if current.status is not JobStatus.CANCELED:
            raise ApiError(409, "job_already_finished", f"the job already {current.status.value}")
    if outcome is CancelOutcome.CANCELED:
        emit_webhook(
            record.id,
            WebhookEvent.CANCELED,
            store=services.store,
            storage=services.storage,
            queue=services.queue,
            url_ttl_s=services.settings.output_url_ttl_s,
            base_url=services.settings.public_base_url,
        )
    response.status_code = 202 if outcome is CancelOutcome.REQUESTED else 200
    updated = services.store.get(record.id) or record
    return view_of(services, request, updated)


@router.get(
    "/{job_id}/events",
    response_class=EventSourceResponse,
    summary="Server-Sent Events of status and progress",
    responses=problems(401, 404, 429),  # 429: the rate limit, or too many open streams for this key
)
async def animation_events(
    request: Request, services: ServicesDep, record: OwnedJob, slot: StreamSlot
) -> AsyncIterable[ServerSentEvent]:
    """`event: progress` with a ProgressEvent on every change; a final `event: status` with the
    whole job when it ends. The stream closes after the final event."""
    settings = services.settings
    timeout = settings.hard_time_limit_s * 2
    async for event in follow(settings.redis_url, services.store, record.id, timeout_s=timeout, slot=slot):
        yield ServerSentEvent(data=event.model_dump(mode="json"), event="progress")
        if event.status.is_terminal():
            final = await run_in_threadpool(services.store.get, record.id)
            if final is not None:
                job = await run_in_threadpool(view_of, services, request, final)
                yield ServerSentEvent(data=job.model_dump(mode="json"), event="status")
