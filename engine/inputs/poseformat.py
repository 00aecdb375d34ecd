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

from engine.inputs.errors import CodedRefusal, declare_codes

__all__ = [
    "BODY_LAYOUTS",
    "FACE_KEYPOINTS",
    "HAND_KEYPOINTS",
    "KEYPOINT_NAMES",
    "NUM_KEYPOINTS",
    "POSE_ERROR_CODES",
    "POSE_LIMITS",
    "PoseError",
    "PoseLimits",
    "derived_canvas",
    "frame_span",
    "normalize_poses",
    "normalize_source_pose",
    "parse_pose_json",
]

NUM_KEYPOINTS = 18
HAND_KEYPOINTS = 21
FACE_KEYPOINTS = 70
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


declare_codes(dict.fromkeys(POSE_ERROR_CODES, 422), owner="engine.inputs.poseformat")


class PoseError(CodedRefusal):
    """A pose input that is refused; ``code`` is stable (one of :data:`POSE_ERROR_CODES`)."""


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


# A frame while parsing: {"body": 18 triples, "hands": [left | None, right | None] | None,
# "face": 70 triples | None}.
Frame = dict[str, Any]

# Body layouts recognised by their keypoint count -> how each COCO-18 keypoint is read from them.
# An int is an index; a pair is the midpoint of two keypoints (visible only when both are).
BODY_25_TO_COCO_18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
COCO_17_TO_COCO_18: tuple[int | tuple[int, int], ...] = (
    0, (5, 6), 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3,
)  # fmt: skip
# COCO-WholeBody (133): 0-16 body (COCO-17), 17-22 feet, 23-90 face (68), 91-111 left hand, 112-132 right.
WHOLEBODY_FACE = slice(23, 91)
WHOLEBODY_LEFT_HAND = slice(91, 112)
WHOLEBODY_RIGHT_HAND = slice(112, 133)
BODY_LAYOUTS: dict[int, str] = {
    NUM_KEYPOINTS: "COCO-18 (OpenPose)",
    25: "BODY_25 (OpenPose)",
    17: "COCO-17 (ViTPose, RTMPose, YOLO-pose, MMPose)",
    133: "COCO-WholeBody (DWPose, RTMW)",
}
_HOW_TO_CONVERT = (
    "accepted: 18 (COCO-18), 25 (BODY_25), 17 (COCO-17) or 133 (COCO-WholeBody) keypoints per person; "
    "see docs/poses.md, or convert with `poseanimate poses convert FILE --to openpose`"
)


def _triples(values: Any, where: str, *, allowed: tuple[int, ...], what: str) -> list[list[float]]:
    """``[x, y, c]`` triples, ``[x, y]`` pairs (c = 1) or flat numbers (3 per point) -> triples;
    the point count must be one of ``allowed``."""
    if not isinstance(values, list | tuple):
        raise PoseError("pose_malformed", f"{where} must be a list of keypoints")
    counts = " or ".join(str(n) for n in allowed)
    if values and all(isinstance(v, list | tuple) for v in values):
        if len(values) not in allowed:
            raise PoseError(
                "pose_keypoint_count", f"{where} has {len(values)} {what} keypoints; expected {counts}"
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
    if len(values) % 3 or len(values) // 3 not in allowed:
        raise PoseError(
            "pose_keypoint_count",
            f"{where} has {len(values)} numbers; expected {' or '.join(str(3 * n) for n in allowed)} "
            f"({counts} {what} keypoints x (x, y, c))",
        )
    flat = [_number(v, f"{where}[{i}]") for i, v in enumerate(values)]
    return [flat[i : i + 3] for i in range(0, len(flat), 3)]


def _midpoint(a: list[float], b: list[float]) -> list[float]:
    if a[2] > 0 and b[2] > 0:
        return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2])]
    return [0.0, 0.0, 0.0]


def _body_frame(values: Any, where: str) -> Frame:
    """A body in any recognised layout (told apart by its keypoint count) -> a frame with the COCO-18
    body (and, from COCO-WholeBody, its face and hands)."""
    if not isinstance(values, list | tuple):
        raise PoseError("pose_malformed", f"{where} must be a list of keypoints")
    nested = bool(values) and all(isinstance(v, list | tuple) for v in values)
    if not nested and any(isinstance(v, list | tuple | dict) for v in values):
        raise PoseError("pose_malformed", f"{where} mixes numbers and lists; expected [x, y, c] keypoints")
    count = len(values) if nested else (len(values) // 3 if len(values) % 3 == 0 else None)
    if count not in BODY_LAYOUTS:
        seen = f"{len(values)} keypoints" if nested else f"{len(values)} numbers"
        if count is None:
            seen += ", not a whole number of (x, y, c) keypoints"
        raise PoseError("pose_keypoint_count", f"{where} has {seen}; " + _HOW_TO_CONVERT)
    points = _triples(values, where, allowed=tuple(BODY_LAYOUTS), what="body")
    n = len(points)
    frame: Frame = {"body": points, "hands": None, "face": None}
    if n == 25:
        frame["body"] = [points[i] for i in BODY_25_TO_COCO_18]
    elif n in (17, 133):
        frame["body"] = [
            _midpoint(points[i[0]], points[i[1]]) if isinstance(i, tuple) else points[i]
            for i in COCO_17_TO_COCO_18
        ]
        if n == 133:
            face = points[WHOLEBODY_FACE] + [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
            hands = [points[WHOLEBODY_LEFT_HAND], points[WHOLEBODY_RIGHT_HAND]]
            _with_parts(
                frame,
                [h if any(p[2] > 0 for p in h) else None for h in hands],
                face if any(p[2] > 0 for p in face) else None,
            )
    return frame


def _hand(values: Any, where: str) -> list[list[float]] | None:
    """An OpenPose hand (21 keypoints, 63 numbers); ``None`` when empty or all missing."""
    if values is None or (isinstance(values, list | tuple) and not values):
        return None
    points = _triples(values, where, allowed=(HAND_KEYPOINTS,), what="hand")
    return points if any(p[2] > 0 for p in points) else None


def _face(values: Any, where: str) -> list[list[float]] | None:
    """An OpenPose face (70 keypoints; 68 without pupils); ``None`` when empty or all missing."""
    if values is None or (isinstance(values, list | tuple) and not values):
        return None
    points = _triples(values, where, allowed=(FACE_KEYPOINTS, 68), what="face")
    if len(points) == 68:
        points += [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    return points if any(p[2] > 0 for p in points) else None


def _with_parts(frame: Frame, hands: list[Any] | None, face: list[list[float]] | None) -> Frame:
    if hands is not None and any(h is not None for h in hands):
        frame["hands"] = hands
    if face is not None:
        frame["face"] = face
    return frame


def _person(person: Any, where: str) -> Frame:
    """One OpenPose person: ``pose_keypoints_2d`` plus optional hands and face."""
    if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
        raise PoseError("pose_malformed", f"{where} has no pose_keypoints_2d")
    frame = _body_frame(person["pose_keypoints_2d"], f"{where}.pose_keypoints_2d")
    hands = [
        _hand(person.get("hand_left_keypoints_2d"), f"{where}.hand_left_keypoints_2d"),
        _hand(person.get("hand_right_keypoints_2d"), f"{where}.hand_right_keypoints_2d"),
    ]
    return _with_parts(frame, hands, _face(person.get("face_keypoints_2d"), f"{where}.face_keypoints_2d"))


def _instance(obj: dict[str, Any], where: str) -> Frame:
    """A COCO annotation (``keypoints`` flat with visibility flags 0/1/2, optional COCO-WholeBody
    ``face_kpts``/``lefthand_kpts``/``righthand_kpts``) or an MMPose instance (``keypoints`` as
    [x, y] pairs with ``keypoint_scores``)."""
    values = obj["keypoints"]
    scores = obj.get("keypoint_scores")
    if scores is not None:
        if (
            not isinstance(values, list | tuple)
            or not isinstance(scores, list | tuple)
            or len(scores) != len(values)
        ):
            raise PoseError("pose_malformed", f"{where}.keypoint_scores must match {where}.keypoints")
        values = [
            [
                *list(p if isinstance(p, list | tuple) else [p])[:2],
                _number(c, f"{where}.keypoint_scores[{i}]"),
            ]
            for i, (p, c) in enumerate(zip(values, scores, strict=True))
        ]
    frame = _body_frame(values, f"{where}.keypoints")
    coco_flags = scores is None and all(p[2] in (0.0, 1.0, 2.0) for p in frame["body"])
    parts: dict[str, Any] = {}
    for key, what in (("lefthand_kpts", "hand"), ("righthand_kpts", "hand"), ("face_kpts", "face")):
        if key in obj:
            parts[key] = (_hand if what == "hand" else _face)(obj[key], f"{where}.{key}")
    if parts:
        frame = _with_parts(
            frame, [parts.get("lefthand_kpts"), parts.get("righthand_kpts")], parts.get("face_kpts")
        )
    if coco_flags:  # COCO's v: 0 = not labelled, 1 = labelled but hidden, 2 = visible -> confidence 1
        for points in _all_points(frame):
            for point in points:
                point[2] = 1.0 if point[2] > 0 else 0.0
    return frame


def _all_points(frame: Frame) -> list[list[list[float]]]:
    """The frame's point lists: body, each present hand, the face."""
    out = [frame["body"]]
    out += [h for h in (frame["hands"] or []) if h is not None]
    if frame["face"] is not None:
        out.append(frame["face"])
    return out


def _openpose_frame(obj: Any, where: str, limits: PoseLimits) -> tuple[Frame, tuple[int, int] | None]:
    if not isinstance(obj, dict):
        raise PoseError(
            "pose_malformed",
            f"{where} must be a frame object: an OpenPose frame ({{'people': [...]}}), a COCO annotation or "
            f"MMPose instance ({{'keypoints': [...]}}), got {type(obj).__name__}",
        )
    if "people" not in obj and "instances" in obj:  # MMPose: {"frame_id", "instances": [...]}
        instances = obj["instances"]
        if not isinstance(instances, list):
            raise PoseError("pose_malformed", f"{where}.instances must be a list")
        if not instances:
            raise PoseError("pose_empty_frame", f"{where} has no instances")
        if not isinstance(instances[0], dict) or "keypoints" not in instances[0]:
            raise PoseError("pose_malformed", f"{where}.instances[0] has no keypoints")
        frame = _instance(instances[0], f"{where}.instances[0]")
    elif "people" not in obj and "keypoints" in obj:
        frame = _instance(obj, where)
    else:
        frame = _person_of(obj, where)
    return frame, _canvas(obj, "canvas_width", "canvas_height", where, limits)


def _person_of(obj: dict[str, Any], where: str) -> Frame:
    people = obj.get("people")
    if not isinstance(people, list):
        seen = ", ".join(sorted(map(str, obj))[:6]) or "nothing"
        raise PoseError(
            "pose_malformed",
            f"{where} is not an OpenPose frame: {where}.people must be a list (saw keys: {seen})",
        )
    if not people:
        raise PoseError("pose_empty_frame", f"{where} has no people")
    return _person(people[0], f"{where}.people[0]")


def _check_count(count: int, min_frames: int, max_frames: int) -> None:
    if not min_frames <= count <= max_frames:
        raise PoseError("pose_frame_count", f"poses has {count} frames; allowed {min_frames}..{max_frames}")


def _compact_parts(obj: dict[str, Any], frames: list[Frame]) -> None:
    """The compact form's optional ``hands`` ([[left | null, right | null] | null] per frame) and
    ``faces`` ([70 or 68 keypoints | null] per frame)."""
    for key in ("hands", "faces"):
        if obj.get(key) is None:
            continue
        raw = obj[key]
        if not isinstance(raw, list | tuple) or len(raw) != len(frames):
            raise PoseError("pose_malformed", f"poses.{key} must be a list with one entry per frame")
        for i, (item, frame) in enumerate(zip(raw, frames, strict=True)):
            if item is None:
                continue
            if key == "faces":
                frame["face"] = _face(item, f"poses.faces[{i}]")
                continue
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise PoseError(
                    "pose_malformed", f"poses.hands[{i}] must be [left, right] (each a hand or null)"
                )
            _with_parts(frame, [_hand(h, f"poses.hands[{i}][{s}]") for s, h in enumerate(item)], None)


def _coco_dataset(obj: dict[str, Any]) -> tuple[list[Any], tuple[int, int] | None]:
    """A COCO keypoints file ``{"images": [...], "annotations": [...]}``: its annotations in image
    order (the first per image), and the first image's size."""
    annotations = obj.get("annotations")
    if not isinstance(annotations, list):
        raise PoseError("pose_malformed", "poses.annotations must be a list")
    images = obj.get("images") if isinstance(obj.get("images"), list) else []
    order = {img.get("id"): i for i, img in enumerate(images) if isinstance(img, dict)}
    first: dict[Any, Any] = {}
    for ann in annotations:
        if isinstance(ann, dict):
            first.setdefault(ann.get("image_id"), ann)
    items = sorted(first.items(), key=lambda kv: order.get(kv[0], len(order)))
    canvas = None
    if images and isinstance(images[0], dict) and "width" in images[0] and "height" in images[0]:
        canvas = (
            _canvas_dim(images[0]["width"], "poses.images[0].width", POSE_LIMITS),
            _canvas_dim(images[0]["height"], "poses.images[0].height", POSE_LIMITS),
        )
    return [ann for _, ann in items], canvas


def _split(
    obj: Any, min_frames: int, max_frames: int, limits: PoseLimits
) -> tuple[list[Frame], tuple[int, int] | None, Any]:
    """Frames, the canvas and the ``units`` of any accepted input shape."""
    if (
        isinstance(obj, dict)
        and ("frames" in obj or "keypoints" in obj)
        and "people" not in obj
        and ("frames" in obj or "width" in obj or "units" in obj)
    ):
        if "frames" in obj:
            raw = obj["frames"]
            if not isinstance(raw, list | tuple):
                raise PoseError("pose_malformed", "poses.frames must be a list")
            where = "poses.frames[{}]"
        else:
            raw, where = [obj["keypoints"]], "poses.keypoints{}"
        _check_count(len(raw), min_frames, max_frames)
        canvas = _canvas(obj, "width", "height", "poses", limits)
        frames = [_body_frame(f, where.format(i if "frames" in obj else "")) for i, f in enumerate(raw)]
        _compact_parts(obj, frames)
        return frames, canvas, obj.get("units")
    if isinstance(obj, dict) and "annotations" in obj:
        items, canvas = _coco_dataset(obj)
        _check_count(len(items), min_frames, max_frames)
        return [_instance(a, f"poses.annotations[{i}]") for i, a in enumerate(items)], canvas, None
    if isinstance(obj, dict) and ("people" in obj or "keypoints" in obj or "instances" in obj):
        _check_count(1, min_frames, max_frames)
        frame, canvas = _openpose_frame(obj, "poses", limits)
        return [frame], canvas, None
    if isinstance(obj, list):
        _check_count(len(obj), min_frames, max_frames)
        frames, canvases = [], set()
        for i, item in enumerate(obj):
            frame, canvas = _openpose_frame(item, f"poses[{i}]", limits)
            frames.append(frame)
            if canvas is not None:
                canvases.add(canvas)
        if len(canvases) > 1:
            listed = ", ".join(f"{w}x{h}" for w, h in sorted(canvases))
            raise PoseError("pose_canvas_inconsistent", f"frames have different canvas sizes: {listed}")
        return frames, (canvases.pop() if canvases else None), None
    seen = (
        f"an object with keys {', '.join(sorted(map(str, obj))[:6])}"
        if isinstance(obj, dict)
        else (f"a {type(obj).__name__}")
    )
    raise PoseError(
        "pose_malformed",
        f"unrecognised pose JSON ({seen}): expected an OpenPose frame ({{'people': [...]}}) or a list of them "
        "(ComfyUI POSE_KEYPOINT), COCO keypoints ({'annotations': [...]}) or annotations, MMPose "
        "instances, or the compact form ({'width', 'height', 'frames'}); see docs/poses.md",
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
    obj: Any,
    *,
    max_frames: int,
    min_frames: int = 1,
    limits: PoseLimits = POSE_LIMITS,
    canvas: tuple[int, int] | None = None,
    derive_canvas: bool = True,
) -> dict[str, Any]:
    """Validate any accepted pose input; return it in the canonical compact pixel form.

    ``obj``: parsed JSON, or JSON text / bytes / ``Path`` (read with :func:`parse_pose_json` and the
    default size cap). Pixel coordinates without a canvas in the file are put on ``canvas`` when
    given, else, with ``derive_canvas``, on the smallest canvas from the origin that holds every
    confident point (:func:`derived_canvas`: right for target poses, which PATA re-places on the
    character anyway, so the canvas cannot change the result), else refused. Raises
    :class:`PoseError`.
    """
    frames, file_canvas, units = _split(_load(obj), min_frames, max_frames, limits)
    if units not in (None, "pixels", "normalized"):
        raise PoseError("pose_malformed", "poses.units must be 'pixels' or 'normalized'")
    _check_confidences(frames, limits)
    points = [pt for f in frames for part in _all_points(f) for pt in part if pt[2] > 0]
    if units is None:
        small = file_canvas is not None and min(file_canvas) <= 2
        # No pose fits in one pixel: coordinates all within [0, 1] are normalised.
        units = (
            "normalized" if not small and all(0.0 <= v <= 1.0 for p in points for v in p[:2]) else "pixels"
        )
    if file_canvas is None:
        if units == "normalized":
            file_canvas = canvas or (limits.normalized_canvas, limits.normalized_canvas)
        elif canvas is not None:
            file_canvas = canvas
        elif derive_canvas:
            file_canvas = derived_canvas(points, limits)
        else:
            raise PoseError(
                "pose_canvas_missing",
                "pixel coordinates need a canvas size (canvas_width/canvas_height in each OpenPose frame, "
                "or width/height in the compact form)",
            )
    width, height = file_canvas
    sx, sy = (float(width), float(height)) if units == "normalized" else (1.0, 1.0)
    out_frames = [_to_pixels(frame, i, sx, sy, width, height, limits) for i, frame in enumerate(frames)]
    compact: dict[str, Any] = {
        "width": width,
        "height": height,
        "units": "pixels",
        "frames": [f["body"] for f in out_frames],
    }
    if any(f["hands"] is not None for f in out_frames):
        compact["hands"] = [f["hands"] for f in out_frames]
    if any(f["face"] is not None for f in out_frames):
        compact["faces"] = [f["face"] for f in out_frames]
    return compact


def derived_canvas(points: list[list[float]], limits: PoseLimits = POSE_LIMITS) -> tuple[int, int]:
    """The canvas for pixel points given without one: from the origin to one pixel past the
    furthest confident point on each axis (at least :attr:`PoseLimits.min_span`, at most
    :attr:`PoseLimits.max_canvas`)."""
    xs = [p[0] for p in points] or [0.0]
    ys = [p[1] for p in points] or [0.0]

    def side(top: float) -> int:
        return int(min(max(math.floor(top) + 1, math.ceil(limits.min_span), 1), limits.max_canvas))

    return side(max(xs)), side(max(ys))


def _check_confidences(frames: list[Frame], limits: PoseLimits) -> None:
    places = limits.confidence_decimals
    for i, frame in enumerate(frames):
        for part in _all_points(frame):
            for j, point in enumerate(part):
                if not 0.0 <= point[2] <= 1.0:
                    raise PoseError(
                        "pose_confidence", f"frame {i} keypoint {j}: confidence must be in [0, 1]"
                    )
                # Rounded as stored, before anything asks "is it visible?": a confidence that rounds
                # to 0 is missing here exactly as it will be everywhere downstream.
                point[2] = round(point[2], places)
        if not any(p[2] > 0 for p in frame["body"]):
            raise PoseError("pose_empty_frame", f"frame {i} has no confident keypoint")


def _to_pixels(
    frame: Frame, i: int, sx: float, sy: float, width: int, height: int, limits: PoseLimits
) -> Frame:
    """One frame in pixels, rounded, missing points zeroed, bounds and span checked."""
    margin, xy_places = limits.out_of_bounds_margin, limits.coordinate_decimals

    def convert(part: list[list[float]], what: str) -> list[list[float]]:
        out = []
        for j, (x, y, c) in enumerate(part):
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
                    f"frame {i} {what}keypoint {j} ({x}, {y}) lies far outside the {width}x{height} canvas",
                )
            out.append([round(px, xy_places) + 0.0, round(py, xy_places) + 0.0, c])
        return out

    body = convert(frame["body"], "")
    if frame_span(body) < limits.min_span:
        raise PoseError(
            "pose_degenerate",
            f"frame {i}: the confident keypoints span less than {limits.min_span:g} px "
            "(a pose needs at least two distinct points)",
        )
    hands = frame["hands"]
    face = frame["face"]
    return {
        "body": body,
        "hands": None
        if hands is None
        else [
            None if h is None else convert(h, f"{side} hand ")
            for h, side in zip(hands, ("left", "right"), strict=True)
        ],
        "face": None if face is None else convert(face, "face "),
    }


def normalize_source_pose(
    obj: Any, *, limits: PoseLimits = POSE_LIMITS, canvas: tuple[int, int] | None = None
) -> dict[str, Any]:
    """A source pose: exactly one frame, in any accepted form. It must match the character image,
    so pixel coordinates without a canvas in the file need ``canvas`` (the image's size); a canvas is
    never derived from the points."""
    return normalize_poses(obj, max_frames=1, limits=limits, canvas=canvas, derive_canvas=False)
