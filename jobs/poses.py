"""Pose JSON schema checks and normalisation to the compact form, without the engine.

The API cannot import the engine, yet bad poses must never reach a GPU. This module checks the
structure (COCO-18 keypoints, finite numbers, frame-count bounds, one canvas size) and rewrites
every accepted input into the compact pixel form the engine's ``PoseSequence.from_json`` reads::

    {"width": W, "height": H, "units": "pixels", "frames": [[[x, y, c] * 18], ...]}

Missing keypoints (confidence 0) are written as ``[0, 0, 0]``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

NUM_KEYPOINTS = 18
# Inputs with no canvas size and all coordinates in [0, 1] are normalised; they are scaled to this.
NORMALIZED_CANVAS = 512
# A confident keypoint may sit outside the canvas (a hand out of frame) but not absurdly far.
_MARGIN = 1.0
_MAX_CANVAS = 16384


class PoseValidationError(ValueError):
    """A pose input the engine would refuse; ``code`` is the API's problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_pose_json(text: str | bytes, *, max_bytes: int) -> Any:
    """``json.loads`` with a size cap; deeply nested or malformed JSON becomes ``pose_malformed``."""
    if len(text) > max_bytes:
        raise PoseValidationError("pose_too_large", f"pose JSON is larger than {max_bytes} bytes")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PoseValidationError("pose_malformed", f"pose JSON does not parse: {str(exc)[:100]}") from exc


def _number(value: Any, where: str) -> float:
    # bool is an int subclass; a keypoint of `true` is a client bug, not a coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PoseValidationError("pose_not_numeric", f"{where} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond float range (1 followed by 400 zeros)
        number = math.inf
    if not math.isfinite(number):
        raise PoseValidationError("pose_not_finite", f"{where} is not a finite number")
    return number


def _canvas_dim(value: Any, where: str) -> int:
    number = _number(value, where)
    if number != int(number) or not 1 <= number <= _MAX_CANVAS:
        raise PoseValidationError("pose_canvas_invalid", f"{where} must be an integer in 1..{_MAX_CANVAS}")
    return int(number)


def _keypoints_from_flat(flat: Any, where: str) -> list[list[float]]:
    if not isinstance(flat, list):
        raise PoseValidationError("pose_malformed", f"{where} must be a list of numbers")
    if len(flat) != NUM_KEYPOINTS * 3:
        raise PoseValidationError(
            "pose_keypoint_count",
            f"{where} has {len(flat)} numbers; expected {NUM_KEYPOINTS * 3} (18 keypoints x (x, y, c))",
        )
    return [[_number(flat[i + k], f"{where}[{i + k}]") for k in range(3)] for i in range(0, len(flat), 3)]


def _keypoints_from_triples(frame: Any, where: str) -> list[list[float]]:
    if not isinstance(frame, list):
        raise PoseValidationError("pose_malformed", f"{where} must be a list of [x, y, c] keypoints")
    if len(frame) != NUM_KEYPOINTS:
        raise PoseValidationError(
            "pose_keypoint_count", f"{where} has {len(frame)} keypoints; expected {NUM_KEYPOINTS} (COCO-18)"
        )
    points = []
    for j, point in enumerate(frame):
        if not isinstance(point, list) or len(point) not in (2, 3):
            raise PoseValidationError("pose_malformed", f"{where}[{j}] must be [x, y] or [x, y, c]")
        xyc = [_number(v, f"{where}[{j}]") for v in point]
        points.append(xyc if len(xyc) == 3 else [*xyc, 1.0])
    return points


def _openpose_frame(obj: Any, where: str) -> tuple[list[list[float]], tuple[int, int] | None]:
    if not isinstance(obj, dict):
        raise PoseValidationError("pose_malformed", f"{where} must be an OpenPose frame object")
    people = obj.get("people")
    if not isinstance(people, list) or not people:
        raise PoseValidationError("pose_empty_frame", f"{where} has no people")
    person = people[0]
    if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
        raise PoseValidationError("pose_malformed", f"{where}.people[0] has no pose_keypoints_2d")
    points = _keypoints_from_flat(person["pose_keypoints_2d"], f"{where}.people[0].pose_keypoints_2d")
    canvas = None
    if "canvas_width" in obj or "canvas_height" in obj:
        canvas = (
            _canvas_dim(obj.get("canvas_width"), f"{where}.canvas_width"),
            _canvas_dim(obj.get("canvas_height"), f"{where}.canvas_height"),
        )
    return points, canvas


def _units(obj: Any) -> str | None:
    units = obj.get("units") if isinstance(obj, dict) else None
    if units not in (None, "pixels", "normalized"):
        raise PoseValidationError("pose_malformed", "poses.units must be 'pixels' or 'normalized'")
    return units


def _split_input(obj: Any) -> tuple[list[list[list[float]]], tuple[int, int] | None]:
    """Frames (keypoint triples) and the canvas of any accepted input shape."""
    if isinstance(obj, dict) and "frames" in obj:
        frames_in = obj["frames"]
        if not isinstance(frames_in, list):
            raise PoseValidationError("pose_malformed", "poses.frames must be a list")
        canvas = None
        if "width" in obj or "height" in obj:
            canvas = (
                _canvas_dim(obj.get("width"), "poses.width"),
                _canvas_dim(obj.get("height"), "poses.height"),
            )
        return [_keypoints_from_triples(f, f"poses.frames[{i}]") for i, f in enumerate(frames_in)], canvas
    if isinstance(obj, dict):
        points, canvas = _openpose_frame(obj, "poses")
        return [points], canvas
    if isinstance(obj, list):
        frames, canvases = [], set()
        for i, item in enumerate(obj):
            points, canvas = _openpose_frame(item, f"poses[{i}]")
            frames.append(points)
            if canvas is not None:
                canvases.add(canvas)
        if len(canvases) > 1:
            raise PoseValidationError(
                "pose_canvas_inconsistent", f"frames use different canvas sizes: {sorted(canvases)}"
            )
        return frames, (canvases.pop() if canvases else None)
    raise PoseValidationError(
        "pose_malformed", "poses must be an OpenPose frame, a list of frames, or compact form"
    )


def normalize_poses(obj: Any, *, max_frames: int, min_frames: int = 1) -> dict[str, Any]:
    """Validate any accepted pose input; return it in compact pixel form."""
    frames, canvas = _split_input(obj)
    if not min_frames <= len(frames) <= max_frames:
        raise PoseValidationError(
            "pose_frame_count", f"poses has {len(frames)} frames; allowed {min_frames}..{max_frames}"
        )
    units = _units(obj)
    for i, frame in enumerate(frames):
        for j, point in enumerate(frame):
            if not 0.0 <= point[2] <= 1.0:
                raise PoseValidationError(
                    "pose_confidence", f"frame {i} keypoint {j}: confidence must be in [0, 1]"
                )
            # Rounded as stored, before anything asks "is it visible?": a confidence that rounds to
            # 0 is missing here exactly as it will be in the engine.
            point[2] = round(point[2], 4)
        if not any(p[2] > 0 for p in frame):
            raise PoseValidationError("pose_empty_frame", f"frame {i} has no confident keypoint")
    confident = [p for frame in frames for p in frame if p[2] > 0]
    # Without explicit units, coordinates all within [0, 1] are normalised: no pose fits in a pixel.
    normalized = units == "normalized" or (
        units is None and all(0.0 <= v <= 1.0 for p in confident for v in p[:2])
    )
    if canvas is None:
        if not normalized:
            raise PoseValidationError(
                "pose_canvas_missing",
                "pixel coordinates need a canvas size (canvas_width/canvas_height or width/height)",
            )
        canvas = (NORMALIZED_CANVAS, NORMALIZED_CANVAS)
    width, height = canvas
    sx, sy = (float(width), float(height)) if normalized else (1.0, 1.0)
    out_frames = []
    for i, frame in enumerate(frames):
        out = []
        for j, (x, y, c) in enumerate(frame):
            if c <= 0:
                out.append([0.0, 0.0, 0.0])
                continue
            px, py = x * sx, y * sy
            if not (
                -_MARGIN * width <= px <= (1 + _MARGIN) * width
                and -_MARGIN * height <= py <= (1 + _MARGIN) * height
            ):
                raise PoseValidationError(
                    "pose_out_of_bounds",
                    f"frame {i} keypoint {j} ({x}, {y}) lies far outside the {width}x{height} canvas",
                )
            out.append([round(px, 3), round(py, 3), round(c, 4)])
        out_frames.append(out)
    return {"width": width, "height": height, "units": "pixels", "frames": out_frames}


def normalize_source_pose(obj: Any) -> dict[str, Any]:
    """A source pose is exactly one frame."""
    return normalize_poses(obj, max_frames=1)


def frame_count(compact: dict[str, Any]) -> int:
    frames: Sequence[Any] = compact["frames"]
    return len(frames)
