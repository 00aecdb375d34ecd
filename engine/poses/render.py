"""The OpenPose ControlNet conditioning image: the v1.1 annotator's ``draw_bodypose``,
``draw_handpose`` and ``draw_facepose`` ("openpose_full") without OpenCV.

Limbs as filled ellipses and joints as discs, in the annotator's colours; hand edges as 2-px lines
coloured by HSV hue ``i / 20`` with blue radius-4 joints; face points as white radius-3 discs. All
reproduced pixel for pixel on a 512-px canvas (OpenCV's ``ellipse2Poly``, ``fillConvexPoly`` with
and without sub-pixel shift, ``line`` and ``circle`` re-implemented in numpy / integer Python).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from engine.poses.pose import HAND_EDGES, LIMBS, Pose

__all__ = ["HAND_EDGE_COLORS", "KEYPOINT_COLORS", "LIMB_COLORS", "render_pose"]

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
# draw_handpose / draw_facepose at 512 px.
_HAND_LINE = 2
_HAND_JOINT_RADIUS = 4
_HAND_JOINT_COLOR = (0, 0, 255)
_FACE_RADIUS = 3
_FACE_COLOR = (255, 255, 255)


def _hsv_rgb255(hue: float) -> tuple[int, int, int]:
    """``matplotlib.colors.hsv_to_rgb([hue, 1, 1]) * 255`` as OpenCV stores it (rounded to even)."""
    i = int(hue * 6.0)
    f = hue * 6.0 - i
    rgb = [
        (1.0, f, 0.0),
        (1.0 - f, 1.0, 0.0),
        (0.0, 1.0, f),
        (0.0, 1.0 - f, 1.0),
        (f, 0.0, 1.0),
        (1.0, 0.0, 1.0 - f),
    ][i % 6]
    return tuple(min(max(round(c * 255), 0), 255) for c in rgb)  # type: ignore[return-value]


HAND_EDGE_COLORS: tuple[tuple[int, int, int], ...] = tuple(
    _hsv_rgb255(i / float(len(HAND_EDGES))) for i in range(len(HAND_EDGES))
)


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


def render_pose(pose: Pose, width: int, height: int, *, hands: bool = True, face: bool = True) -> Image.Image:
    """The OpenPose ControlNet conditioning image, RGB ``width`` x ``height``.

    Reproduces the ControlNet v1.1 annotator's ``draw_bodypose`` without OpenCV: limbs as filled ellipses
    (stick half-width 4 px at 512 px), the canvas dimmed to 60 %, then joints as radius-4 discs; then,
    when the pose has them and ``hands``/``face`` allow, ``draw_handpose`` (20 finger edges as 2-px
    lines, then blue radius-4 joints; left hand, then right) and ``draw_facepose`` (white radius-3
    discs). Every size (stick, line width, radii) scales with ``min(width, height) / 512``, so the
    image is the annotator's exactly at 512 px. The pose is first mapped with :meth:`Pose.to_canvas`.
    """
    pixels = _draw_body(pose.to_canvas(width, height), width, height)
    pose = pose.to_canvas(width, height)
    if hands and pose.hands is not None:
        _draw_hands(
            pixels, pose.hands, _scaled(_HAND_LINE, width, height), _scaled(_HAND_JOINT_RADIUS, width, height)
        )
    if face and pose.face is not None:
        _draw_points(pixels, pose.face, _scaled(_FACE_RADIUS, width, height), _FACE_COLOR)
    return Image.fromarray(pixels, mode="RGB")


def _draw_body(pose: Pose, width: int, height: int) -> np.ndarray:
    """``draw_bodypose`` on a black canvas: (H, W, 3) uint8."""
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
    return pixels


# --- draw_handpose / draw_facepose -----------------------------------------------------------------


def _annotator_xy(points: np.ndarray) -> list[tuple[int, int] | None]:
    """Each point as the annotator places it (``int(x)``, ``int(y)``), or ``None`` where it draws
    nothing: a missing point (stored at -1 there), or one whose integer x or y is below 1 (its
    ``x > eps`` test)."""
    out: list[tuple[int, int] | None] = []
    for x, y, c in points.tolist():
        xi, yi = int(x), int(y)
        out.append((xi, yi) if c > 0 and xi > 0.01 and yi > 0.01 else None)
    return out


def _disc(pixels: np.ndarray, center: tuple[int, int], radius: int, color: tuple[int, int, int]) -> None:
    """``cv2.circle(pixels, center, radius, color, thickness=-1)``: the pixels with
    ``dx^2 + dy^2 <= r^2``, clipped to the canvas."""
    h, w = pixels.shape[:2]
    x, y = center
    offsets = np.arange(-radius, radius + 1)
    disc = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2
    x0, x1 = max(x - radius, 0), min(x + radius + 1, w)
    y0, y1 = max(y - radius, 0), min(y + radius + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    inside = disc[y0 - (y - radius) : y1 - (y - radius), x0 - (x - radius) : x1 - (x - radius)]
    pixels[y0:y1, x0:x1][inside] = color


def _draw_points(pixels: np.ndarray, points: np.ndarray, radius: int, color: tuple[int, int, int]) -> None:
    for xy in _annotator_xy(points):
        if xy is not None:
            _disc(pixels, xy, radius, color)


def _draw_hands(pixels: np.ndarray, hands: np.ndarray, thickness: int, radius: int) -> None:
    for hand in hands:
        xy = _annotator_xy(hand)
        for i, (a, b) in enumerate(HAND_EDGES):
            if xy[a] is not None and xy[b] is not None:
                _thick_line(pixels, xy[a], xy[b], HAND_EDGE_COLORS[i], thickness)
        for point in xy:
            if point is not None:
                _disc(pixels, point, radius, _HAND_JOINT_COLOR)


# OpenCV's fixed-point drawing (imgproc/drawing.cpp): coordinates carry 16 fractional bits.
_XY_SHIFT = 16
_XY_ONE = 1 << _XY_SHIFT


def _tdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _put(pixels: np.ndarray, x: int, y: int, color: tuple[int, int, int]) -> None:
    h, w = pixels.shape[:2]
    if 0 <= x < w and 0 <= y < h:
        pixels[y, x] = color


def _thick_line(
    pixels: np.ndarray, p0: tuple[int, int], p1: tuple[int, int], color: tuple[int, int, int], thickness: int
) -> None:
    """``cv2.line(pixels, p0, p1, color, thickness)`` (8-connected, no shift)."""
    if thickness <= 1:
        lx, ly = _line_pixels(np.array([p0]), np.array([p1]))
        h, w = pixels.shape[:2]
        inside = (lx >= 0) & (lx < w) & (ly >= 0) & (ly < h)
        pixels[ly[inside], lx[inside]] = color
        return
    a = (p0[0] << _XY_SHIFT, p0[1] << _XY_SHIFT)
    b = (p1[0] << _XY_SHIFT, p1[1] << _XY_SHIFT)
    dx = (a[0] - b[0]) / _XY_ONE
    dy = (b[1] - a[1]) / _XY_ONE
    r = dx * dx + dy * dy
    odd = thickness & 1
    half = thickness << (_XY_SHIFT - 1)
    if abs(r) > np.finfo(np.float64).eps:
        r = (half + odd * _XY_ONE * 0.5) / math.sqrt(r)
        dpx, dpy = round(dy * r), round(dx * r)
        polygon = [
            (a[0] + dpx, a[1] + dpy),
            (a[0] - dpx, a[1] - dpy),
            (b[0] - dpx, b[1] - dpy),
            (b[0] + dpx, b[1] + dpy),
        ]
        _fill_convex_poly_shifted(pixels, polygon, color)
    cap = (half + (_XY_ONE >> 1)) >> _XY_SHIFT
    for end in (a, b):
        center = ((end[0] + (_XY_ONE >> 1)) >> _XY_SHIFT, (end[1] + (_XY_ONE >> 1)) >> _XY_SHIFT)
        _disc(pixels, center, cap, color)


def _clip_line(width: int, height: int, p1: list[int], p2: list[int]) -> bool:
    """OpenCV's ``clipLine`` on a (shifted) canvas, in place; False when the line misses it."""
    right, bottom = width - 1, height - 1

    def code(x: int, y: int) -> int:
        return (x < 0) + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    c1, c2 = code(*p1), code(*p2)
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            p1[0] += int((a - p1[1]) * (p2[0] - p1[0]) / (p2[1] - p1[1]))
            p1[1] = a
            c1 = (p1[0] < 0) + (p1[0] > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            p2[0] += int((a - p2[1]) * (p2[0] - p1[0]) / (p2[1] - p1[1]))
            p2[1] = a
            c2 = (p2[0] < 0) + (p2[0] > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                p1[1] += int((a - p1[0]) * (p2[1] - p1[1]) / (p2[0] - p1[0]))
                p1[0] = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                p2[1] += int((a - p2[0]) * (p2[1] - p1[1]) / (p2[0] - p1[0]))
                p2[0] = a
                c2 = 0
    return (c1 | c2) == 0


def _line2(
    pixels: np.ndarray, start: tuple[int, int], end: tuple[int, int], color: tuple[int, int, int]
) -> None:
    """OpenCV's ``Line2``: an 8-connected line between fixed-point (16-bit) endpoints."""
    h, w = pixels.shape[:2]
    p1, p2 = list(start), list(end)
    if not _clip_line(w << _XY_SHIFT, h << _XY_SHIFT, p1, p2):
        return
    dx, dy = p2[0] - p1[0], p2[1] - p1[1]
    ax, ay = abs(dx), abs(dy)
    if ax > ay:
        if dx < 0:
            dy = -dy
            p1, p2 = p2, p1
        x_step, y_step = _XY_ONE, _tdiv(dy * _XY_ONE, ax | 1)
        ecount = (p2[0] - p1[0]) >> _XY_SHIFT
    else:
        if dy < 0:
            dx = -dx
            p1, p2 = p2, p1
        x_step, y_step = _tdiv(dx * _XY_ONE, ay | 1), _XY_ONE
        ecount = (p2[1] - p1[1]) >> _XY_SHIFT
    x, y = p1[0] + (_XY_ONE >> 1), p1[1] + (_XY_ONE >> 1)
    _put(pixels, (p2[0] + (_XY_ONE >> 1)) >> _XY_SHIFT, (p2[1] + (_XY_ONE >> 1)) >> _XY_SHIFT, color)
    if ax > ay:
        x >>= _XY_SHIFT
        while ecount >= 0:
            _put(pixels, x, y >> _XY_SHIFT, color)
            x += 1
            y += y_step
            ecount -= 1
    else:
        y >>= _XY_SHIFT
        while ecount >= 0:
            _put(pixels, x >> _XY_SHIFT, y, color)
            x += x_step
            y += 1
            ecount -= 1


def _fill_convex_poly_shifted(
    pixels: np.ndarray, v: list[tuple[int, int]], color: tuple[int, int, int]
) -> None:
    """OpenCV's ``FillConvexPoly(img, v, npts, color, LINE_8, XY_SHIFT)``: the outline with
    ``Line2``, then scanlines between two edge walkers."""
    h, w = pixels.shape[:2]
    npts = len(v)
    delta = 1 << _XY_SHIFT >> 1
    imin = 0
    xmin = xmax = v[0][0]
    ymin = ymax = v[0][1]
    prev = v[-1]
    for i, p in enumerate(v):
        if p[1] < ymin:
            ymin, imin = p[1], i
        ymax, xmax, xmin = max(ymax, p[1]), max(xmax, p[0]), min(xmin, p[0])
        _line2(pixels, prev, p, color)
        prev = p
    xmin, xmax = (xmin + delta) >> _XY_SHIFT, (xmax + delta) >> _XY_SHIFT
    ymin, ymax = (ymin + delta) >> _XY_SHIFT, (ymax + delta) >> _XY_SHIFT
    if npts < 3 or xmax < 0 or ymax < 0 or xmin >= w or ymin >= h:
        return
    ymax = min(ymax, h - 1)
    edges = npts
    edge = [
        {"idx": imin, "di": 1, "x": -_XY_ONE, "dx": 0, "ye": ymin},
        {"idx": imin, "di": npts - 1, "x": -_XY_ONE, "dx": 0, "ye": ymin},
    ]
    y = ymin
    half = _XY_ONE >> 1
    while True:
        for e in edge:
            if y >= e["ye"]:
                idx0 = e["idx"]
                idx = idx0 + e["di"]
                if idx >= npts:
                    idx -= npts
                while edges > 0:
                    edges -= 1
                    ty = (v[idx][1] + delta) >> _XY_SHIFT
                    if ty > y:
                        xs, xe = v[idx0][0], v[idx][0]
                        e["ye"] = ty
                        e["dx"] = _tdiv((xe - xs) * 2 + (ty - y), 2 * (ty - y))
                        e["x"] = xs
                        e["idx"] = idx
                        break
                    idx0 = idx
                    idx += e["di"]
                    if idx >= npts:
                        idx -= npts
                else:
                    edges -= 1
        if edges < 0:
            break
        if y >= 0:
            left, right = (1, 0) if edge[0]["x"] > edge[1]["x"] else (0, 1)
            x1 = (edge[left]["x"] + half) >> _XY_SHIFT
            x2 = (edge[right]["x"] + half) >> _XY_SHIFT
            if x2 >= 0 and x1 < w:
                pixels[y, max(x1, 0) : min(x2, w - 1) + 1] = color
        edge[0]["x"] += edge[0]["dx"]
        edge[1]["x"] += edge[1]["dx"]
        y += 1
        if y > ymax:
            break
