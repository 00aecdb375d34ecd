"""Running one submission through the API: the submission rate limit, the body (``api.body``), the
Idempotency-Key, then the intake's checks and acceptance (``jobs.intake``) in a thread; each
outcome counted once (``poseanimate_submissions_total{outcome}``)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.body import Body, BodyForm, read_body
from api.deps import Services, limit_submissions
from api.errors import ApiError, retry_after, validate_body
from jobs.contract import AnimationCreate, PosesCreate
from jobs.deletion import was_deleted_by
from jobs.extractions import ExtractionStore
from jobs.intake.acceptance import QuotaExceeded, ValidatedJob, accept_extraction, accept_job
from jobs.intake.animation import check_animation
from jobs.intake.extraction import check_extraction
from jobs.intake.policy import Intake
from jobs.store import JobRecord, new_job_id

IDEMPOTENCY_WAIT_S = 10.0
POSES_FORM = BodyForm(file_fields=("video",), max_fields=8, max_part_size=64 * 1024)

BodyReader = Callable[[Request, Intake], Awaitable[Body]]
"""Reads a submission's body into ``POST /animations``' fields (the OpenAI facade translates its own)."""
Adapt = Callable[[ValidatedJob], ValidatedJob]
"""A step after the intake's checks and before acceptance (the OpenAI facade marks its jobs)."""


def animation_form(intake: Intake) -> BodyForm:
    return BodyForm(
        file_fields=("image", "poses", "source_pose", "mask", "driving_video"),
        max_fields=32,
        max_part_size=intake.settings.max_pose_bytes,
        list_fields=("subject_words", "webhook_events"),
        pose_fields=("poses", "source_pose"),
        keep_empty=("prompt",),  # an empty prompt is prompt_blank
        urlencoded=True,
    )


async def read_animation_body(request: Request, intake: Intake) -> Body:
    return await read_body(request, animation_form(intake))


def _outcome(exc: BaseException) -> str:
    """The ``outcome`` label of a submission that raised ``exc``."""
    if isinstance(exc, ApiError) and exc.code in ("rate_limited", "quota_exceeded"):
        return exc.code
    return "invalid" if isinstance(exc, ValueError) else "unavailable"


async def submit_animation(
    request: Request,
    services: Services,
    intake: Intake,
    owner: str,
    idempotency_key: str | None,
    *,
    read: BodyReader = read_animation_body,
    adapt: Adapt | None = None,
) -> tuple[JobRecord, bool]:
    """Rate limit, read, (idempotent) check and accept one submission; counts its outcome. Returns
    the job and whether it is an Idempotency-Key replay. ``read`` and ``adapt`` let the OpenAI facade
    (``api/routes/videos_v1.py``) take this same path: its own field names in, its jobs marked."""
    try:
        accepted = await _submit(request, services, intake, owner, idempotency_key, read, adapt)
    except BaseException as exc:
        services.metrics.submitted.labels(_outcome(exc)).inc()
        raise
    if isinstance(accepted, JobRecord):
        services.metrics.submitted.labels("accepted").inc()
        return accepted, False
    services.metrics.submitted.labels("replayed").inc()  # counted before the wait, which may time out
    return await _wait_for_record(services, accepted), True


async def _submit(
    request: Request,
    services: Services,
    intake: Intake,
    owner: str,
    key: str | None,
    read: BodyReader,
    adapt: Adapt | None,
) -> JobRecord | str:
    """The accepted job, or the id of the job an earlier request with this Idempotency-Key made."""
    await limit_submissions(services, owner)
    body = await read(request, intake)
    job_request, digest, job_id = validate_body(AnimationCreate, body.fields), body.digest(), new_job_id()
    if key and (existing := await _claim(services, owner, key, job_id, digest)) is not None:
        return existing
    accept = functools.partial(
        _accept_animation, services, intake, owner, job_id, job_request, body.files, digest, adapt
    )
    try:
        return await run_in_threadpool(accept)
    except BaseException:
        if key:
            await run_in_threadpool(services.store.release_idempotency, owner, key, job_id)
        raise


async def _claim(services: Services, owner: str, key: str, job_id: str, digest: str) -> str | None:
    """The job id an earlier request with this Idempotency-Key created (None: this request claimed
    the key for ``job_id``, also when the earlier job was deleted since); 422
    ``idempotency_key_reused`` when that request had another body."""
    settings, store = services.settings, services.store
    claim = functools.partial(
        store.claim_idempotency,
        owner,
        key,
        job_id,
        digest,
        settings.idempotency_ttl_s,
        settings.interrupted_submission_s,
    )
    existing = await run_in_threadpool(claim)
    if existing is not None and await run_in_threadpool(was_deleted_by, store, existing["job_id"], owner):
        # Its job was deleted: the key is free again (no 10 s wait for a record that is gone, then 409).
        await run_in_threadpool(store.release_idempotency, owner, key, existing["job_id"])
        existing = await run_in_threadpool(claim)
    if existing is None:
        return None
    if existing["hash"] != digest:
        raise ApiError("idempotency_key_reused", "this Idempotency-Key was used with a different body")
    return str(existing["job_id"])


async def _wait_for_record(services: Services, job_id: str) -> JobRecord:
    """A concurrent request with the same Idempotency-Key may still be creating the job: wait for it."""
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_S
    while time.monotonic() < deadline:
        record = await run_in_threadpool(services.store.get, job_id)
        if record is not None:
            return record
        await asyncio.sleep(0.05)
    raise ApiError("idempotency_in_progress", "a request with this Idempotency-Key is still being processed")


def _accept_animation(
    services: Services,
    intake: Intake,
    owner: str,
    job_id: str,
    job_request: AnimationCreate,
    files: dict[str, bytes],
    digest: str,
    adapt: Adapt | None = None,
) -> JobRecord:
    """The intake's checks, ``adapt``, then acceptance (quota: 429 ``quota_exceeded``). Blocking."""
    validated = check_animation(intake, job_request, files)
    if adapt is not None:
        validated = adapt(validated)
    settings = services.settings
    try:
        return accept_job(
            job_id,
            owner,
            validated,
            store=services.store,
            storage=services.storage,
            queue=services.queue,
            max_active=settings.max_active_jobs,
            interrupted_after_s=settings.interrupted_submission_s,
            request_hash=digest,
        )
    except QuotaExceeded as exc:
        message = f"this API key already has {settings.max_active_jobs} active jobs"
        raise ApiError("quota_exceeded", message, headers=retry_after(30)) from exc


def extractions(services: Services) -> ExtractionStore:
    return ExtractionStore(services.store.r, services.store.p)


async def submit_extraction(request: Request, services: Services, intake: Intake, owner: str) -> str:
    """Rate limit, read, check, store and enqueue one clip; returns the extraction id."""
    await limit_submissions(services, owner)
    body = await read_body(request, POSES_FORM)
    poses_request = validate_body(PosesCreate, body.fields)

    def accept() -> str:
        clip = check_extraction(intake, poses_request, body.files.get("video"))
        store, storage, queue = extractions(services), services.storage, services.queue
        return accept_extraction(owner, clip, extractions=store, storage=storage, queue=queue)

    return await run_in_threadpool(accept)
