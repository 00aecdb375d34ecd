"""Whole-body test poses (hands and face around :data:`tests.support.payloads.STANDING`) and the
ControlNet v1.1 annotator's drawing functions written with OpenCV as the annotator writes them, as
the reference that :mod:`engine.poses.render` must equal pixel for pixel."""

from __future__ import annotations

import colorsys
import math

import numpy as np

from tests.support.payloads import STANDING

HAND_EDGES = [[0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10], [10, 11],
              [11, 12], [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20]]  # fmt: skip


def hand_at(
    wrist: tuple[float, float], direction: float, spread: float = 9.0, seed: int = 0
) -> list[list[float]]:
    """21 OpenPose hand keypoints fanning out from ``wrist`` (pixels), with sub-pixel jitter."""
    rng = np.random.default_rng(seed)
    points = [[wrist[0], wrist[1], 0.9]]
    for finger in range(5):
        angle = direction + (finger - 2) * 0.32
        for joint in range(1, 5):
            r = spread * (0.8 + joint)
            x = wrist[0] + r * math.cos(angle) + rng.uniform(-0.7, 0.7)
            y = wrist[1] + r * math.sin(angle) + rng.uniform(-0.7, 0.7)
            points.append([round(x, 3), round(y, 3), round(float(rng.uniform(0.3, 1.0)), 4)])
    return points


def face_at(nose: tuple[float, float], size: float = 22.0, seed: int = 1) -> list[list[float]]:
    """70 OpenPose face keypoints (68 iBUG on an oval + 2 pupils) around ``nose``."""
    rng = np.random.default_rng(seed)
    points = []
    for i in range(70):
        t = 2 * math.pi * i / 70
        points.append(
            [
                round(nose[0] + size * math.cos(t) * 0.8 + rng.uniform(-0.5, 0.5), 3),
                round(nose[1] + size * math.sin(t) + rng.uniform(-0.5, 0.5), 3),
                round(float(rng.uniform(0.5, 1.0)), 4),
            ]
        )
    return points


def wholebody_frame() -> dict:
    """STANDING with both hands at its wrists (one point of each missing) and a face at its nose."""
    left = hand_at((STANDING[7][0], STANDING[7][1]), math.pi / 2 - 0.3, seed=2)
    right = hand_at((STANDING[4][0], STANDING[4][1]), math.pi / 2 + 0.3, seed=3)
    left[8] = [0.0, 0.0, 0.0]
    right[20] = [0.0, 0.0, 0.0]
    face = face_at((STANDING[0][0], STANDING[0][1] + 4))
    face[69] = [0.0, 0.0, 0.0]
    return {"body": [list(map(float, p)) for p in STANDING], "hands": [left, right], "face": face}


def openpose_person(frame: dict) -> dict:
    flat = lambda pts: [float(v) for p in pts for v in p]  # noqa: E731
    return {
        "pose_keypoints_2d": flat(frame["body"]),
        "hand_left_keypoints_2d": flat(frame["hands"][0]),
        "hand_right_keypoints_2d": flat(frame["hands"][1]),
        "face_keypoints_2d": flat(frame["face"]),
    }


# --- the annotator (ControlNet v1.1 annotator/openpose/util.py), with cv2 -----------------------

EPS = 0.01
LIMB_SEQ = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13],
            [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]  # fmt: skip
COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
          [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
          [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]]  # fmt: skip


def draw_bodypose(cv2, canvas, candidate, subset):
    H, W, _ = canvas.shape
    candidate = np.array(candidate)
    subset = np.array(subset)
    stickwidth = 4
    for i in range(17):
        for n in range(len(subset)):
            index = subset[n][np.array(LIMB_SEQ[i]) - 1]
            if -1 in index:
                continue
            Y = candidate[index.astype(int), 0] * float(W)
            X = candidate[index.astype(int), 1] * float(H)
            mX, mY = np.mean(X), np.mean(Y)
            length = ((X[0] - X[1]) ** 2 + (Y[0] - Y[1]) ** 2) ** 0.5
            angle = math.degrees(math.atan2(X[0] - X[1], Y[0] - Y[1]))
            polygon = cv2.ellipse2Poly(
                (int(mY), int(mX)), (int(length / 2), stickwidth), int(angle), 0, 360, 1
            )
            cv2.fillConvexPoly(canvas, polygon, COLORS[i])
    canvas = (canvas * 0.6).astype(np.uint8)
    for i in range(18):
        for n in range(len(subset)):
            index = int(subset[n][i])
            if index == -1:
                continue
            x, y = candidate[index][0:2]
            cv2.circle(canvas, (int(x * W), int(y * H)), 4, COLORS[i], thickness=-1)
    return canvas


def draw_handpose(cv2, canvas, all_hand_peaks):
    H, W, _ = canvas.shape
    for peaks in all_hand_peaks:
        peaks = np.array(peaks)
        for ie, e in enumerate(HAND_EDGES):
            x1, y1 = peaks[e[0]]
            x2, y2 = peaks[e[1]]
            x1, y1, x2, y2 = int(x1 * W), int(y1 * H), int(x2 * W), int(y2 * H)
            if x1 > EPS and y1 > EPS and x2 > EPS and y2 > EPS:
                color = np.array(colorsys.hsv_to_rgb(ie / float(len(HAND_EDGES)), 1.0, 1.0)) * 255
                cv2.line(canvas, (x1, y1), (x2, y2), color.tolist(), thickness=2)
        for x, y in peaks:
            x, y = int(x * W), int(y * H)
            if x > EPS and y > EPS:
                cv2.circle(canvas, (x, y), 4, (0, 0, 255), thickness=-1)
    return canvas


def draw_facepose(cv2, canvas, all_lmks):
    H, W, _ = canvas.shape
    for lmks in all_lmks:
        for x, y in np.array(lmks):
            x, y = int(x * W), int(y * H)
            if x > EPS and y > EPS:
                cv2.circle(canvas, (x, y), 3, (255, 255, 255), thickness=-1)
    return canvas


def annotator_image(cv2, frame: dict, size: int = 512, hands: bool = True, face: bool = True) -> np.ndarray:
    """draw_pose(pose, H, W) of the annotator for one person given in pixels of a size x size canvas:
    coordinates normalised as the annotator holds them, missing points at -1."""
    body = np.array(frame["body"], dtype=np.float64)
    candidate, row = [], []
    for x, y, c in body:
        if c > 0:
            row.append(len(candidate))
            candidate.append([x / size, y / size])
        else:
            row.append(-1)
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas = draw_bodypose(cv2, canvas, candidate, [[*row, 0, 0]])

    def normalised(points):
        return [[x / size, y / size] if c > 0 else [-1.0, -1.0] for x, y, c in points]

    if hands and frame.get("hands"):
        canvas = draw_handpose(cv2, canvas, [normalised(h) for h in frame["hands"] if h is not None])
    if face and frame.get("face"):
        canvas = draw_facepose(cv2, canvas, [normalised(frame["face"])])
    return canvas
