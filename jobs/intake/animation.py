"""Is this animation acceptable? Everything that can refuse a ``POST /animations`` submission, in
cheap-to-expensive order, with the engine's own rules (``engine.inputs.poseformat``,
``engine.inputs.rules``) and the service's limits table (``jobs.intake.limits``), so a job accepted
here is one the engine runs. Blocking (URL fetches, image decoding, the video probe): run it in a
thread."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.inputs.errors import Refusal, declare_codes
from engine.inputs.poseformat import normalize_poses, normalize_source_pose, parse_pose_json
from engine.inputs.rules import check_output_frames, check_trim
from jobs.contract import AnimationCreate, AnimationParams
from jobs.intake.acceptance import ValidatedJob
from jobs.intake.images import CheckedImage, check_image, check_mask
from jobs.intake.limits import check_params
from jobs.intake.memory import check_fits_workers
from jobs.intake.policy import Intake
from jobs.intake.sources import load_reference, naming_url_errors
from jobs.intake.ssrf import vet_url
from jobs.intake.videos import check_video, load_video_bytes, sniff_video, video_frame_budget

ANIMATION_CODES = declare_codes(
    {
        "motion_missing": 422,
        "motion_ambiguous": 422,
        "video_options_without_video": 422,
        "webhook_events_without_url": 422,
    },
    owner="jobs.intake.animation",
)


def check_motion(req: AnimationCreate) -> None:
    """Exactly one of ``poses`` and ``driving_video`` (422 ``motion_missing`` / ``motion_ambiguous``);
    ``video_start``/``video_end`` only with a driving video."""
    if req.poses is None and req.driving_video is None:
        raise Refusal("send the target motion: poses or a driving_video", code="motion_missing")
    if req.poses is not None and req.driving_video is not None:
        raise Refusal("send poses or a driving_video, not both", code="motion_ambiguous")
    if req.driving_video is None and (req.video_start is not None or req.video_end is not None):
        raise Refusal("video_start/video_end need a driving_video", code="video_options_without_video")


def _json_value(value: Any, intake: Intake) -> Any:
    """Poses may arrive inline or as JSON text (a string field)."""
    return (
        parse_pose_json(value, max_bytes=intake.settings.max_pose_bytes) if isinstance(value, str) else value
    )


def _image(intake: Intake, ref: str, upload: bytes | None, what: str) -> bytes:
    return load_reference(
        ref, upload, what=what, family="image", max_bytes=intake.settings.max_image_bytes, fetch=intake.fetch
    )


def _check_mask(intake: Intake, req: AnimationCreate, files: Mapping[str, bytes]) -> bytes | None:
    if req.mask is None:
        return None
    data = _image(intake, req.mask, files.get("mask"), "mask")
    mask = check_mask(
        data, max_bytes=intake.settings.max_image_bytes, max_pixels=intake.limits.max_image_pixels
    )
    return mask.png


def _check_video(
    intake: Intake, req: AnimationCreate, files: Mapping[str, bytes], fps: int, budget: int
) -> tuple[bytes, str, int]:
    """The driving video's bytes, container and the target frames its sampling gives (the io worker
    records the real count: frames with nobody in them are dropped) before the job reaches a GPU."""
    assert req.driving_video is not None
    video = load_video_bytes(
        req.driving_video,
        files.get("driving_video"),
        max_bytes=intake.settings.max_video_bytes,
        fetch=intake.fetch,
    )
    ext = sniff_video(video)
    info = check_video(
        video,
        intake.limits,
        fps=fps,
        start=req.video_start,
        end=req.video_end,
        max_frames=budget,
        audio=req.audio is not False,
    )
    return video, ext, max(1, min(info.frames, budget))


def check_animation(intake: Intake, req: AnimationCreate, files: Mapping[str, bytes]) -> ValidatedJob:
    """The job to accept, or the first :class:`~engine.inputs.errors.Refusal` of the submission
    (``files``: the multipart parts that fields marked ``UPLOADED`` name)."""
    check_motion(req)
    limits = intake.limits
    params = check_params(req.model_dump(include=set(AnimationParams.model_fields)), limits)
    if req.webhook_url is None and "webhook_events" in req.model_fields_set:
        raise Refusal("webhook_events needs a webhook_url to send them to", code="webhook_events_without_url")
    poses = None
    budget = video_frame_budget(limits, params["transition_frames"])
    if req.driving_video is not None:  # probed last; extracted on an io worker, at most `budget` frames
        check_trim(req.video_start, req.video_end, names=("video_start", "video_end"))
        target_frames = budget
    else:
        poses = normalize_poses(_json_value(req.poses, intake), max_frames=limits.max_frames)
        target_frames = len(poses["frames"])
        check_output_frames(1 + params["transition_frames"] + target_frames, limits.max_output_frames)
        check_fits_workers(
            intake.settings.worker_gpu_memory_gb, params, 1 + params["transition_frames"] + target_frames
        )
    source_pose = None
    if req.source_pose is not None:
        source_pose = normalize_source_pose(_json_value(req.source_pose, intake))
    if req.webhook_url:
        with naming_url_errors("webhook_url"):
            vet_url(req.webhook_url, allow_private=intake.fetch.allow_private, resolver=intake.fetch.resolver)
    image: CheckedImage = check_image(
        _image(intake, req.image, files.get("image"), "image"),
        max_bytes=intake.settings.max_image_bytes,
        max_pixels=limits.max_image_pixels,
        min_side=limits.min_image_side,
    )
    mask_png = _check_mask(intake, req, files)
    video, video_ext = None, "mp4"
    if req.driving_video is not None:  # last: a URL fetch is the most expensive check
        video, video_ext, target_frames = _check_video(intake, req, files, params["fps"], budget)
        check_fits_workers(
            intake.settings.worker_gpu_memory_gb, params, 1 + params["transition_frames"] + target_frames
        )
    return ValidatedJob(
        params=params,
        image_png=image.png,
        poses=poses,
        source_pose=source_pose,
        mask_png=mask_png,
        webhook_url=req.webhook_url,
        webhook_events=[e.value for e in req.webhook_events],
        num_frames=1 + params["transition_frames"] + target_frames,
        driving_video=video,
        driving_video_ext=video_ext,
    )
