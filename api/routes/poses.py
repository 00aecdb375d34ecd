"""``/poses``: extract a pose sequence from a short driving clip, to inspect or edit before animating.

The API never decodes video: the intake (``jobs.intake.extraction``) checks the clip's bytes and
container magic, probes its header and packets (truncated, too large, too long are a 4xx here), stores
it, and sends ``poseanimate.extract_poses`` to the ``io`` queue; an io worker extracts
(``worker.extraction``) and writes the result into a Redis record (``jobs.extractions``) that this
route polls for up to ``POSES_WAIT_S``. Done in time: 200 with the poses, the report and an inline
skeleton MP4, or the extractor's refusal as problem+json (413 ``video_too_large``/``video_too_long``,
422 otherwise). Not done in time: 202 with ``Location: /poses/{id}``, to poll with ``GET``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import IntakeDep, Owner, ServicesDep
from api.errors import ApiError
from api.openapi import POSES_BODY, problems
from api.submissions import extractions, submit_extraction
from jobs.contract import JobError, PoseExtraction
from jobs.extractions import ID_PATTERN, ExtractionStore

router = APIRouter(prefix="/poses", tags=["poses"])

POSES_WAIT_S = 30.0
_POLL_S = 0.1
ExtractionId = Annotated[str, Path(pattern=ID_PATTERN, examples=["pose_01JD8X3K4M5N6P7Q8R9S0T1V2W"])]


def extraction_view(extraction_id: str, record: dict[str, Any]) -> PoseExtraction:
    error = record.get("error")
    return PoseExtraction(
        id=extraction_id,
        status=record["status"],
        poses=record.get("poses"),
        report=record.get("report"),
        skeleton_mp4=record.get("skeleton_mp4"),
        error=JobError(**error) if error else None,
    )


@router.post(
    "",
    response_model=PoseExtraction,
    summary="Extract a pose sequence from a short driving video",
    openapi_extra=POSES_BODY,
    responses={
        202: {"model": PoseExtraction, "description": "Still extracting: poll `Location`"},
        **problems(400, 401, 413, 415, 422, 429, 503),
    },
)
async def create_pose_extraction(
    request: Request, response: Response, services: ServicesDep, intake: IntakeDep, owner: Owner
) -> PoseExtraction:
    """JSON `{"video": URL or data URI, "fps", "start", "end", "max_frames", "parts"}` or multipart
    (a `video` file; `parts`: body, body+hands, body+face or full, the default). Returns the compact poses (the form `POST /animations` takes), an extraction report and a
    skeleton MP4 preview (data URI) — or 202 and `Location: /poses/{id}` if it takes longer."""
    extraction_id = await submit_extraction(request, services, intake, owner)
    response.headers["Location"] = f"/poses/{extraction_id}"
    record = await _wait_while_queued(extractions(services), extraction_id)
    if record is None:
        raise ApiError("extraction_lost", "the extraction expired before it finished; send it again")
    if record["status"] == "failed":  # the extractor's refusal, with its code's status
        error = record.get("error") or {}
        raise ApiError(str(error.get("code", "video_invalid")), str(error.get("message", "")))
    response.status_code = 200 if record["status"] == "succeeded" else 202
    return extraction_view(extraction_id, record)


async def _wait_while_queued(store: ExtractionStore, extraction_id: str) -> dict[str, Any] | None:
    """The record once it is no longer queued, or as it is after ``POSES_WAIT_S``."""
    deadline = time.monotonic() + POSES_WAIT_S
    while True:
        record = await run_in_threadpool(store.get, extraction_id)
        if record is None or record["status"] != "queued" or time.monotonic() >= deadline:
            return record
        await asyncio.sleep(_POLL_S)


@router.get(
    "/{extraction_id}",
    response_model=PoseExtraction,
    summary="Get a pose extraction",
    responses=problems(401, 404, 422),
)
def get_pose_extraction(extraction_id: ExtractionId, services: ServicesDep, owner: Owner) -> PoseExtraction:
    """`queued`, `succeeded` (poses, report, skeleton preview) or `failed` (error code and message).
    Kept for an hour."""
    record = extractions(services).get_owned(extraction_id, owner)
    if record is None:
        raise ApiError("not_found", "no such pose extraction")
    return extraction_view(extraction_id, record)
