"""Reading and validating ``POST /animations`` bodies (JSON or multipart) before anything is stored.

Bad input never reaches a GPU: images are sniffed and size/pixel-checked from their header before
decoding, fetched URLs go through the SSRF guard with size and time limits, poses are schema-checked
and normalised to the compact form, and every parameter is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from api.bodies import read_form, read_json_object
from api.errors import ApiError, validate_body
from engine.inputs.poseformat import normalize_poses, normalize_source_pose, parse_pose_json
from engine.inputs.rules import check_output_frames
from jobs.contract import AnimationCreate, AnimationParams
from jobs.images import CheckedImage, check_image, check_mask, decode_data_uri
from jobs.limits import ServiceLimits, check_params
from jobs.settings import Settings
from jobs.ssrf import FetchError, Resolver, UnsafeURLError, fetch_bytes, system_resolver, vet_url
from jobs.submission import ValidatedJob
from jobs.videos import check_video, load_video_bytes, sniff_video, video_frame_budget

FILE_FIELDS = ("image", "poses", "source_pose", "mask", "driving_video")
LIST_FIELDS = ("subject_words", "webhook_events")
UPLOADED = "upload:"


@dataclass
class Submission:
    request: AnimationCreate
    files: dict[str, bytes] = field(default_factory=dict)
    request_hash: str = ""


def _hash(fields: dict[str, Any], files: dict[str, bytes]) -> str:
    canonical = {**fields, **{f"file:{k}": hashlib.sha256(v).hexdigest() for k, v in files.items()}}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()


async def read_submission(request: Request, settings: Settings) -> Submission:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        fields = await read_json_object(request)  # 400 for invalid JSON or Unicode, 422 if no object
        return Submission(validate_body(AnimationCreate, fields), {}, _hash(fields, {}))
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        try:
            form = await read_form(  # request.form() that also wants the closing boundary
                request, max_files=len(FILE_FIELDS), max_fields=32, max_part_size=settings.max_pose_bytes
            )
        except (MultiPartException, HTTPException, ValueError) as exc:
            # Starlette turns its parser's errors into HTTPException(400) inside an app; python-multipart
            # raises ValueError subclasses on garbage: every one is the client's malformed body.
            detail = exc.message if isinstance(exc, MultiPartException) else getattr(exc, "detail", None)
            raise ApiError(
                400, "malformed_multipart", f"the multipart body does not parse: {detail or 'invalid body'}"
            ) from exc
        form_fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for name in set(form.keys()):
            values = form.getlist(name)
            if name in FILE_FIELDS and isinstance(values[0], UploadFile):
                files[name] = await values[0].read()
                continue
            texts = [v for v in values if isinstance(v, str)]
            if name in LIST_FIELDS:
                items = [part.strip() for text in texts for part in text.split(",")]
                form_fields[name] = [item for item in items if item]
            elif texts and (texts[0] != "" or name == "prompt"):  # an empty prompt is prompt_blank
                form_fields[name] = texts[0]
        await form.close()
        for name in ("poses", "source_pose"):
            if name in files:
                form_fields[name] = parse_pose_json(files.pop(name), max_bytes=settings.max_pose_bytes)
            elif isinstance(form_fields.get(name), str):
                form_fields[name] = parse_pose_json(form_fields[name], max_bytes=settings.max_pose_bytes)
        for name in ("image", "mask", "driving_video"):
            if name in files:
                form_fields[name] = UPLOADED
        request_hash = _hash(form_fields, files)
        return Submission(validate_body(AnimationCreate, form_fields), files, request_hash)
    raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")


def _load_image_bytes(
    ref: str, upload: bytes | None, settings: Settings, resolver: Resolver, what: str
) -> bytes:
    if ref == UPLOADED and upload is not None:
        return upload
    if ref.startswith("data:"):
        return decode_data_uri(ref, max_bytes=settings.max_image_bytes, what=what)
    if ref.lower().startswith(("http://", "https://")):
        with naming_url_errors(what):
            return fetch_bytes(
                ref,
                max_bytes=settings.max_image_bytes,
                timeout_s=settings.url_fetch_timeout_s,
                allow_private=settings.allow_private_urls,
                max_redirects=settings.url_max_redirects,
                resolver=resolver,
            )
    raise ApiError(
        422, f"{what}_reference_invalid", f"{what} must be an uploaded file, an http(s) URL or a data URI"
    )


@contextlib.contextmanager
def naming_url_errors(field_name: str) -> Iterator[None]:
    """URL refusals say which field's URL (``image``, ``mask``, ``webhook_url``) and, for a private
    address, which setting allows it in development."""
    try:
        yield
    except (UnsafeURLError, FetchError) as exc:
        message = f"{field_name}: {exc.message}"
        if exc.code == "url_address_not_allowed":
            message += " (for local development only: POSEANIMATE_ALLOW_PRIVATE_URLS=true)"
        exc.message = message
        exc.args = (message,)
        raise


def _json_value(value: Any, settings: Settings) -> Any:
    """Poses may arrive inline or as JSON text (a string field)."""
    return parse_pose_json(value, max_bytes=settings.max_pose_bytes) if isinstance(value, str) else value


def check_motion(req: AnimationCreate) -> None:
    """Exactly one of ``poses`` and ``driving_video`` (422 ``motion_missing`` / ``motion_ambiguous``);
    ``video_start``/``video_end`` only with a driving video."""
    if req.poses is None and req.driving_video is None:
        raise ApiError(422, "motion_missing", "send the target motion: poses or a driving_video")
    if req.poses is not None and req.driving_video is not None:
        raise ApiError(422, "motion_ambiguous", "send poses or a driving_video, not both")
    if req.driving_video is None and (req.video_start is not None or req.video_end is not None):
        raise ApiError(422, "video_options_without_video", "video_start/video_end need a driving_video")


def check_video_options(req: AnimationCreate) -> None:
    start, end = req.video_start or 0.0, req.video_end
    if end is not None and end <= start:
        raise ApiError(
            422, "parameter_out_of_range", f"video_end ({end:g} s) must be after video_start ({start:g} s)"
        )


def validate_submission(
    sub: Submission, settings: Settings, resolver: Resolver = system_resolver
) -> ValidatedJob:
    """Everything that can refuse the job, in cheap-to-expensive order, with the engine's own rules
    (``engine.inputs.poseformat``, ``engine.inputs.rules``) and the service's limits table (``jobs.limits``), so a
    job accepted here is one the engine runs. Blocking: run in a thread."""
    req = sub.request
    check_motion(req)
    limits = ServiceLimits.from_settings(settings)
    params = check_params(req.model_dump(include=set(AnimationParams.model_fields)), limits)
    if req.webhook_url is None and "webhook_events" in req.model_fields_set:
        raise ApiError(
            422, "webhook_events_without_url", "webhook_events needs a webhook_url to send them to"
        )
    poses = None
    budget = video_frame_budget(limits, params["transition_frames"])
    if req.driving_video is not None:
        # Probed below; extracted on an io worker at the job's fps, at most `budget` frames.
        check_video_options(req)
        num_frames = 1 + params["transition_frames"] + budget
    else:
        poses = normalize_poses(_json_value(req.poses, settings), max_frames=limits.max_frames)
        num_frames = 1 + params["transition_frames"] + len(poses["frames"])
        check_output_frames(num_frames, limits.max_output_frames)
    source_pose = None
    if req.source_pose is not None:
        source_pose = normalize_source_pose(_json_value(req.source_pose, settings))
    if req.webhook_url:
        with naming_url_errors("webhook_url"):
            vet_url(req.webhook_url, allow_private=settings.allow_private_urls, resolver=resolver)
    image: CheckedImage = check_image(
        _load_image_bytes(req.image, sub.files.get("image"), settings, resolver, "image"),
        max_bytes=settings.max_image_bytes,
        max_pixels=limits.max_image_pixels,
        min_side=limits.min_image_side,
    )
    mask_png = None
    if req.mask is not None:
        mask = check_mask(
            _load_image_bytes(req.mask, sub.files.get("mask"), settings, resolver, "mask"),
            max_bytes=settings.max_image_bytes,
            max_pixels=limits.max_image_pixels,
        )
        mask_png = mask.png
    video, video_ext = None, "mp4"
    if req.driving_video is not None:  # last: a URL fetch is the most expensive check
        video = load_video_bytes(
            req.driving_video,
            sub.files.get("driving_video"),
            max_bytes=settings.max_video_bytes,
            timeout_s=settings.url_fetch_timeout_s,
            allow_private=settings.allow_private_urls,
            max_redirects=settings.url_max_redirects,
            resolver=resolver,
        )
        video_ext = sniff_video(video)
        info = check_video(
            video,
            limits,
            fps=params["fps"],
            start=req.video_start,
            end=req.video_end,
            max_frames=budget,
        )
        # The frames the sampling gives; the io worker records the real count (frames with nobody
        # in them are dropped) before the job reaches a GPU.
        num_frames = 1 + params["transition_frames"] + max(1, min(info.frames, budget))
    return ValidatedJob(
        params=params,
        image_png=image.png,
        poses=poses,
        source_pose=source_pose,
        mask_png=mask_png,
        webhook_url=req.webhook_url,
        webhook_events=[e.value for e in req.webhook_events],
        num_frames=num_frames,
        driving_video=video,
        driving_video_ext=video_ext,
    )
