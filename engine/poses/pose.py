"""Whole-body poses: COCO-18 OpenPose body keypoints, optional hands and face, canvas geometry.

A :class:`Pose` holds 18 body keypoints ``(x, y, confidence)`` in *pixel* coordinates of a
``width`` x ``height`` canvas; confidence 0 means the keypoint is missing. It may also carry the
two hands (``hands``: (2, 21, 3), left then right, OpenPose hand order) and the face (``face``:
(70, 3), the 68 iBUG points then the two pupils), in the same pixel coordinates. Parsing is
:mod:`engine.inputs.poseformat`'s (the one pose-format parser, shared with the API): ``from_json`` reads
its canonical compact pixel form. The ControlNet rendering is :mod:`engine.poses.render`, the drawn body
mask :func:`engine.method.masks.pose_mask`. Only numpy is imported (no torch, no PIL).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np

from engine.inputs.poseformat import (
    FACE_KEYPOINTS,
    HAND_KEYPOINTS,
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    PoseError,
    normalize_poses,
    normalize_source_pose,
)

__all__ = [
    "FACE_KEYPOINTS",
    "HAND_EDGES",
    "HAND_KEYPOINTS",
    "KEYPOINT_NAMES",
    "LIMBS",
    "NUM_KEYPOINTS",
    "Pose",
    "PoseError",
    "PoseSequence",
    "fit_transform",
]

# The annotator's limbSeq (1-indexed there), in its drawing order: limb i is drawn in
# engine.poses.render.LIMB_COLORS[i].
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (1, 5),
    (2, 3),
    (3, 4),
    (5, 6),
    (6, 7),
    (1, 8),
    (8, 9),
    (9, 10),
    (1, 11),
    (11, 12),
    (12, 13),
    (1, 0),
    (0, 14),
    (14, 16),
    (0, 15),
    (15, 17),
)
# The annotator's hand edges (OpenPose hand order: wrist 0, then 4 points per finger from the thumb);
# edge i is drawn in hue i / 20.
HAND_EDGES: tuple[tuple[int, int], ...] = tuple(
    (0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5) for j in range(4)
)
DEFAULT_MAX_FRAMES = 300

Units = Literal["pixels", "normalized"]


def fit_transform(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[float, float, float]:
    """Geometry of ``PIL.ImageOps.fit(image, (dst_w, dst_h), centering=(0.5, 0.5))``.

    Scale to cover the destination, then centre-crop. Returns ``(scale, offset_x, offset_y)`` such
    that a source pixel coordinate ``(x, y)`` lands at ``(x * scale + offset_x, y * scale + offset_y)``
    in the destination, so an image and its pose can be mapped identically.
    """
    for value in (src_w, src_h, dst_w, dst_h):
        if not value > 0:
            raise PoseError(
                "pose_canvas_invalid",
                f"canvas sizes must be positive, got {src_w}x{src_h} -> {dst_w}x{dst_h}",
            )
    # Same arithmetic and branch order as ImageOps.fit, so the crop box matches to the last bit.
    src_ratio = src_w / src_h
    dst_ratio = dst_w / dst_h
    if src_ratio == dst_ratio:
        crop_w, crop_h = float(src_w), float(src_h)
    elif src_ratio >= dst_ratio:
        crop_w, crop_h = dst_ratio * src_h, float(src_h)
    else:
        crop_w, crop_h = float(src_w), src_w / dst_ratio
    crop_left = (src_w - crop_w) * 0.5
    crop_top = (src_h - crop_h) * 0.5
    scale = dst_w / crop_w
    return scale, -crop_left * scale, -crop_top * scale


MAX_CANVAS = 65536


def _canvas_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise PoseError("pose_canvas_invalid", f"{what} must be a positive integer, got {value!r}")
    # Compare before converting: a huge integer would overflow float() and math.isfinite().
    if not isinstance(value, numbers.Integral) and not math.isfinite(value):
        raise PoseError("pose_canvas_invalid", f"{what} must be a positive integer, got {value!r}")
    if value != int(value) or not 0 < value <= MAX_CANVAS:
        shown = repr(value) if abs(value) < 10**12 else "a huge number"
        raise PoseError(
            "pose_canvas_invalid", f"{what} must be a positive integer up to {MAX_CANVAS}, got {shown}"
        )
    return int(value)


@dataclass(frozen=True, eq=False)
class Pose:
    """One body pose on a ``width`` x ``height`` pixel canvas.

    ``keypoints``: (18, 3) float64, rows in :data:`KEYPOINT_NAMES` order, columns ``(x, y, confidence)``,
    x/y in pixels, confidence in [0, 1]. A missing keypoint (confidence 0) is stored as ``(0, 0, 0)``
    so equal poses compare equal. The array is a read-only copy.

    ``hands``: ``None`` or (2, 21, 3), the left hand then the right; ``face``: ``None`` or (70, 3)
    (68 given are padded with two missing pupils). Same conventions; a part with no confident point
    is stored as ``None``, a hand that is missing next to a present one as zeros.
    """

    keypoints: np.ndarray
    width: int
    height: int
    hands: np.ndarray | None = None
    face: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", _canvas_size(self.width, "canvas width"))
        object.__setattr__(self, "height", _canvas_size(self.height, "canvas height"))
        try:
            kp = np.array(self.keypoints, dtype=np.float64)
        except (TypeError, ValueError):
            raise PoseError("pose_not_numeric", "keypoints must be numbers") from None
        if kp.shape != (NUM_KEYPOINTS, 3):
            raise PoseError(
                "pose_keypoint_count", f"keypoints must have shape ({NUM_KEYPOINTS}, 3), got {kp.shape}"
            )
        if not np.isfinite(kp).all():
            raise PoseError("pose_not_finite", "keypoints must be finite")
        conf = kp[:, 2]
        if (conf < 0).any() or (conf > 1).any():
            raise PoseError("pose_confidence", "keypoint confidence must be in [0, 1]")
        kp[conf == 0] = 0.0
        kp.setflags(write=False)
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "hands", _part(self.hands, (2, HAND_KEYPOINTS, 3), "hands"))
        object.__setattr__(self, "face", _part(self.face, (FACE_KEYPOINTS, 3), "face"))

    @property
    def has_hands(self) -> bool:
        return self.hands is not None

    @property
    def has_face(self) -> bool:
        return self.face is not None

    def parts(self) -> dict[str, np.ndarray]:
        """Every keypoint array this pose carries: ``body`` and, when present, ``hands``, ``face``."""
        out = {"body": self.keypoints}
        if self.hands is not None:
            out["hands"] = self.hands
        if self.face is not None:
            out["face"] = self.face
        return out

    def map_points(
        self, scale: float, tx: float, ty: float, *, width: int | None = None, height: int | None = None
    ) -> Pose:
        """Every confident point of every part through ``(x, y) -> (scale x + tx, scale y + ty)``
        (hands and face move with the body); on this canvas unless ``width``/``height`` are given."""
        moved = {}
        for name, arr in self.parts().items():
            out = arr.copy()
            seen = out[..., 2] > 0
            out[..., 0] = np.where(seen, out[..., 0] * scale + tx, 0.0)
            out[..., 1] = np.where(seen, out[..., 1] * scale + ty, 0.0)
            moved[name] = out
        return Pose(
            moved["body"],
            self.width if width is None else width,
            self.height if height is None else height,
            hands=moved.get("hands"),
            face=moved.get("face"),
        )

    def without_parts(self, *, hands: bool = True, face: bool = True) -> Pose:
        """This pose without its hands (``hands=True``) and/or face (``face=True``)."""
        return Pose(
            self.keypoints,
            self.width,
            self.height,
            hands=None if hands else self.hands,
            face=None if face else self.face,
        )

    @property
    def visible(self) -> np.ndarray:
        """(18,) bool: confidence > 0."""
        return self.keypoints[:, 2] > 0

    def with_keypoints(
        self, keypoints: np.ndarray, *, width: int | None = None, height: int | None = None
    ) -> Pose:
        """A new pose with body ``keypoints`` (18, 3) and this pose's hands and face, on this canvas
        unless ``width``/``height`` are given."""
        return Pose(
            keypoints,
            self.width if width is None else width,
            self.height if height is None else height,
            hands=self.hands,
            face=self.face,
        )

    def to_canvas(self, width: int, height: int) -> Pose:
        """This pose mapped through :func:`fit_transform` onto a ``width`` x ``height`` canvas.

        Keypoints that land outside the new canvas keep their coordinates (a cropped-away hand is
        still where it is, just not drawn).
        """
        width = _canvas_size(width, "canvas width")
        height = _canvas_size(height, "canvas height")
        if (width, height) == (self.width, self.height):
            return self
        scale, ox, oy = fit_transform(self.width, self.height, width, height)
        return self.map_points(scale, ox, oy, width=width, height=height)

    def to_openpose(self) -> dict[str, Any]:
        """One OpenPose JSON frame: ``{"people": [{"pose_keypoints_2d": [54 numbers], ...}], "canvas_*"}``
        with ``hand_left_keypoints_2d``/``hand_right_keypoints_2d`` (63 numbers each) and
        ``face_keypoints_2d`` (210) when the pose has them."""
        person: dict[str, Any] = {"pose_keypoints_2d": self.keypoints.reshape(-1).tolist()}
        if self.hands is not None:
            person["hand_left_keypoints_2d"] = self.hands[0].reshape(-1).tolist()
            person["hand_right_keypoints_2d"] = self.hands[1].reshape(-1).tolist()
        if self.face is not None:
            person["face_keypoints_2d"] = self.face.reshape(-1).tolist()
        return {"people": [person], "canvas_width": self.width, "canvas_height": self.height}

    @classmethod
    def from_json(cls, data: Any) -> Pose:
        """Parse a single pose (e.g. the source pose ``p_s``): any form :meth:`PoseSequence.from_json`
        accepts holding exactly one frame, e.g. ``{"width", "height", "keypoints": [[x, y, c]] * 18}``
        (:func:`engine.inputs.poseformat.normalize_source_pose`)."""
        return PoseSequence.from_compact(normalize_source_pose(data))[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pose):
            return NotImplemented
        return (
            (self.width, self.height) == (other.width, other.height)
            and bool(np.array_equal(self.keypoints, other.keypoints))
            and _same_part(self.hands, other.hands)
            and _same_part(self.face, other.face)
        )

    def __hash__(self) -> int:
        parts = [None if a is None else a.tobytes() for a in (self.hands, self.face)]
        return hash((self.width, self.height, self.keypoints.tobytes(), *parts))

    def __repr__(self) -> str:
        extra = "".join(f", {name}" for name in ("hands", "face") if getattr(self, name) is not None)
        return (
            f"Pose({int(self.visible.sum())}/{NUM_KEYPOINTS} visible{extra}, "
            f"canvas={self.width}x{self.height})"
        )


def _same_part(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and bool(np.array_equal(a, b)))


def _part(values: Any, shape: tuple[int, ...], what: str) -> np.ndarray | None:
    """A validated read-only hand/face array, or ``None`` when absent or with no confident point."""
    if values is None:
        return None
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise PoseError("pose_not_numeric", f"{what} keypoints must be numbers") from None
    if what == "face" and arr.shape == (68, 3):
        arr = np.concatenate([arr, np.zeros((2, 3))])
    if arr.shape != shape:
        raise PoseError("pose_keypoint_count", f"{what} keypoints must have shape {shape}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise PoseError("pose_not_finite", f"{what} keypoints must be finite")
    conf = arr[..., 2]
    if (conf < 0).any() or (conf > 1).any():
        raise PoseError("pose_confidence", f"{what} keypoint confidence must be in [0, 1]")
    arr[conf == 0] = 0.0
    if not (conf > 0).any():
        return None
    arr.setflags(write=False)
    return arr


class PoseSequence(Sequence[Pose]):
    """An immutable, non-empty sequence of poses that share one canvas size."""

    __slots__ = ("_poses",)

    def __init__(self, poses: Iterable[Pose]) -> None:
        items = tuple(poses)
        if not items:
            raise PoseError("pose_frame_count", "pose sequence is empty")
        for i, pose in enumerate(items):
            if not isinstance(pose, Pose):
                raise PoseError("pose_malformed", f"frame {i}: expected a Pose, got {type(pose).__name__}")
        size = (items[0].width, items[0].height)
        for i, pose in enumerate(items):
            if (pose.width, pose.height) != size:
                raise PoseError(
                    "pose_canvas_inconsistent",
                    f"frame {i}: canvas {pose.width}x{pose.height} differs from {size[0]}x{size[1]}",
                )
        self._poses = items

    @property
    def poses(self) -> tuple[Pose, ...]:
        return self._poses

    @property
    def width(self) -> int:
        return self._poses[0].width

    @property
    def height(self) -> int:
        return self._poses[0].height

    def __len__(self) -> int:
        return len(self._poses)

    def __iter__(self) -> Iterator[Pose]:
        return iter(self._poses)

    @overload
    def __getitem__(self, index: int) -> Pose: ...

    @overload
    def __getitem__(self, index: slice) -> PoseSequence: ...

    def __getitem__(self, index: int | slice) -> Pose | PoseSequence:
        if isinstance(index, slice):
            return PoseSequence(self._poses[index])
        return self._poses[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoseSequence):
            return NotImplemented
        return self._poses == other._poses

    def __hash__(self) -> int:
        return hash(self._poses)

    def __repr__(self) -> str:
        return f"PoseSequence({len(self)} frames, canvas={self.width}x{self.height})"

    def with_parts(self, *, hands: bool, face: bool) -> PoseSequence:
        """Every pose keeping its hands only if ``hands`` and its face only if ``face``."""
        if hands and face:
            return self
        return PoseSequence(p.without_parts(hands=not hands, face=not face) for p in self._poses)

    def to_canvas(self, width: int, height: int) -> PoseSequence:
        """Every pose mapped with :meth:`Pose.to_canvas`."""
        return PoseSequence(p.to_canvas(width, height) for p in self._poses)

    def keypoints(self) -> np.ndarray:
        """(frames, 18, 3) float64 copy of all keypoints, pixel coordinates."""
        return np.stack([p.keypoints for p in self._poses])

    def to_compact(self, units: Units = "pixels") -> dict[str, Any]:
        """The compact form ``{"width", "height", "units", "frames": [[[x, y, c]] * 18, ...]}``."""
        if units not in ("pixels", "normalized"):
            raise PoseError("pose_malformed", f"units must be 'pixels' or 'normalized', got {units!r}")
        sx, sy = (self.width, self.height) if units == "normalized" else (1, 1)

        def scaled(arr: np.ndarray) -> list[Any]:
            out = arr.copy()
            out[..., 0] /= sx
            out[..., 1] /= sy
            return out.tolist()

        compact: dict[str, Any] = {
            "width": self.width,
            "height": self.height,
            "units": units,
            "frames": [scaled(p.keypoints) for p in self._poses],
        }
        if any(p.hands is not None for p in self._poses):
            compact["hands"] = [
                None if p.hands is None else [_hand_or_none(scaled(h)) for h in p.hands] for p in self._poses
            ]
        if any(p.face is not None for p in self._poses):
            compact["faces"] = [None if p.face is None else scaled(p.face) for p in self._poses]
        return compact

    def to_openpose(self) -> list[dict[str, Any]]:
        """A list of OpenPose JSON frames (see :meth:`Pose.to_openpose`)."""
        return [p.to_openpose() for p in self._poses]

    @classmethod
    def from_json(cls, data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES) -> PoseSequence:
        """Parse any accepted pose form with :func:`engine.inputs.poseformat.normalize_poses`.

        ``data``: parsed JSON (``dict``/``list``), JSON text (``str``/``bytes``) or a ``Path``: OpenPose
        frames, the compact form or the single-pose form, pixel or normalised coordinates. The rules
        and error codes are the pose format's (:class:`PoseError` with ``.code``).
        """
        return cls.from_compact(normalize_poses(data, max_frames=max_frames))

    @classmethod
    def from_compact(cls, compact: dict[str, Any]) -> PoseSequence:
        """From the canonical compact pixel form (already validated by the pose format)."""
        if compact.get("units", "pixels") != "pixels":
            raise PoseError("pose_malformed", "from_compact reads pixel coordinates only")
        width, height = compact["width"], compact["height"]
        frames = compact["frames"]
        hands = compact.get("hands") or [None] * len(frames)
        faces = compact.get("faces") or [None] * len(frames)
        return cls(
            Pose(np.asarray(k, dtype=np.float64), width, height, hands=_hands_array(h), face=f)
            for k, h, f in zip(frames, hands, faces, strict=True)
        )


def _hand_or_none(hand: list[Any]) -> list[Any] | None:
    return hand if any(point[2] > 0 for point in hand) else None


def _hands_array(hands: Any) -> np.ndarray | None:
    """``[left | None, right | None]`` (compact form) -> (2, 21, 3) or ``None``."""
    if hands is None or all(h is None for h in hands):
        return None
    return np.stack(
        [np.zeros((HAND_KEYPOINTS, 3)) if h is None else np.asarray(h, dtype=np.float64) for h in hands]
    )
