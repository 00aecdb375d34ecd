"""Body poses: COCO-18 OpenPose keypoints, canvas geometry and the ControlNet rendering.

A :class:`Pose` holds 18 keypoints ``(x, y, confidence)`` in *pixel* coordinates of a
``width`` x ``height`` canvas; confidence 0 means the keypoint is missing. Parsing is
:mod:`engine.poseformat`'s (the one pose-format parser, shared with the API): ``from_json`` reads
its canonical compact pixel form. Only numpy and PIL are imported (no torch).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import numpy as np
from PIL import Image, ImageDraw

from engine.poseformat import KEYPOINT_NAMES, NUM_KEYPOINTS, PoseError, normalize_poses, normalize_source_pose

__all__ = [
    "KEYPOINT_COLORS",
    "KEYPOINT_NAMES",
    "LIMBS",
    "LIMB_COLORS",
    "NUM_KEYPOINTS",
    "Pose",
    "PoseError",
    "PoseSequence",
    "fit_transform",
    "pose_mask",
    "render_pose",
]

# The annotator's limbSeq (1-indexed there), in its drawing order: limb i is drawn in LIMB_COLORS[i].
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
KEYPOINT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
)
LIMB_COLORS: tuple[tuple[int, int, int], ...] = KEYPOINT_COLORS[: len(LIMBS)]

DEFAULT_MAX_FRAMES = 300
# The annotator's stick half-width and joint radius, tuned for a 512-px canvas.
_REFERENCE_SIZE = 512
_STICKWIDTH = 4
_JOINT_RADIUS = 4
_JOINT_DIM = 0.6

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
    """

    keypoints: np.ndarray
    width: int
    height: int

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

    @property
    def visible(self) -> np.ndarray:
        """(18,) bool: confidence > 0."""
        return self.keypoints[:, 2] > 0

    def with_keypoints(
        self, keypoints: np.ndarray, *, width: int | None = None, height: int | None = None
    ) -> Pose:
        """A new pose with ``keypoints`` (18, 3), on this canvas unless ``width``/``height`` are given."""
        return Pose(
            keypoints,
            self.width if width is None else width,
            self.height if height is None else height,
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
        kp = self.keypoints.copy()
        kp[:, 0] = kp[:, 0] * scale + ox
        kp[:, 1] = kp[:, 1] * scale + oy
        return Pose(kp, width, height)

    def to_openpose(self) -> dict[str, Any]:
        """One OpenPose JSON frame: ``{"people": [{"pose_keypoints_2d": [54 numbers]}], "canvas_*"}``."""
        return {
            "people": [{"pose_keypoints_2d": self.keypoints.reshape(-1).tolist()}],
            "canvas_width": self.width,
            "canvas_height": self.height,
        }

    @classmethod
    def from_json(cls, data: Any) -> Pose:
        """Parse a single pose (e.g. the source pose ``p_s``): any form :meth:`PoseSequence.from_json`
        accepts holding exactly one frame, e.g. ``{"width", "height", "keypoints": [[x, y, c]] * 18}``
        (:func:`engine.poseformat.normalize_source_pose`)."""
        return PoseSequence.from_compact(normalize_source_pose(data))[0]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pose):
            return NotImplemented
        return (self.width, self.height) == (other.width, other.height) and bool(
            np.array_equal(self.keypoints, other.keypoints)
        )

    def __hash__(self) -> int:
        return hash((self.width, self.height, self.keypoints.tobytes()))

    def __repr__(self) -> str:
        return f"Pose({int(self.visible.sum())}/{NUM_KEYPOINTS} visible, canvas={self.width}x{self.height})"


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
        kp = self.keypoints()
        if units == "normalized":
            kp[..., 0] /= self.width
            kp[..., 1] /= self.height
        return {"width": self.width, "height": self.height, "units": units, "frames": kp.tolist()}

    def to_openpose(self) -> list[dict[str, Any]]:
        """A list of OpenPose JSON frames (see :meth:`Pose.to_openpose`)."""
        return [p.to_openpose() for p in self._poses]

    @classmethod
    def from_json(cls, data: Any, *, max_frames: int = DEFAULT_MAX_FRAMES) -> PoseSequence:
        """Parse any accepted pose form with :func:`engine.poseformat.normalize_poses`.

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
        return cls(Pose(np.asarray(k, dtype=np.float64), width, height) for k in compact["frames"])


# --------------------------------------------------------------------------------------------------
# Rendering


_SIN_TABLE = np.sin(np.radians(np.arange(451))).astype(np.float32)


def _ellipse_poly(
    center: tuple[int, int], axes: tuple[int, int], angle: int, delta: int = 1
) -> list[tuple[int, int]]:
    """``cv2.ellipse2Poly(center, axes, angle, 0, 360, delta)``: integer polygon vertices."""
    angle %= 360
    # OpenCV reads sines from a float32 table of whole degrees; matching it keeps vertices identical.
    alpha, beta = float(_SIN_TABLE[450 - angle]), float(_SIN_TABLE[angle])
    t = np.arange(0, 360 + delta, delta).clip(max=360)
    x = axes[0] * _SIN_TABLE[450 - t].astype(np.float64)
    y = axes[1] * _SIN_TABLE[t].astype(np.float64)
    # OpenCV's cvRound rounds halves to even, like np.rint.
    px = np.rint(center[0] + x * alpha - y * beta).astype(int)
    py = np.rint(center[1] + x * beta + y * alpha).astype(int)
    pts: list[tuple[int, int]] = []
    for p in zip(px.tolist(), py.tolist(), strict=True):
        if not pts or p != pts[-1]:
            pts.append(p)
    return pts


def _line_pixels(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixels of OpenCV's 8-connected lines (``LineIterator``, left to right) between (n, 2) int
    endpoints, as flat (xs, ys)."""
    swap = end[:, 0] < start[:, 0]
    a = np.where(swap[:, None], end, start)
    b = np.where(swap[:, None], start, end)
    dx = b[:, 0] - a[:, 0]
    dy = np.abs(b[:, 1] - a[:, 1])
    sign = np.where(b[:, 1] >= a[:, 1], 1, -1)
    steep = dy > dx
    major = np.maximum(dx, dy)[:, None]
    minor = np.minimum(dx, dy)[:, None]
    k = np.arange(int(major.max()) + 1)[None, :]  # (1, steps)
    # Closed form of OpenCV's error-accumulator loop (err = dx - 2 dy, minor step while err < 0).
    steps = np.maximum((2 * k * minor + major - 1) // np.maximum(2 * major, 1), 0)  # (lines, steps)
    xs = a[:, 0:1] + np.where(steep[:, None], steps, k)
    ys = a[:, 1:2] + sign[:, None] * np.where(steep[:, None], k, steps)
    drawn = k <= major
    return xs[drawn], ys[drawn]


def _fill_convex_poly(pixels: np.ndarray, pts: list[tuple[int, int]], color: tuple[int, int, int]) -> None:
    """``cv2.fillConvexPoly(pixels, pts, color)`` (8-connected, no shift) on (H, W, 3) uint8, in place.

    OpenCV fills each row between the rounded edge crossings and also strokes every edge with its
    8-connected line; PIL's polygon fill leaves out part of that outline.
    """
    h, w = pixels.shape[:2]
    p = np.asarray(pts, dtype=np.float64)  # (n, 2)
    q = np.roll(p, -1, axis=0)
    ys = np.arange(max(int(p[:, 1].min()), 0), min(int(p[:, 1].max()), h - 1) + 1)
    if len(ys) and len(p) >= 3:
        dy = q[:, 1] - p[:, 1]
        slanted = dy != 0
        t = (ys[None, :] - p[slanted, 1:2]) / dy[slanted, None]  # (edges, rows)
        on_edge = (t >= 0) & (t <= 1)
        xs = p[slanted, 0:1] + t * (q[slanted, 0:1] - p[slanted, 0:1])
        left = np.where(on_edge, xs, np.inf).min(axis=0)
        right = np.where(on_edge, xs, -np.inf).max(axis=0)
        for a, b in zip(p[~slanted], q[~slanted], strict=True):
            row = int(a[1]) - int(ys[0])
            if 0 <= row < len(ys):
                left[row] = min(left[row], a[0], b[0])
                right[row] = max(right[row], a[0], b[0])
        crossed = np.isfinite(left)
        x0 = max(int(p[:, 0].min()), 0)
        cols = np.arange(x0, max(min(int(p[:, 0].max()) + 1, w), x0))
        span = (cols[None, :] >= np.floor(left[crossed] + 0.5)[:, None]) & (
            cols[None, :] <= np.floor(right[crossed] + 0.5)[:, None]
        )  # (rows, cols)
        band = pixels[ys[crossed], x0 : x0 + len(cols)]
        band[span] = color
        pixels[ys[crossed], x0 : x0 + len(cols)] = band
    vertices = np.asarray(pts, dtype=np.int64)
    lx, ly = _line_pixels(np.roll(vertices, 1, axis=0), vertices)
    inside = (lx >= 0) & (lx < w) & (ly >= 0) & (ly < h)
    pixels[ly[inside], lx[inside]] = color


def _scaled(size: int, width: int, height: int) -> int:
    return max(1, round(size * min(width, height) / _REFERENCE_SIZE))


def render_pose(pose: Pose, width: int, height: int) -> Image.Image:
    """The OpenPose ControlNet conditioning image, RGB ``width`` x ``height``.

    Reproduces the ControlNet v1.1 annotator's ``draw_bodypose`` without OpenCV: limbs as filled ellipses
    (stick half-width 4 px at 512 px), the canvas dimmed to 60 %, then joints as radius-4 discs; both
    sizes scale with ``min(width, height) / 512``. The pose is first mapped with :meth:`Pose.to_canvas`.
    """
    pose = pose.to_canvas(width, height)
    stickwidth = _scaled(_STICKWIDTH, width, height)
    radius = _scaled(_JOINT_RADIUS, width, height)
    kp = pose.keypoints
    visible = pose.visible

    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    for i, (a, b) in enumerate(LIMBS):
        if not (visible[a] and visible[b]):
            continue
        (xa, ya), (xb, yb) = kp[a, :2], kp[b, :2]
        length = math.hypot(xa - xb, ya - yb)
        angle = math.degrees(math.atan2(ya - yb, xa - xb))
        # int() truncations mirror the annotator, so strokes land on the same pixels.
        center = (int((xa + xb) / 2), int((ya + yb) / 2))
        polygon = _ellipse_poly(center, (int(length / 2), stickwidth), int(angle))
        _fill_convex_poly(pixels, polygon, LIMB_COLORS[i])

    pixels = (pixels * _JOINT_DIM).astype(np.uint8)
    # cv2.circle's filled disc is exactly the pixels with dx^2 + dy^2 <= r^2; PIL's ellipse is fuller.
    offsets = np.arange(-radius, radius + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2  # (2r+1, 2r+1)
    for i in np.flatnonzero(visible):
        x, y = int(kp[i, 0]), int(kp[i, 1])
        x0, x1 = max(x - radius, 0), min(x + radius + 1, width)
        y0, y1 = max(y - radius, 0), min(y + radius + 1, height)
        if x0 >= x1 or y0 >= y1:
            continue
        inside = disc[y0 - (y - radius) : y1 - (y - radius), x0 - (x - radius) : x1 - (x - radius)]
        pixels[y0:y1, x0:x1][inside] = KEYPOINT_COLORS[i]
    return Image.fromarray(pixels, mode="RGB")


# --------------------------------------------------------------------------------------------------
# Body mask

_NECK, _R_SHOULDER, _L_SHOULDER, _R_HIP, _L_HIP = 1, 2, 5, 8, 11
_FACE = (0, 14, 15, 16, 17)
# Typical ratios of a segment to the neck-to-hip (torso) length, used to estimate the body size
# from whichever segments are visible.
_TORSO_EQUIVALENTS = (
    ((_NECK, _R_HIP), 1.0),
    ((_NECK, _L_HIP), 1.0),
    ((_R_SHOULDER, _L_SHOULDER), 1.0 / 0.75),
    ((_R_HIP, _L_HIP), 1.0 / 0.45),
    ((0, _NECK), 1.0 / 0.35),
)
# Limb thickness and head radius as fractions of the torso length.
_LIMB_WIDTH = 0.3
_HEAD_RADIUS = 0.3
_AUTO_DILATION = 0.1


def _torso_length(kp: np.ndarray, visible: np.ndarray, width: int, height: int) -> float:
    estimates = [
        ratio * float(np.hypot(*(kp[a, :2] - kp[b, :2])))
        for (a, b), ratio in _TORSO_EQUIVALENTS
        if visible[a] and visible[b]
    ]
    estimates = [e for e in estimates if e > 0]
    if estimates:
        return float(np.median(estimates))
    pts = kp[visible, :2]
    if len(pts) >= 2:
        extent = float(np.hypot(*(pts.max(axis=0) - pts.min(axis=0))))
        if extent > 0:
            return 0.5 * extent
    return 0.1 * min(width, height)


def _disc(draw: ImageDraw.ImageDraw, center: np.ndarray, radius: float) -> None:
    x, y = float(center[0]), float(center[1])
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)


def _capsule(draw: ImageDraw.ImageDraw, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """A segment thickened by ``radius`` on every side (round caps)."""
    _disc(draw, a, radius)
    _disc(draw, b, radius)
    d = b - a
    norm = float(np.hypot(*d))
    if norm == 0:
        return
    n = np.array([-d[1], d[0]]) / norm * radius
    corners = [a + n, b + n, b - n, a - n]
    draw.polygon([(float(p[0]), float(p[1])) for p in corners], fill=255)


def pose_mask(pose: Pose, width: int, height: int, *, dilation: float | None = None) -> np.ndarray:
    """A rough body mask drawn from the pose, (height, width) bool.

    Thick limbs (0.3 x the torso length), the shoulder-hip torso polygon (extended one torso length
    below the shoulders when both hips are missing) and a head disc around the visible face keypoints, all grown by ``dilation`` pixels (default 0.1 x the torso length). The
    torso length is estimated from whichever torso segments are visible. Used by MGDM as the frame
    mask before cross-attention maps exist. Non-empty whenever a visible keypoint lies on the canvas.
    """
    if dilation is not None and (not math.isfinite(dilation) or dilation < 0):
        raise PoseError(
            "pose_malformed", f"dilation must be a non-negative number of pixels, got {dilation!r}"
        )
    pose = pose.to_canvas(width, height)
    kp, visible = pose.keypoints, pose.visible
    canvas = Image.new("L", (width, height), 0)
    if not visible.any():
        return np.zeros((height, width), dtype=bool)
    draw = ImageDraw.Draw(canvas)
    torso = _torso_length(kp, visible, width, height)
    grow = _AUTO_DILATION * torso if dilation is None else float(dilation)
    radius = max(1.0, 0.5 * _LIMB_WIDTH * torso) + grow

    for i in np.flatnonzero(visible):
        _disc(draw, kp[i, :2], radius)
    for a, b in LIMBS:
        if visible[a] and visible[b]:
            _capsule(draw, kp[a, :2], kp[b, :2], radius)

    face = [i for i in _FACE if visible[i]]
    corners = [kp[i, :2] for i in (_R_SHOULDER, _L_SHOULDER, _L_HIP, _R_HIP) if visible[i]]
    if visible[_R_SHOULDER] and visible[_L_SHOULDER] and not (visible[_R_HIP] or visible[_L_HIP]):
        # Hips hidden or cropped (portraits): the torso still hangs below the shoulders, away from
        # the head, about one torso length.
        r_sh, l_sh = kp[_R_SHOULDER, :2], kp[_L_SHOULDER, :2]
        across = l_sh - r_sh
        down = np.array([-across[1], across[0]]) / max(float(np.hypot(*across)), 1e-6)
        up_hint = kp[face, :2].mean(axis=0) - (r_sh + l_sh) / 2 if face else np.array([0.0, -1.0])
        if float(down @ up_hint) > 0:
            down = -down
        corners = [r_sh, l_sh, l_sh + torso * down, r_sh + torso * down]
    elif visible[_NECK] and len(corners) == 2:
        corners.insert(0, kp[_NECK, :2])
    if len(corners) >= 3:
        draw.polygon([(float(p[0]), float(p[1])) for p in corners], fill=255)
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            _capsule(draw, a, b, radius)

    if face:
        pts = kp[face, :2]
        center = pts.mean(axis=0)
        spread = float(np.hypot(*(pts - center).T).max())
        _disc(draw, center, max(_HEAD_RADIUS * torso + grow, spread + radius))
    return np.asarray(canvas) > 0
