"""The pose format: ONE parser for every accepted pose form, with one set of limits.

A torch-free leaf (stdlib only; no engine module, no numpy/PIL/torch), so the API and the job core
import it to refuse bad poses at the door with exactly the rules the engine applies. Every accepted
input becomes the canonical compact pixel form::

    {"width": W, "height": H, "units": "pixels", "frames": [[[x, y, c]] * 18, ...]}

Accepted inputs (parsed JSON, or JSON text / bytes / a ``Path``):

- OpenPose: one frame ``{"people": [{"pose_keypoints_2d": [...]}], "canvas_width"?, "canvas_height"?}``
  or a list of them; the first person is used; frames without a canvas take the other frames'.
- Compact: ``{"width"?, "height"?, "units"?, "frames": [frame, ...]}``.
- Single pose: ``{"width", "height", "units"?, "keypoints": frame}``.

A frame is 18 COCO-18 keypoints as ``[x, y, c]`` triples, ``[x, y]`` pairs (confidence 1) or 54 flat
numbers. Coordinates are normalised ([0, 1] of the canvas) when ``units == "normalized"``, or,
without ``units``, when every confident coordinate lies in [0, 1] on a canvas wider and taller than
2 px; otherwise pixels. Rules, each refused with a stable :attr:`PoseError.code`:

- confidences in [0, 1], rounded to 4 places before anything asks "is it visible?"; a missing
  keypoint (confidence 0) is written ``[0, 0, 0]``; coordinates are rounded to 3 places (1/1000 px);
- every frame has a person with at least one confident keypoint (``{"people": []}`` and all-zero
  frames are ``pose_empty_frame``), spread over at least :attr:`PoseLimits.min_span` pixels
  (``pose_degenerate``: a pose at one point sizes nothing and draws no limb);
- a confident keypoint may leave the canvas (a hand out of frame) but by at most
  :attr:`PoseLimits.out_of_bounds_margin` canvas sizes;
- pixel coordinates need a canvas size (``pose_canvas_missing``); normalised coordinates without
  one are put on a :attr:`PoseLimits.normalized_canvas` square.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "KEYPOINT_NAMES",
    "NUM_KEYPOINTS",
    "POSE_ERROR_CODES",
    "POSE_LIMITS",
    "PoseError",
    "PoseLimits",
    "frame_span",
    "normalize_poses",
    "normalize_source_pose",
    "parse_pose_json",
]

NUM_KEYPOINTS = 18
KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "neck",
    "r_shoulder",
    "r_elbow",
    "r_wrist",
    "l_shoulder",
    "l_elbow",
    "l_wrist",
    "r_hip",
    "r_knee",
    "r_ankle",
    "l_hip",
    "l_knee",
    "l_ankle",
    "r_eye",
    "l_eye",
    "r_ear",
    "l_ear",
)


@dataclass(frozen=True)
class PoseLimits:
    """The limits of the pose format (frame-count bounds are the caller's: they follow the job)."""

    max_canvas: int = 16384
    """Largest canvas side in pixels."""
    out_of_bounds_margin: float = 1.0
    """A confident keypoint may lie this many canvas sizes outside the canvas, no further."""
    max_bytes: int = 4 * 1024 * 1024
    """Default cap on pose JSON text (the job settings' ``max_pose_bytes`` default)."""
    normalized_canvas: int = 512
    """Canvas side for normalised coordinates given without a canvas."""
    min_span: float = 2.0
    """A frame's confident keypoints must span at least this many pixels (x or y extent)."""
    confidence_decimals: int = 4
    coordinate_decimals: int = 3


POSE_LIMITS = PoseLimits()

POSE_ERROR_CODES = frozenset(
    {
        "pose_malformed",
        "pose_keypoint_count",
        "pose_not_numeric",
        "pose_not_finite",
        "pose_confidence",
        "pose_canvas_invalid",
        "pose_canvas_missing",
        "pose_canvas_inconsistent",
        "pose_frame_count",
        "pose_empty_frame",
        "pose_out_of_bounds",
        "pose_too_large",
        "pose_degenerate",
    }
)


class PoseError(ValueError):
    """A pose input that is refused; ``code`` is stable (one of :data:`POSE_ERROR_CODES`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------------
# JSON text


def parse_pose_json(text: str | bytes | bytearray | Path, *, max_bytes: int = POSE_LIMITS.max_bytes) -> Any:
    """JSON text (``str``, UTF-8 ``bytes`` or a file ``Path``) -> parsed value, with a size cap.

    Malformed, non-UTF-8 or deeply nested JSON is ``pose_malformed``; over ``max_bytes``,
    ``pose_too_large``.
    """
    if isinstance(text, Path):
        try:
            size = text.stat().st_size
            if size > max_bytes:
                raise PoseError("pose_too_large", f"pose JSON is larger than {max_bytes} bytes")
            text = text.read_bytes()
        except OSError as exc:
            raise PoseError("pose_malformed", f"cannot read pose file: {exc.strerror}") from None
    if len(text) > max_bytes:
        raise PoseError("pose_too_large", f"pose JSON is larger than {max_bytes} bytes")
    if isinstance(text, bytes | bytearray):
        kind = _binary_kind(bytes(text[:12]))
        if kind is not None:
            raise PoseError("pose_malformed", f"pose JSON looks like {kind}, not a JSON text file")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise PoseError("pose_malformed", "pose JSON is not UTF-8") from None
    if not isinstance(text, str):
        raise PoseError("pose_malformed", f"pose JSON must be text, got {type(text).__name__}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PoseError("pose_malformed", f"invalid pose JSON: {exc.msg} at line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:
        raise PoseError("pose_malformed", f"pose JSON does not parse: {str(exc)[:100]}") from None


_BINARY_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG", "a PNG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1a\x45\xdf\xa3", "a WebM/Matroska video"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
)


def _binary_kind(head: bytes) -> str | None:
    """What a binary file sent as pose JSON looks like (by its first bytes), or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV video"
    return next((kind for magic, kind in _BINARY_MAGIC if head.startswith(magic)), None)


def _load(obj: Any) -> Any:
    if isinstance(obj, str | bytes | bytearray | Path):
        return parse_pose_json(obj)
    if isinstance(obj, tuple):
        return list(obj)
    return obj


# --------------------------------------------------------------------------------------------------
# Values


def _number(value: Any, where: str) -> float:
    # bool is an int subclass; a keypoint of `true` is a client bug, not a coordinate.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PoseError("pose_not_numeric", f"{where} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer literal beyond float range (1 followed by 400 zeros)
        number = math.inf
    if not math.isfinite(number):
        raise PoseError("pose_not_finite", f"{where} is not a finite number")
    return number


def _canvas_dim(value: Any, where: str, limits: PoseLimits) -> int:
    bad = PoseError("pose_canvas_invalid", f"{where} must be an integer in 1..{limits.max_canvas}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise bad
    # Compare before converting: a huge integer would overflow float().
    if isinstance(value, numbers.Integral):
        if not 1 <= int(value) <= limits.max_canvas:
            raise bad
        return int(value)
    number = float(value)
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= limits.max_canvas:
        raise bad
    return int(number)


def _canvas(
    obj: dict[str, Any], w_key: str, h_key: str, where: str, limits: PoseLimits
) -> tuple[int, int] | None:
    has_w, has_h = w_key in obj, h_key in obj
    if not has_w and not has_h:
        return None
    if has_w != has_h:
        raise PoseError("pose_canvas_invalid", f"{where}: give both {w_key!r} and {h_key!r}")
    return (
        _canvas_dim(obj[w_key], f"{where}.{w_key}", limits),
        _canvas_dim(obj[h_key], f"{where}.{h_key}", limits),
    )


def _keypoints(values: Any, where: str) -> list[list[float]]:
    """18 ``[x, y, c]`` triples, 18 ``[x, y]`` pairs (c = 1) or 54 flat numbers -> 18 triples."""
    if not isinstance(values, list | tuple):
        raise PoseError("pose_malformed", f"{where} must be a list of keypoints")
    if values and all(isinstance(v, list | tuple) for v in values):
        if len(values) != NUM_KEYPOINTS:
            raise PoseError(
                "pose_keypoint_count",
                f"{where} has {len(values)} keypoints; expected {NUM_KEYPOINTS} (COCO-18)",
            )
        points = []
        for j, point in enumerate(values):
            if len(point) not in (2, 3):
                raise PoseError("pose_malformed", f"{where}[{j}] must be [x, y] or [x, y, c]")
            xyc = [_number(v, f"{where}[{j}]") for v in point]
            points.append(xyc if len(xyc) == 3 else [*xyc, 1.0])
        return points
    if any(isinstance(v, list | tuple | dict) for v in values):
        raise PoseError("pose_malformed", f"{where} mixes numbers and lists; expected [x, y, c] keypoints")
    if len(values) != NUM_KEYPOINTS * 3:
        raise PoseError(
            "pose_keypoint_count",
            f"{where} has {len(values)} numbers; expected {NUM_KEYPOINTS * 3} "
            f"({NUM_KEYPOINTS} keypoints x (x, y, c))",
        )
    flat = [_number(v, f"{where}[{i}]") for i, v in enumerate(values)]
    return [flat[i : i + 3] for i in range(0, len(flat), 3)]


def _openpose_frame(
    obj: Any, where: str, limits: PoseLimits
) -> tuple[list[list[float]], tuple[int, int] | None]:
    if not isinstance(obj, dict):
        raise PoseError("pose_malformed", f"{where} must be an OpenPose frame object")
    people = obj.get("people")
    if not isinstance(people, list):
        raise PoseError("pose_malformed", f"{where}.people must be a list")
    if not people:
        raise PoseError("pose_empty_frame", f"{where} has no people")
    person = people[0]
    if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
        raise PoseError("pose_malformed", f"{where}.people[0] has no pose_keypoints_2d")
    points = _keypoints(person["pose_keypoints_2d"], f"{where}.people[0].pose_keypoints_2d")
    return points, _canvas(obj, "canvas_width", "canvas_height", where, limits)


def _check_count(count: int, min_frames: int, max_frames: int) -> None:
    if not min_frames <= count <= max_frames:
        raise PoseError("pose_frame_count", f"poses has {count} frames; allowed {min_frames}..{max_frames}")


def _split(
    obj: Any, min_frames: int, max_frames: int, limits: PoseLimits
) -> tuple[list[list[list[float]]], tuple[int, int] | None, Any]:
    """Frames (keypoint triples), the canvas and the ``units`` of any accepted input shape."""
    if isinstance(obj, dict) and ("frames" in obj or "keypoints" in obj):
        if "frames" in obj:
            raw = obj["frames"]
            if not isinstance(raw, list | tuple):
                raise PoseError("pose_malformed", "poses.frames must be a list")
            where = "poses.frames[{}]"
        else:
            raw, where = [obj["keypoints"]], "poses.keypoints{}"
        _check_count(len(raw), min_frames, max_frames)
        canvas = _canvas(obj, "width", "height", "poses", limits)
        frames = [_keypoints(f, where.format(i if "frames" in obj else "")) for i, f in enumerate(raw)]
        return frames, canvas, obj.get("units")
    if isinstance(obj, dict) and "people" in obj:
        _check_count(1, min_frames, max_frames)
        points, canvas = _openpose_frame(obj, "poses", limits)
        return [points], canvas, None
    if isinstance(obj, list):
        _check_count(len(obj), min_frames, max_frames)
        frames, canvases = [], set()
        for i, item in enumerate(obj):
            points, canvas = _openpose_frame(item, f"poses[{i}]", limits)
            frames.append(points)
            if canvas is not None:
                canvases.add(canvas)
        if len(canvases) > 1:
            listed = ", ".join(f"{w}x{h}" for w, h in sorted(canvases))
            raise PoseError("pose_canvas_inconsistent", f"frames have different canvas sizes: {listed}")
        return frames, (canvases.pop() if canvases else None), None
    raise PoseError(
        "pose_malformed",
        "unrecognised pose JSON: expected an OpenPose frame ({'people': [...]}), a list of them, "
        "or the compact form ({'width', 'height', 'frames'})",
    )


def frame_span(frame: list[list[float]]) -> float:
    """Extent (the larger of the x and y ranges) of a frame's confident keypoints; 0 for fewer than two."""
    xs = [p[0] for p in frame if p[2] > 0]
    ys = [p[1] for p in frame if p[2] > 0]
    if len(xs) < 2:
        return 0.0
    return max(max(xs) - min(xs), max(ys) - min(ys))


# --------------------------------------------------------------------------------------------------
# Public entry points


def normalize_poses(
    obj: Any, *, max_frames: int, min_frames: int = 1, limits: PoseLimits = POSE_LIMITS
) -> dict[str, Any]:
    """Validate any accepted pose input; return it in the canonical compact pixel form.

    ``obj``: parsed JSON, or JSON text / bytes / ``Path`` (read with :func:`parse_pose_json` and the
    default size cap). Raises :class:`PoseError`.
    """
    frames, canvas, units = _split(_load(obj), min_frames, max_frames, limits)
    if units not in (None, "pixels", "normalized"):
        raise PoseError("pose_malformed", "poses.units must be 'pixels' or 'normalized'")
    c_places, xy_places = limits.confidence_decimals, limits.coordinate_decimals
    for i, frame in enumerate(frames):
        for j, point in enumerate(frame):
            if not 0.0 <= point[2] <= 1.0:
                raise PoseError("pose_confidence", f"frame {i} keypoint {j}: confidence must be in [0, 1]")
            # Rounded as stored, before anything asks "is it visible?": a confidence that rounds to
            # 0 is missing here exactly as it will be everywhere downstream.
            point[2] = round(point[2], c_places)
        if not any(p[2] > 0 for p in frame):
            raise PoseError("pose_empty_frame", f"frame {i} has no confident keypoint")
    if units is None:
        small = canvas is not None and min(canvas) <= 2
        # No pose fits in one pixel: coordinates all within [0, 1] are normalised.
        units = (
            "normalized"
            if not small and all(0.0 <= v <= 1.0 for f in frames for p in f if p[2] > 0 for v in p[:2])
            else "pixels"
        )
    if canvas is None:
        if units == "pixels":
            raise PoseError(
                "pose_canvas_missing",
                "pixel coordinates need a canvas size (canvas_width/canvas_height or width/height)",
            )
        canvas = (limits.normalized_canvas, limits.normalized_canvas)
    width, height = canvas
    sx, sy = (float(width), float(height)) if units == "normalized" else (1.0, 1.0)
    margin = limits.out_of_bounds_margin
    out_frames = []
    for i, frame in enumerate(frames):
        out = []
        for j, (x, y, c) in enumerate(frame):
            if c <= 0:
                out.append([0.0, 0.0, 0.0])
                continue
            px, py = x * sx, y * sy
            if not (
                -margin * width <= px <= (1 + margin) * width
                and -margin * height <= py <= (1 + margin) * height
            ):
                raise PoseError(
                    "pose_out_of_bounds",
                    f"frame {i} keypoint {j} ({x}, {y}) lies far outside the {width}x{height} canvas",
                )
            out.append([round(px, xy_places) + 0.0, round(py, xy_places) + 0.0, c])
        if frame_span(out) < limits.min_span:
            raise PoseError(
                "pose_degenerate",
                f"frame {i}: the confident keypoints span less than {limits.min_span:g} px "
                "(a pose needs at least two distinct points)",
            )
        out_frames.append(out)
    return {"width": width, "height": height, "units": "pixels", "frames": out_frames}


def normalize_source_pose(obj: Any, *, limits: PoseLimits = POSE_LIMITS) -> dict[str, Any]:
    """A source pose: exactly one frame, in any accepted form."""
    return normalize_poses(obj, max_frames=1, limits=limits)
