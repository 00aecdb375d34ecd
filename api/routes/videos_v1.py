"""``/v1/videos`` and ``/v1/models``: OpenAI's video API as a thin facade over the same jobs.

A video is a job: the same id, record, owner, auth, rate limits, quotas, SSRF guard, limits and
refusals as ``/animations``. Submissions take the one path (``api.submissions.submit_animation``,
judged by ``jobs.intake``); ``api.openai_body`` only translates OpenAI's fields, and jobs read back
through ``jobs.openai_compat``. Errors take OpenAI's shape (``api.openai_compat``). The mapping is
written down in docs/service.md ("OpenAI-compatible API").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import IntakeDep, Owner, Services, ServicesDep
from api.errors import ApiError
from api.openai_body import VideoRequest
from api.openai_compat import openai_responses
from api.submissions import submit_animation
from engine.inputs.errors import echo
from jobs import openai_compat as oa
from jobs.contract import JobStatus
from jobs.deletion import delete_job, was_deleted_by
from jobs.spritesheet import SPRITESHEET, spritesheet
from jobs.storage import ObjectNotFound, Storage, output_key
from jobs.store import JobRecord

router = APIRouter(prefix="/v1", tags=["openai"])

MODEL_CREATED = 1722643200  # 2024-08-03, IJCAI 2024: when the method was published
POLL_AFTER_MS = "500"
_VARIANTS = {
    "video": ("video", "video/mp4"),
    "thumbnail": ("poster", "image/png"),
    "spritesheet": (None, "image/jpeg"),
}
IdempotencyKey = Annotated[str | None, Header(max_length=255)]


def _body_schema(properties: dict[str, Any], *types: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["prompt"],
        "properties": properties,
        "additionalProperties": True,
    }
    return {"requestBody": {"required": True, "content": {t: {"schema": schema} for t in types}}}


CREATE_BODY = _body_schema(
    {
        "prompt": {"type": "string"},
        "model": {"type": "string", "enum": [oa.SERVED_MODEL]},
        "input_reference": {"type": "string", "format": "binary"},
        "size": {"type": "string", "examples": ["512x512"]},
        "seconds": {"type": "string", "examples": ["4"]},
        "poses": {"type": "string", "description": "pose JSON (file or text)"},
    },
    "multipart/form-data",
    "application/json",
)
REMIX_BODY = _body_schema({"prompt": {"type": "string"}}, "application/json")
CONTENT_REPLY = {
    "content": {"video/mp4": {}, "image/png": {}, "image/jpeg": {}},
    "description": "video: the MP4; thumbnail: the PNG poster; spritesheet: JPEG of frames",
}


def _not_found() -> ApiError:
    return ApiError("not_found", "no such video")


def _owned(services: Services, owner: str, video_id: str) -> JobRecord:
    record = services.store.get_owned(video_id, owner)
    if record is None:  # another key's video is indistinguishable from a missing one
        raise _not_found()
    return record


def _reply(services: Services, response: Response, record: JobRecord) -> oa.Video:
    """The job as a video; ``openai-poll-after-ms`` while it runs (the SDK's ``poll`` reads it)."""
    video = oa.video_of(record, retention_s=services.settings.output_retention_s)
    if video.status in ("queued", "in_progress"):
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return video


@router.post(
    "/videos",
    response_model=oa.Video,
    summary="Create a video (OpenAI-compatible)",
    responses=openai_responses(400, 401, 409, 429, 503),
    openapi_extra=CREATE_BODY,
)
async def create_video(
    request: Request,
    response: Response,
    services: ServicesDep,
    intake: IntakeDep,
    owner: Owner,
    idempotency_key: IdempotencyKey = None,
) -> oa.Video:
    """OpenAI's create: `prompt`, `input_reference` (the character image), `model`, `size` (WxH),
    `seconds` (a cap on the motion); the motion and every other `POST /animations` field (`poses`,
    `driving_video`, `steps`, `seed`, `webhook_url`, ...) as extension fields (the SDK's `extra_body`)."""
    video = VideoRequest(services.storage)
    record, _ = await submit_animation(
        request, services, intake, owner, idempotency_key, read=video.read, adapt=video.adapt
    )
    return _reply(services, response, record)


@router.get(
    "/videos/{video_id}",
    response_model=oa.Video,
    summary="Get a video",
    responses=openai_responses(400, 401, 404, 429, 503),
)
def retrieve_video(video_id: str, response: Response, services: ServicesDep, owner: Owner) -> oa.Video:
    return _reply(services, response, _owned(services, owner, video_id))


@router.get(
    "/videos",
    response_model=oa.VideoList,
    summary="List your videos",
    responses=openai_responses(400, 401, 429, 503),
)
def list_videos(
    services: ServicesDep,
    owner: Owner,
    after: Annotated[str | None, Query(max_length=64, description="last_id of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> oa.VideoList:
    """Cursor pages as the SDK reads them: `has_more`, and `last_id` to pass as `after`."""
    records, more = oa.list_records(services.store, owner, after, limit, order)
    retention_s = services.settings.output_retention_s
    data = [oa.video_of(r, retention_s=retention_s) for r in records]
    first, last = (data[0].id, data[-1].id) if data else (None, None)
    return oa.VideoList(data=data, first_id=first, last_id=last, has_more=more)


@router.delete(
    "/videos/{video_id}",
    response_model=oa.VideoDeleted,
    summary="Delete a video and its files",
    responses=openai_responses(400, 401, 404, 429, 503),
)
async def delete_video(video_id: str, services: ServicesDep, owner: Owner) -> oa.VideoDeleted:
    """`DELETE /animations/{id}`: cancels it if still running, removes inputs, outputs and record."""
    store = services.store
    record = await run_in_threadpool(store.get_owned, video_id, owner)
    if record is not None:
        await run_in_threadpool(delete_job, record, services.jobs)
    elif not (
        video_id.startswith("anim_") and await run_in_threadpool(was_deleted_by, store, video_id, owner)
    ):
        raise _not_found()
    return oa.VideoDeleted(id=video_id)


def _content(storage: Storage, record: JobRecord, variant: str) -> bytes:
    """The variant's bytes; the sprite sheet is made from the MP4 on its first request, then kept."""
    name, _ = _VARIANTS[variant]
    if name is not None:
        return storage.get_bytes(record.outputs[name])
    key = output_key(record.id, SPRITESHEET)
    try:
        return storage.get_bytes(key)
    except ObjectNotFound:
        sheet = spritesheet(storage.get_bytes(record.outputs["video"]))
        storage.put_bytes(key, sheet, "image/jpeg")
        return sheet


@router.get(
    "/videos/{video_id}/content",
    response_class=Response,
    summary="Download the MP4, its thumbnail or a sprite sheet",
    responses={200: CONTENT_REPLY, **openai_responses(400, 401, 404, 409, 429, 503)},
)
async def download_video_content(
    video_id: str,
    services: ServicesDep,
    owner: Owner,
    variant: Annotated[Literal["video", "thumbnail", "spritesheet"], Query()] = "video",
) -> Response:
    record = await run_in_threadpool(_owned, services, owner, video_id)
    if record.status is not JobStatus.SUCCEEDED:
        raise ApiError("video_not_ready", f"the video is {oa.video_status(record.status)}; no content")
    try:
        data = await run_in_threadpool(_content, services.storage, record, variant)
    except (ObjectNotFound, KeyError) as exc:
        raise ApiError("content_expired", "the video's files are no longer kept") from exc
    return Response(data, media_type=_VARIANTS[variant][1])


@router.post(
    "/videos/{video_id}/remix",
    response_model=oa.Video,
    summary="Remix a video: same character and motion, a new prompt",
    responses=openai_responses(400, 401, 404, 409, 429, 503),
    openapi_extra=REMIX_BODY,
)
async def remix_video(
    video_id: str,
    request: Request,
    response: Response,
    services: ServicesDep,
    intake: IntakeDep,
    owner: Owner,
    idempotency_key: IdempotencyKey = None,
) -> oa.Video:
    """A new job with the source's character image, motion, mask and parameters and a new `prompt`
    (parameters may be overridden as extension fields). Its inversion is cached, so it runs cheaper.
    409 `inputs_not_kept` when the source's inputs were deleted."""
    source = await run_in_threadpool(_owned, services, owner, video_id)
    video = VideoRequest(services.storage, remix_of=source)
    record, _ = await submit_animation(
        request, services, intake, owner, idempotency_key, read=video.read, adapt=video.adapt
    )
    return _reply(services, response, record)


@router.get(
    "/models",
    response_model=oa.ModelList,
    summary="The models served here",
    responses=openai_responses(401, 429),
)
def list_models(owner: Owner) -> oa.ModelList:
    return oa.ModelList(data=[oa.Model(id=oa.SERVED_MODEL, created=MODEL_CREATED)])


@router.get(
    "/models/{model_id}",
    response_model=oa.Model,
    summary="One served model",
    responses=openai_responses(401, 404, 429),
)
def retrieve_model(model_id: str, owner: Owner) -> oa.Model:
    if model_id != oa.SERVED_MODEL:
        raise ApiError("not_found", f"the model {echo(model_id)} is not served here")
    return oa.Model(id=oa.SERVED_MODEL, created=MODEL_CREATED)
