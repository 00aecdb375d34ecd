"""OpenAI's ``/v1/videos`` request fields as ``POST /animations``' (a translation on top of ``api.body``).

The body is read by ``api.body.read_body`` (the SDK's ``name[]``/``name[image_url]`` part names taken
as ``name``); only OpenAI's own fields are translated here: ``model`` (checked), ``input_reference`` ->
``image``, ``size`` "WxH" -> ``width``/``height``, ``seconds`` -> a cap on the motion. Every other field
is ours under its own name. The submission then takes the one path (``api.submissions``): the same
intake (``jobs.intake``), with :meth:`VideoRequest.adapt` marking the accepted job as OpenAI's.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.body import Body, BodyForm, read_body
from api.errors import ApiError
from api.submissions import animation_form
from engine.inputs.errors import echo
from jobs import openai_compat as oa
from jobs.contract import AnimationParams
from jobs.intake.acceptance import ValidatedJob
from jobs.intake.policy import Intake
from jobs.intake.sources import UPLOADED
from jobs.storage import ObjectNotFound, Storage, input_key
from jobs.store import JobRecord

# The character and the motion of a remix are its source's: a remix body may not name them.
_REMIX_FIXED = ("image", "poses", "driving_video", "source_pose", "mask", "video_start", "video_end")


def openai_form(intake: Intake) -> BodyForm:
    """``POST /animations``' form, plus ``input_reference`` and the SDK's part names."""
    ours = animation_form(intake)
    return dataclasses.replace(
        ours,
        file_fields=("input_reference", *ours.file_fields),
        max_fields=64,
        strip_suffixes=("[]", "[image_url]"),
    )


def check_model(fields: dict[str, Any]) -> None:
    model = fields.pop("model", None)
    if model is not None and model != oa.SERVED_MODEL:
        raise ApiError(
            "model_not_found",
            f"the model {echo(model)} is not served here; use {oa.SERVED_MODEL!r} (GET /v1/models)",
        )


def _character(body: Body) -> None:
    """``input_reference`` (a file, a URL/data URI, or ``{"image_url": ...}``) -> ``image``."""
    fields, files = body.fields, body.files
    ref = fields.pop("input_reference", None)
    if isinstance(ref, dict):
        if "image_url" not in ref:
            raise ApiError("image_reference_invalid", "input_reference: give image_url (file_id is not kept)")
        ref = ref["image_url"]
    if ref is None:
        return
    if "image" in fields:
        raise ApiError("image_ambiguous", "send input_reference or image, not both")
    fields["image"] = ref  # UPLOADED when it came as a file
    if "input_reference" in files:
        files["image"] = files.pop("input_reference")


def _size(fields: dict[str, Any]) -> None:
    """OpenAI's ``size`` ("WxH") -> ``width``/``height`` (our own limits apply, not OpenAI's four)."""
    value = fields.pop("size", None)
    if value is None:
        return
    parsed = oa.parse_size(str(value))
    if parsed is None:
        raise ApiError("size_invalid", f"size must be WIDTHxHEIGHT in pixels, got {echo(value, 40)}")
    if fields.get("width") is not None or fields.get("height") is not None:
        raise ApiError("size_ambiguous", "send size or width/height, not both")
    fields["width"], fields["height"] = parsed


def _seconds(fields: dict[str, Any]) -> float | None:
    """``seconds``: a cap on the motion's length; a driving video is cut at ``video_start + seconds``."""
    value = fields.pop("seconds", None)
    if value is None:
        return None
    seconds = oa.parse_seconds(str(value))
    if seconds is None:
        raise ApiError("seconds_invalid", f"seconds must be a positive number, got {echo(value, 40)}")
    if fields.get("driving_video") is not None:
        try:
            start = float(fields.get("video_start") or 0.0)
            end = None if fields.get("video_end") is None else float(fields["video_end"])
        except (TypeError, ValueError):
            return seconds  # the intake refuses the malformed value
        fields["video_end"] = start + seconds if end is None else min(end, start + seconds)
    return seconds


def _kept_inputs(storage: Storage, source: JobRecord) -> Body:
    """The source's character and motion, as a body of ours (its inputs as uploads)."""
    fields: dict[str, Any] = {"image": UPLOADED}
    files = {"image": storage.get_bytes(input_key(source.id, "image.png"))}
    video = next((n for n in source.inputs if n.startswith("driving_video.")), None)
    if "poses.json" in source.inputs or video is None:
        fields["poses"] = json.loads(storage.get_bytes(input_key(source.id, "poses.json")))
    else:
        files["driving_video"], fields["driving_video"] = (
            storage.get_bytes(input_key(source.id, video)),
            UPLOADED,
        )
    if "source_pose.json" in source.inputs:
        fields["source_pose"] = json.loads(storage.get_bytes(input_key(source.id, "source_pose.json")))
    if "mask.png" in source.inputs:
        files["mask"], fields["mask"] = storage.get_bytes(input_key(source.id, "mask.png")), UPLOADED
    return Body(fields, files)


def remix_body(storage: Storage, source: JobRecord, body: Body) -> Body:
    """The source's character, motion and parameters with the new prompt and overrides. Blocking."""
    named = sorted(set(body.fields) & set(_REMIX_FIXED))
    if body.files or named:
        raise ApiError("validation_error", f"a remix keeps its source's {', '.join(named or body.files)}")
    params = {k: v for k, v in source.params.items() if k in AnimationParams.model_fields}
    params.pop("subject_words", None)  # they name words of the old prompt
    if "poses.json" in source.inputs:
        params.pop("video_start", None), params.pop("video_end", None)
    if source.webhook_url:
        params.update(webhook_url=source.webhook_url, webhook_events=source.webhook_events)
    try:
        kept = _kept_inputs(storage, source)
    except ObjectNotFound as exc:
        raise ApiError(
            "inputs_not_kept",
            "this video's character and motion are no longer kept (they are deleted when a job ends"
            " unless POSEANIMATE_KEEP_INPUTS=true); submit them again with POST /v1/videos",
        ) from exc
    return Body({**params, **kept.fields, **body.fields}, kept.files)


@dataclass
class VideoRequest:
    """One ``POST /v1/videos`` (or a remix of ``remix_of``): ``read`` and ``adapt`` are the hooks of
    ``api.submissions.submit_animation``."""

    storage: Storage
    remix_of: JobRecord | None = None
    seconds: float | None = None

    async def read(self, request: Request, intake: Intake) -> Body:
        body = await read_body(request, openai_form(intake))
        check_model(body.fields)
        if self.remix_of is not None:
            body = await run_in_threadpool(remix_body, self.storage, self.remix_of, body)
        else:
            _character(body)
            _size(body.fields)
            self.seconds = _seconds(body.fields)
        return dataclasses.replace(body, extra={"api": oa.API, "seconds": self.seconds})

    def adapt(self, job: ValidatedJob) -> ValidatedJob:
        """After the intake: mark the job as OpenAI's (and its remix source), cut its motion at
        ``seconds``."""
        remixed_from = None if self.remix_of is None else self.remix_of.id
        job = dataclasses.replace(job, api=oa.API, remixed_from=remixed_from)
        if self.seconds is not None and job.poses is not None:
            poses = oa.cap_motion(job.poses, self.seconds, int(job.params["fps"]))
            num_frames = 1 + int(job.params["transition_frames"]) + len(poses["frames"])
            job = dataclasses.replace(job, poses=poses, num_frames=num_frames)
        return job
