"""Which instant of the driving clip each output frame shows (issue 21).

An animation from a clip has ``1 + transition_frames + driven`` frames at exactly the job's ``fps``:
frame 0 is the character's own pose (``source``), then the PATA ``transition`` frames, then one
``driven`` frame per pose sampled from the clip. Driven pose ``k`` was sampled at clip time
``start + k / fps`` (seconds from the clip's first frame, the frame on screen then; frames where
nobody was found and that were dropped are skipped, so the clip times say where a gap is). The number
of driven frames is ``ceil((end - start) * fps)`` for a segment of the clip (a last partial period
still gets its frame), less dropped frames; output frame ``i`` is shown at ``i / fps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["frame_timeline"]


def frame_timeline(
    count: int, fps: float, transition_frames: int, clip_times: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """One entry per output frame: ``index``, ``time`` (output seconds), ``role`` (``source``,
    ``transition``, ``driven``) and, for driven frames when ``clip_times`` are known, ``clip_time``
    (seconds of the clip the pose was sampled at)."""
    lead_in = 1 + transition_frames
    out: list[dict[str, Any]] = []
    for i in range(count):
        role = "source" if i == 0 else "transition" if i < lead_in else "driven"
        entry: dict[str, Any] = {"index": i, "time": round(i / fps, 6), "role": role}
        k = i - lead_in
        if role == "driven" and clip_times is not None and k < len(clip_times):
            entry["clip_time"] = round(float(clip_times[k]), 6)
        out.append(entry)
    return out
