"""The OpenPose ControlNet conditioning image: the v1.1 annotator's ``draw_bodypose`` without OpenCV.

Limbs as filled ellipses and joints as discs, in the annotator's colours, reproduced pixel for pixel
(OpenCV's ``ellipse2Poly``, ``fillConvexPoly`` and ``circle`` re-implemented in numpy).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from engine.poses.pose import LIMBS, Pose

__all__ = ["KEYPOINT_COLORS", "LIMB_COLORS", "render_pose"]

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
# The annotator's stick half-width and joint radius, tuned for a 512-px canvas.
_REFERENCE_SIZE = 512
_STICKWIDTH = 4
_JOINT_RADIUS = 4
_JOINT_DIM = 0.6


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
        # initial= keeps a polygon with no slanted edge (all vertices on one row: a zero-length limb
        # on a small canvas) from reducing an empty array; its row comes from the flat edges below.
        left = np.where(on_edge, xs, np.inf).min(axis=0, initial=np.inf)
        right = np.where(on_edge, xs, -np.inf).max(axis=0, initial=-np.inf)
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
