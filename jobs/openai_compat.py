"""The OpenAI ``/v1/videos`` shape of a job: one mapping, used by the API's facade and by webhooks.

A video IS a job (the same id, record, owner, limits); this module only says how a job record reads
in OpenAI's vocabulary. Torch-free and import-light, like the rest of the job core.

Statuses: ``queued`` -> ``queued``; ``running`` -> ``in_progress``; ``succeeded`` -> ``completed``;
``failed`` -> ``failed`` (``error.code`` is ours); ``canceled`` (OpenAI has none) -> ``failed`` with
``error.code == "canceled"``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, Field

from jobs.contract import JobStatus, WebhookEvent
from jobs.store import JobRecord, JobStore

API = "openai"
"""``JobRecord.api`` of a job submitted through ``/v1/videos``: its webhooks take OpenAI's shape."""

SERVED_MODEL = "poseanimate"
"""The model id ``/v1/models`` lists and ``model`` accepts (left out, it is the default)."""

CANCELED_CODE = "canceled"

_STATUS: dict[JobStatus, Literal["queued", "in_progress", "completed", "failed"]] = {
    JobStatus.QUEUED: "queued",
    JobStatus.RUNNING: "in_progress",
    JobStatus.SUCCEEDED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELED: "failed",
}
_SIZE = re.compile(r"^\s*([0-9]{1,5})\s*[xX]\s*([0-9]{1,5})\s*$")
_SQUARE = re.compile(r"^\s*([0-9]{1,5})\s*$")


class VideoError(BaseModel):
    code: str = Field(..., examples=["pose_keypoint_count"])
    message: str


class Video(BaseModel):
    """A job as OpenAI's ``Video`` object (``GET /v1/videos/{id}``)."""

    id: str = Field(..., examples=["anim_01JD8X3K4M5N6P7Q8R9S0T1V2W"])
    object: Literal["video"] = "video"
    model: str = SERVED_MODEL
    status: Literal["queued", "in_progress", "completed", "failed"]
    progress: int = Field(..., ge=0, le=100, description="Integer percent.")
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = Field(default=None, description="When the output files are deleted.")
    prompt: str | None = None
    size: str = Field(..., examples=["512x512"], description="WIDTHxHEIGHT of the output.")
    seconds: str = Field(..., examples=["2"], description="Length of the output at its fps.")
    error: VideoError | None = None
    remixed_from_video_id: str | None = None


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "poseanimate"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


def video_status(status: JobStatus) -> Literal["queued", "in_progress", "completed", "failed"]:
    return _STATUS[status]


def _seconds(frames: int, fps: Any) -> str:
    rate = fps if isinstance(fps, int | float) and fps > 0 else 8
    return f"{frames / rate:g}"


def video_of(record: JobRecord, *, retention_s: int | None) -> Video:
    """The job record as a ``Video``."""
    params = record.params
    error = None
    if record.status is JobStatus.FAILED:
        error = VideoError(code=record.error_code or "internal_error", message=record.error_message or "")
    elif record.status is JobStatus.CANCELED:
        error = VideoError(code=CANCELED_CODE, message="the job was canceled")
    ended = record.finished_at if record.status.is_terminal() else None
    expires = None
    if record.status is JobStatus.SUCCEEDED and retention_s is not None:
        expires = int((ended or record.updated_at or time.time()) + retention_s)
    done = record.status is JobStatus.SUCCEEDED
    return Video(
        id=record.id,
        status=video_status(record.status),
        progress=100 if done else max(0, min(100, int(record.progress * 100))),
        created_at=int(record.created_at),
        completed_at=None if ended is None else int(ended),
        expires_at=expires,
        prompt=params.get("prompt"),
        size=f"{params.get('width') or params.get('size')}x{params.get('height') or params.get('size')}",
        seconds=_seconds(record.num_frames, params.get("fps")),
        error=error,
        remixed_from_video_id=record.remixed_from,
    )


def parse_size(value: str) -> tuple[int, int] | None:
    """``"WxH"`` (or ``"N"``, square) -> (width, height); None when it is neither."""
    match = _SIZE.fullmatch(value) or _SQUARE.fullmatch(value)
    if match is None:
        return None
    width = int(match.group(1))
    return width, int(match.group(2)) if match.lastindex == 2 else width


def parse_seconds(value: str) -> float | None:
    """``seconds`` as a positive number of seconds, or None when it is not one."""
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 < seconds < 1e6 else None


def cap_motion(poses: dict[str, Any], seconds: float, fps: int) -> dict[str, Any]:
    """Compact poses with at most ``seconds * fps`` target frames (at least one)."""
    keep = max(1, int(seconds * fps))
    if len(poses["frames"]) <= keep:
        return poses
    capped = {**poses, "frames": poses["frames"][:keep]}
    for key, value in poses.items():  # any per-frame list beside the frames is cut the same way
        if key != "frames" and isinstance(value, list) and len(value) == len(poses["frames"]):
            capped[key] = value[:keep]
    return capped


# OpenAI's event type of each ``WebhookEvent`` it has one for (by value: this table only names them;
# ``jobs.services`` alone emits a job's events).
_EVENT_TYPES = {
    "completed": "video.completed",
    "failed": "video.failed",
    "canceled": "video.failed",  # OpenAI has no canceled status: the video failed
}


def webhook_body(job_id: str, event: WebhookEvent, at: float | None = None) -> bytes | None:
    """OpenAI's event for ``event`` (``{"object": "event", "id", "type", "created_at", "data": {"id"}}``),
    or None for events OpenAI has no type for (started, progress, deleted): those are not sent."""
    kind = _EVENT_TYPES.get(event.value)
    if kind is None:
        return None
    body = {
        "object": "event",
        "id": "evt_" + secrets.token_hex(12),
        "type": kind,
        "created_at": int(time.time() if at is None else at),
        "data": {"id": job_id},
    }
    return json.dumps(body, separators=(",", ":")).encode()


def list_records(
    store: JobStore, owner: str, after: str | None, limit: int, order: Literal["asc", "desc"]
) -> tuple[list[JobRecord], bool]:
    """One page of ``owner``'s jobs after the id ``after``, newest (``desc``) or oldest first, and
    whether there are more (``GET /v1/videos``' cursor pages)."""
    if order == "desc":
        records, more = store.list_owned(owner, limit, after)
        return records, more is not None
    start = f"({after}" if after else "-"
    records = []
    while len(records) <= limit:
        ids = store.r.zrange(store.index_key(owner), start, "+", bylex=True, offset=0, num=limit + 1)
        if not ids:
            break
        records += [r for r in map(store.get, ids) if r is not None]  # type: ignore[arg-type]
        start = f"({ids[-1]}"  # type: ignore[index]
    return records[:limit], len(records) > limit
