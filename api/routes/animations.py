"""``/animations``: submit, read, list, cancel, follow. Thin: the body is read by ``api.body``, the
submission run by ``api.submissions``, judged by ``jobs.intake``; views come from ``jobs.views``."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import (
    JOB_ID_PATTERN,
    BearerCredentials,
    IntakeDep,
    OwnedJob,
    Owner,
    Services,
    ServicesDep,
    enforce_rate_limit,
    identify,
)
from api.errors import ApiError
from api.openapi import CREATE_BODY, problems
from api.submissions import submit_animation
from api.waiting import StreamSlot, follow, prefer_wait, wait_for_terminal
from jobs.contract import Job, JobList, JobStatus
from jobs.storage import LocalStorage
from jobs.store import CancelOutcome, JobRecord, JobSnapshot
from jobs.views import job_view

router = APIRouter(prefix="/animations", tags=["animations"])

_JOB_ID = re.compile(JOB_ID_PATTERN)


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
    intake: IntakeDep,
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
    wait = prefer_wait(prefer)  # before the job exists: no header can fail the reply after it
    record, replayed = await submit_animation(request, services, intake, owner, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return await _reply(services, request, response, record, wait)


async def _reply(
    services: Services, request: Request, response: Response, record: JobRecord, wait: int
) -> Job:
    response.headers["Location"] = f"/animations/{record.id}"
    if wait:
        response.headers["Preference-Applied"] = f"wait={wait}"
        await wait_for_terminal(services.settings.redis_url, services.store, record.id, wait)
        latest = await run_in_threadpool(services.store.get, record.id)
        record = latest or record
    if record.status.is_terminal():
        response.status_code = 200
    return await run_in_threadpool(view_of, services, request, record)


async def read_status(request: Request, services: Services, credentials: Any, job_id: str) -> Job:
    """The status poll: auth (401), then the per-key rate limit (429) and the job with its queue
    position and deliveries in ONE Redis pipeline (awaited on the event loop while the app is
    served), then the id's shape (422), 404, the view (in the threadpool unless its links are local
    HMACs: other storage may do I/O to presign)."""
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
        raise _job_id_mismatch()
    if snapshot is None:  # another key's job is indistinguishable from a missing one
        raise ApiError("not_found", "no such animation")
    build = functools.partial(view, services, request, snapshot)
    return build() if isinstance(services.storage, LocalStorage) else await run_in_threadpool(build)


def _job_id_mismatch() -> ApiError:
    error = {
        "loc": ["path", "job_id"],
        "msg": f"must match {JOB_ID_PATTERN}",
        "type": "string_pattern_mismatch",
    }
    return ApiError("validation_error", "the request does not match the schema", errors=[error])


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
    outcome = services.jobs.cancel_job(record.id)
    if outcome is CancelOutcome.TERMINAL and record.status is not JobStatus.CANCELED:
        current = services.store.get(record.id) or record
        if current.status is not JobStatus.CANCELED:
            raise ApiError("job_already_finished", f"the job already {current.status.value}")
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
