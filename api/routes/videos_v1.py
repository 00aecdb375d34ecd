"""``/v1/videos`` and ``/v1/models``: OpenAI's video API as a thin facade over the same jobs.

A video is a job: the same id, record, owner, auth, rate limits, quotas, SSRF guard, limits and
refusals as ``/animations``. Submissions go through ``api.routes.animations.submit`` (the one intake:
``api.intake.validate_submission``); this module only renames fields, and reads jobs back through
``jobs.openai_compat``. Errors take OpenAI's shape (``api.openai_compat``). The mapping is written
down in docs/service.md ("OpenAI-compatible API").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from api.deps import Owner, Services, ServicesDep
from api.errors import ApiError, validate_body
from api.intake import FILE_FIELDS, LIST_FIELDS, UPLOADED, Submission
from api.openai_compat import openai_responses
from api.routes.animations import submit
from engine.inputs.poseformat import parse_pose_json
from jobs import openai_compat as oa
from jobs.contract import AnimationCreate, AnimationParams, JobStatus
from jobs.deletion import delete_job, was_deleted_by
from jobs.settings import Settings
from jobs.spritesheet import SPRITESHEET, spritesheet
from jobs.storage import ObjectNotFound, Storage, input_key, output_key
from jobs.store import JobRecord
from jobs.submission import ValidatedJob

router = APIRouter(prefix="/v1", tags=["openai"])

MODEL_CREATED = 1722643200  # 2024-08-03, IJCAI 2024: when the method was published
POLL_AFTER_MS = "500"
# The character and the motion of a remix are its source's: a remix body may not name them.
_REMIX_FIXED = ("image", "poses", "driving_video", "source_pose", "mask", "video_start", "video_end")
_VARIANTS = {
    "video": ("video", "video/mp4"),
    "thumbnail": ("poster", "image/png"),
    "spritesheet": (None, "image/jpeg"),
}


def _refuse(code: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, code, message)


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such video")


# --- reading a create request -------------------------------------------------------------------
async def _read_body(request: Request, settings: Settings) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The request's fields and uploaded files, under the names it used (JSON or multipart)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "malformed_json", "the body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise ApiError(422, "validation_error", "the body must be a JSON object")
        return body, {}
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    try:
        form = await request.form(
            max_files=len(FILE_FIELDS), max_fields=64, max_part_size=settings.max_pose_bytes
        )
    except (MultiPartException, HTTPException, ValueError) as exc:
        detail = exc.message if isinstance(exc, MultiPartException) else getattr(exc, "detail", None)
        raise ApiError(
            400, "malformed_multipart", f"the multipart body does not parse: {detail or 'invalid body'}"
        ) from exc
    fields: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for raw_name in set(form.keys()):
        # The SDK sends lists as `name[]` and objects as `name[key]` (input_reference[image_url]).
        name = raw_name.removesuffix("[]").replace("[image_url]", "")
        values = form.getlist(raw_name)
        if isinstance(values[0], UploadFile):
            files[name] = await values[0].read()
            continue
        texts = [v for v in values if isinstance(v, str)]
        if name in LIST_FIELDS:
            fields[name] = [part.strip() for text in texts for part in text.split(",") if part.strip()]
        elif texts and (texts[0] != "" or name == "prompt"):
            fields[name] = texts[0]
    await form.close()
    return fields, files


def _character(fields: dict[str, Any], files: dict[str, bytes]) -> None:
    """``input_reference`` (a file, a URL/data URI, or ``{"image_url": ...}``) -> ``image``."""
    if "input_reference" in files:
        files["image"] = files.pop("input_reference")
    ref = fields.pop("input_reference", None)
    if isinstance(ref, dict):
        if "image_url" not in ref:
            raise _refuse("image_reference_invalid", "input_reference: give image_url (file_id is not kept)")
        ref = ref["image_url"]
    if ref is not None or "image" in files:
        if "image" in fields or ("image" in files and ref is not None):
            raise _refuse("image_ambiguous", "send input_reference or image, not both")
        fields["image"] = UPLOADED if ref is None else ref


def _size(fields: dict[str, Any]) -> None:
    """OpenAI's ``size`` ("WxH") -> ``width``/``height`` (our own limits apply, not OpenAI's four)."""
    value = fields.pop("size", None)
    if value is None:
        return
    parsed = oa.parse_size(str(value))
    if parsed is None:
        raise _refuse("size_invalid", f"size must be WIDTHxHEIGHT in pixels, got {str(value)[:40]!r}")
    if fields.get("width") is not None or fields.get("height") is not None:
        raise _refuse("size_ambiguous", "send size or width/height, not both")
    fields["width"], fields["height"] = parsed


def _seconds(fields: dict[str, Any]) -> float | None:
    """``seconds``: a cap on the motion's length; a driving video is cut at ``video_start + seconds``."""
    value = fields.pop("seconds", None)
    if value is None:
        return None
    seconds = oa.parse_seconds(str(value))
    if seconds is None:
        raise _refuse("seconds_invalid", f"seconds must be a positive number, got {str(value)[:40]!r}")
    if fields.get("driving_video") is not None:
        try:
            start = float(fields.get("video_start") or 0.0)
            end = None if fields.get("video_end") is None else float(fields["video_end"])
        except (TypeError, ValueError):
            return seconds  # the intake refuses the malformed value
        fields["video_end"] = start + seconds if end is None else min(end, start + seconds)
    return seconds


def _model(fields: dict[str, Any]) -> None:
    model = fields.pop("model", None)
    if model is not None and model != oa.SERVED_MODEL:
        raise ApiError(
            400,
            "model_not_found",
            f"the model {str(model)[:80]!r} is not served here; use {oa.SERVED_MODEL!r} (GET /v1/models)",
        )


def _request_hash(fields: dict[str, Any], files: dict[str, bytes]) -> str:
    canonical = {
        "api": oa.API,
        **fields,
        **{f"file:{k}": hashlib.sha256(v).hexdigest() for k, v in files.items()},
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


def _submission(fields: dict[str, Any], files: dict[str, bytes], settings: Settings) -> Submission:
    """Our submission, exactly as ``POST /animations`` would have read it."""
    request_hash = _request_hash(fields, files)
    for name in ("poses", "source_pose"):
        if name in files:
            fields[name] = parse_pose_json(files.pop(name), max_bytes=settings.max_pose_bytes)
    for name in ("mask", "driving_video"):
        if name in files:
            fields[name] = UPLOADED
    unknown = sorted(set(files) - set(FILE_FIELDS))
    if unknown:
        raise _refuse("validation_error", f"unexpected file field(s): {', '.join(unknown)}")
    return Submission(validate_body(AnimationCreate, fields), files, request_hash)


def _adapt(seconds: float | None, remixed_from: str | None = None) -> Any:
    """After the intake: mark the job as OpenAI's, and cut its motion at ``seconds``."""

    def adapt(job: ValidatedJob) -> ValidatedJob:
        job = dataclasses.replace(job, api=oa.API, remixed_from=remixed_from)
        if seconds is not None and job.poses is not None:
            poses = oa.cap_motion(job.poses, seconds, int(job.params["fps"]))
            num_frames = 1 + int(job.params["transition_frames"]) + len(poses["frames"])
            job = dataclasses.replace(job, poses=poses, num_frames=num_frames)
        return job

    return adapt


# --- reading back --------------------------------------------------------------------------------
def _video(services: Services, record: JobRecord) -> oa.Video:
    return oa.video_of(record, retention_s=services.settings.output_retention_s)


def _owned(services: Services, owner: str, video_id: str) -> JobRecord:
    record = services.store.get_owned(video_id, owner)
    if record is None:  # another key's video is indistinguishable from a missing one
        raise _not_found()
    return record


def _poll_hint(response: Response, video: oa.Video) -> oa.Video:
    if video.status in ("queued", "in_progress"):
        response.headers["openai-poll-after-ms"] = POLL_AFTER_MS
    return video


@router.post(
    "/videos",
    response_model=oa.Video,
    summary="Create a video (OpenAI-compatible)",
    responses=openai_responses(400, 401, 409, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["prompt"],
                        "properties": {
                            "prompt": {"type": "string"},
                            "model": {"type": "string", "enum": [oa.SERVED_MODEL]},
                            "input_reference": {"type": "string", "format": "binary"},
                            "size": {"type": "string", "examples": ["512x512"]},
                            "seconds": {"type": "string", "examples": ["4"]},
                            "poses": {"type": "string", "description": "pose JSON (file or text)"},
                        },
                        "additionalProperties": True,
                    }
                },
                "application/json": {"schema": {"type": "object", "additionalProperties": True}},
            },
        }
    },
)
async def create_video(
    request: Request,
    response: Response,
    services: ServicesDep,
    owner: Owner,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> oa.Video:
    """OpenAI's create: `prompt`, `input_reference` (the character image), `model`, `size` (WxH),
    `seconds` (a cap on the motion); the motion and every other `POST /animations` field (`poses`,
    `driving_video`, `steps`, `seed`, `webhook_url`, ...) as extension fields (the SDK's `extra_body`)."""
    seconds: list[float | None] = [None]

    async def read(req: Request, settings: Settings) -> Submission:
        fields, files = await _read_body(req, settings)
        _model(fields)
        _character(fields, files)
        _size(fields)
        seconds[0] = _seconds(fields)
        return _submission(fields, files, settings)

    record, _ = await submit(
        request, services, owner, idempotency_key, read=read, adapt=lambda job: _adapt(seconds[0])(job)
    )
    return _poll_hint(response, _video(services, record))


@router.get(
    "/videos/{video_id}",
    response_model=oa.Video,
    summary="Get a video",
    responses=openai_responses(400, 401, 404, 429, 503),
)
def retrieve_video(video_id: str, response: Response, services: ServicesDep, owner: Owner) -> oa.Video:
    return _poll_hint(response, _video(services, _owned(services, owner, video_id)))


def _list_ids(
    services: Services, owner: str, after: str | None, limit: int, order: str
) -> tuple[list[JobRecord], bool]:
    store = services.store
    if order == "desc":
        records, more = store.list_owned(owner, limit, after)
        return records, more is not None
    index = store.index_key(owner)
    start = f"({after}" if after else "-"
    records = []
    while len(records) <= limit:
        ids = store.r.zrange(index, start, "+", bylex=True, offset=0, num=limit + 1)
        if not ids:
            break
        for job_id in ids:
            record = store.get(job_id)
            if record is not None:
                records.append(record)
        start = f"({ids[-1]}"
    return records[:limit], len(records) > limit


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
    records, more = _list_ids(services, owner, after, limit, order)
    data = [_video(services, r) for r in records]
    return oa.VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=more,
    )


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
    if record is None:
        if video_id.startswith("anim_") and await run_in_threadpool(was_deleted_by, store, video_id, owner):
            return oa.VideoDeleted(id=video_id)
        raise _not_found()
    await run_in_threadpool(
        lambda: delete_job(
            record, store=store, storage=services.storage, settings=services.settings, queue=services.queue
        )
    )
    return oa.VideoDeleted(id=video_id)


def _content(storage: Storage, record: JobRecord, variant: str) -> bytes:
    name, _ = _VARIANTS[variant]
    if name is not None:
        return storage.get_bytes(record.outputs[name])
    key = output_key(record.id, SPRITESHEET)
    try:
        return storage.get_bytes(key)
    except ObjectNotFound:  # the first request: made once from the MP4, kept next to the outputs
        sheet = spritesheet(storage.get_bytes(record.outputs["video"]))
        storage.put_bytes(key, sheet, "image/jpeg")
        return sheet


@router.get(
    "/videos/{video_id}/content",
    response_class=Response,
    summary="Download the MP4, its thumbnail or a sprite sheet",
    responses={
        200: {
            "content": {"video/mp4": {}, "image/png": {}, "image/jpeg": {}},
            "description": "video: the MP4; thumbnail: the PNG poster; spritesheet: JPEG of frames",
        },
        **openai_responses(400, 401, 404, 409, 429, 503),
    },
)
async def download_video_content(
    video_id: str,
    services: ServicesDep,
    owner: Owner,
    variant: Annotated[Literal["video", "thumbnail", "spritesheet"], Query()] = "video",
) -> Response:
    record = await run_in_threadpool(_owned, services, owner, video_id)
    if record.status is not JobStatus.SUCCEEDED:
        raise ApiError(409, "video_not_ready", f"the video is {oa.video_status(record.status)}; no content")
    try:
        data = await run_in_threadpool(_content, services.storage, record, variant)
    except (ObjectNotFound, KeyError) as exc:
        raise ApiError(404, "content_expired", "the video's files are no longer kept") from exc
    return Response(data, media_type=_VARIANTS[variant][1])


def _remix_submission(storage: Storage, source: JobRecord, fields: dict[str, Any]) -> Submission:
    """The source's character and motion (its kept inputs) with the new prompt and overrides."""
    named = sorted(set(fields) & set(_REMIX_FIXED))
    if named:
        raise _refuse("validation_error", f"a remix keeps its source's {', '.join(named)}")
    params = {k: v for k, v in source.params.items() if k in AnimationParams.model_fields}
    params.pop("subject_words", None)  # they name words of the old prompt
    ours: dict[str, Any] = {**params, "image": UPLOADED}
    if source.webhook_url:
        ours.update(webhook_url=source.webhook_url, webhook_events=source.webhook_events)
    files: dict[str, bytes] = {}
    try:
        files["image"] = storage.get_bytes(input_key(source.id, "image.png"))
        if "poses.json" in source.inputs or not any(n.startswith("driving_video.") for n in source.inputs):
            ours["poses"] = json.loads(storage.get_bytes(input_key(source.id, "poses.json")))
            ours.pop("video_start", None), ours.pop("video_end", None)
        else:
            video = next(n for n in source.inputs if n.startswith("driving_video."))
            files["driving_video"] = storage.get_bytes(input_key(source.id, video))
            ours["driving_video"] = UPLOADED
        if "source_pose.json" in source.inputs:
            ours["source_pose"] = json.loads(storage.get_bytes(input_key(source.id, "source_pose.json")))
        if "mask.png" in source.inputs:
            files["mask"] = storage.get_bytes(input_key(source.id, "mask.png"))
            ours["mask"] = UPLOADED
    except ObjectNotFound as exc:
        raise ApiError(
            409,
            "inputs_not_kept",
            "this video's character and motion are no longer kept (they are deleted when a job ends"
            " unless POSEANIMATE_KEEP_INPUTS=true); submit them again with POST /v1/videos",
        ) from exc
    ours.update(fields)
    return Submission(
        validate_body(AnimationCreate, ours), files, _request_hash({"remix": source.id, **fields}, {})
    )


@router.post(
    "/videos/{video_id}/remix",
    response_model=oa.Video,
    summary="Remix a video: same character and motion, a new prompt",
    responses=openai_responses(400, 401, 404, 409, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["prompt"],
                        "properties": {"prompt": {"type": "string"}},
                        "additionalProperties": True,
                    }
                }
            },
        }
    },
)
async def remix_video(
    video_id: str,
    request: Request,
    response: Response,
    services: ServicesDep,
    owner: Owner,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> oa.Video:
    """A new job with the source's character image, motion, mask and parameters and a new `prompt`
    (parameters may be overridden as extension fields). Its inversion is cached, so it runs cheaper.
    409 `inputs_not_kept` when the source's inputs were deleted."""
    source = await run_in_threadpool(_owned, services, owner, video_id)

    async def read(req: Request, settings: Settings) -> Submission:
        fields, files = await _read_body(req, settings)
        if files:
            raise _refuse("validation_error", "a remix takes no files")
        _model(fields)
        return await run_in_threadpool(_remix_submission, services.storage, source, fields)

    record, _ = await submit(
        request, services, owner, idempotency_key, read=read, adapt=_adapt(None, source.id)
    )
    return _poll_hint(response, _video(services, record))


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
        raise ApiError(404, "model_not_found", f"the model {model_id[:80]!r} is not served here")
    return oa.Model(id=oa.SERVED_MODEL, created=MODEL_CREATED)
