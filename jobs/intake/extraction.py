"""Is this pose extraction acceptable? What can refuse a ``POST /poses`` clip before it is stored:
the frame cap, the trim, the clip's bytes (the one loader), its container and its header and packets
(``jobs.intake.videos``). Blocking: run it in a thread."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.inputs.errors import InvalidInput
from engine.inputs.rules import check_trim
from jobs.contract import PosesCreate
from jobs.intake.policy import Intake
from jobs.intake.videos import check_video, load_video_bytes, sniff_video


@dataclass(frozen=True)
class CheckedClip:
    """A clip to extract poses from: its bytes, container, and the extraction's parameters."""

    data: bytes
    ext: str
    params: dict[str, Any]


def check_extraction(intake: Intake, req: PosesCreate, upload: bytes | None) -> CheckedClip:
    """The clip to store, or the first :class:`~engine.inputs.errors.Refusal` (``upload``: the
    multipart ``video`` part that ``req.video == UPLOADED`` names)."""
    cap = intake.limits.max_frames
    if req.max_frames is not None and req.max_frames > cap:
        raise InvalidInput(f"max_frames must be an integer in 1..{cap}", code="parameter_out_of_range")
    check_trim(req.start, req.end)
    max_frames = req.max_frames or cap
    data = load_video_bytes(
        req.video, upload, max_bytes=intake.settings.max_video_bytes, fetch=intake.fetch, what="video"
    )
    ext = sniff_video(data)
    # The service's frame cap refuses at the door; a smaller max_frames keeps the first frames (the
    # io worker trims, and its report says "trimmed").
    check_video(data, intake.limits, fps=req.fps, start=req.start, end=req.end, max_frames=cap, what="video")
    params = {
        "fps": req.fps,
        "start": req.start,
        "end": req.end,
        "max_frames": max_frames,
        "trim": req.max_frames is not None,
        "parts": req.parts or "full",
    }
    return CheckedClip(data, ext, params)
