"""``/poses``: extract a pose sequence from a short driving clip, to inspect or edit before animating.

The API never decodes video: it checks the clip's bytes and container magic, probes its header and
packets (``jobs.videos.check_video``: truncated, too large, too long are a 4xx here), stores it, and
sends ``poseanimate.extract_poses`` to the ``io`` queue; an io worker extracts
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
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from api.bodies import read_form, read_json_object
from api.deps import Owner, Services, ServicesDep
from api.errors import ApiError, retry_after, validate_body
from api.openapi import problems
from jobs.contract import JobError, PoseExtraction, PosesCreate
from jobs.extractions import ID_PATTERN, ExtractionStore, new_extraction_id, video_key
from jobs.limits import ServiceLimits
from jobs.submission import QueueUnavailable
from jobs.videos import TOO_LARGE_CODES, UPLOADED, check_video, load_video_bytes, sniff_video

router = APIRouter(prefix="/poses", tags=["poses"])

POSES_WAIT_S = 30.0
_POLL_S = 0.1
ExtractionId = Annotated[str, Path(pattern=ID_PATTERN, examples=["pose_01JD8X3K4M5N6P7Q8R9S0T1V2W"])]

POSES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": PosesCreate.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["video"],
                    "properties": {
                        "video": {"type": "string", "format": "binary", "description": "the clip"},
                        "fps": {"type": "number"},
                        "start": {"type": "number"},
                        "end": {"type": "number"},
                        "max_frames": {"type": "integer"},
                    },
                }
            },
        },
    }
}


async def read_poses_request(request: Request) -> tuple[PosesCreate, bytes | None]:
    """The JSON body or the multipart form (a ``video`` file and text fields)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        fields = await read_json_object(request)  # 400 for invalid JSON or Unicode, 422 if no object
        return validate_body(PosesCreate, fields), None
    if content_type == "multipart/form-data":
        try:
            form = await read_form(request, max_files=1, max_fields=8, max_part_size=64 * 1024)
        except (MultiPartException, HTTPException, ValueError) as exc:
            raise ApiError(400, "malformed_multipart", "the multipart body does not parse") from exc
        upload, texts = None, {}
        for name, value in form.multi_items():
            if name == "video" and isinstance(value, UploadFile):
                upload = await value.read()
            elif isinstance(value, str) and value != "":
                texts[name] = value
        await form.close()
        if upload is not None:
            texts["video"] = UPLOADED
        return validate_body(PosesCreate, texts), upload
    raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")


def accept_extraction(services: Services, owner: str, req: PosesCreate, upload: bytes | None) -> str:
    """Check, store and enqueue one clip; returns the extraction id. Blocking: run in a thread."""
    settings = services.settings
    cap = ServiceLimits.from_settings(settings).max_frames
    if req.max_frames is not None and req.max_frames > cap:
        raise ApiError(422, "parameter_out_of_range", f"max_frames must be an integer in 1..{cap}")
    if req.end is not None and req.end <= (req.start or 0.0):
        raise ApiError(422, "parameter_out_of_range", "end must be after start")
    data = load_video_bytes(
        req.video,
        upload,
        max_bytes=settings.max_video_bytes,
        timeout_s=settings.url_fetch_timeout_s,
        allow_private=settings.allow_private_urls,
        max_redirects=settings.url_max_redirects,
        resolver=services.resolver,
        what="video",
    )
    ext = sniff_video(data)
    limits = ServiceLimits.from_settings(settings)
    check_video(
        data,
        limits,
        fps=req.fps,
        start=req.start,
        end=req.end,
        max_frames=req.max_frames or cap,
        what="video",
    )
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, ext)
    services.storage.put_bytes(key, data, "application/octet-stream")
    params = {"fps": req.fps, "start": req.start, "end": req.end, "max_frames": req.max_frames or cap}
    extractions(services).create(extraction_id, owner, params, key)
    try:
        services.queue.enqueue_extraction(extraction_id)
    except Exception as exc:
        services.storage.delete_prefix(f"extractions/{extraction_id}")
        raise QueueUnavailable() from exc
    return extraction_id


def extractions(services: Services) -> ExtractionStore:
    return ExtractionStore(services.store.r, services.store.p)


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
    request: Request, response: Response, services: ServicesDep, owner: Owner
) -> PoseExtraction:
    """JSON `{"video": URL or data URI, "fps", "start", "end", "max_frames"}` or multipart (a `video`
    file). Returns the compact poses (the form `POST /animations` takes), an extraction report and a
    skeleton MP4 preview (data URI) — or 202 and `Location: /poses/{id}` if it takes longer."""
    decision = await run_in_threadpool(
        services.store.rate_limit, "submit", owner, services.settings.rate_limit_submissions_per_minute
    )
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            "too many submissions for this API key",
            headers=retry_after(decision.retry_after_s),
        )
    req, upload = await read_poses_request(request)
    extraction_id = await run_in_threadpool(accept_extraction, services, owner, req, upload)
    response.headers["Location"] = f"/poses/{extraction_id}"
    store = extractions(services)
    deadline = time.monotonic() + POSES_WAIT_S
    while True:
        record = await run_in_threadpool(store.get, extraction_id)
        if record is None or record["status"] != "queued" or time.monotonic() >= deadline:
            break
        await asyncio.sleep(_POLL_S)
    if record is None:
        raise ApiError(503, "extraction_lost", "the extraction expired before it finished; send it again")
    if record["status"] == "failed":
        error = record.get("error") or {}
        code = str(error.get("code", "video_invalid"))
        raise ApiError(413 if code in TOO_LARGE_CODES else 422, code, str(error.get("message", "")))
    response.status_code = 200 if record["status"] == "succeeded" else 202
    return extraction_view(extraction_id, record)


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
        raise ApiError(404, "not_found", "no such pose extraction")
    return extraction_view(extraction_id, record)
