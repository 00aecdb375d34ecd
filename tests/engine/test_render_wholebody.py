"""Hands and face in the conditioning image: pixel for pixel the annotator's draw_handpose and
draw_facepose (written with OpenCV in tests/support/wholebody.py), and exactly where they are drawn."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.poses.pose import Pose
from engine.poses.render import HAND_EDGE_COLORS, render_pose
from tests.support.wholebody import annotator_image, face_at, hand_at, wholebody_frame

cv2 = pytest.importorskip("cv2")  # OpenCV comes with mediapipe (the detect extra)


def pose_of(frame: dict, size: int = 512) -> Pose:
    return Pose(
        np.array(frame["body"]), size, size, hands=np.array(frame["hands"]), face=np.array(frame["face"])
    )


def test_hand_edge_colours_are_the_annotators_hsv_hues():
    assert HAND_EDGE_COLORS[0] == (255, 0, 0)
    assert HAND_EDGE_COLORS[5] == (128, 255, 0)  # hue 0.25: (0.5, 1, 0) * 255 rounded half to even
    assert len(set(HAND_EDGE_COLORS)) == 20


@pytest.mark.parametrize("seed", range(6))
def test_render_equals_the_annotators_draw_pose_pixel_for_pixel(seed):
    frame = wholebody_frame()
    rng = np.random.default_rng(seed)
    if seed:  # move the hands and face around, some points off the canvas edges
        frame["hands"] = [
            hand_at(
                tuple(rng.uniform(5, 507, 2)),
                float(rng.uniform(0, 2 * math.pi)),
                float(rng.uniform(4, 20)),
                s,
            )
            for s in (seed, seed + 10)
        ]
        frame["face"] = face_at(tuple(rng.uniform(0, 512, 2)), float(rng.uniform(8, 40)), seed)
    ours = np.asarray(render_pose(pose_of(frame), 512, 512))
    theirs = annotator_image(cv2, frame)
    assert np.array_equal(ours, theirs), int((ours != theirs).any(axis=2).sum())


def test_hands_near_and_beyond_the_border_match_the_annotator():
    frame = wholebody_frame()
    frame["hands"] = [hand_at((3.2, 256.0), math.pi, 12.0, 4), hand_at((509.5, 1.5), -0.5, 14.0, 5)]
    frame["face"] = face_at((1.0, 1.0), 30.0)
    ours = np.asarray(render_pose(pose_of(frame), 512, 512))
    assert np.array_equal(ours, annotator_image(cv2, frame))


def test_the_switches_leave_out_hands_or_face_and_the_body_only_image_is_draw_bodypose():
    frame = wholebody_frame()
    pose = pose_of(frame)
    for hands, face in ((False, False), (True, False), (False, True)):
        ours = np.asarray(render_pose(pose, 512, 512, hands=hands, face=face))
        assert np.array_equal(ours, annotator_image(cv2, frame, hands=hands, face=face))


def test_whole_body_image_differs_from_body_only_exactly_where_hands_and_face_are_drawn():
    frame = wholebody_frame()
    full = np.asarray(render_pose(pose_of(frame), 512, 512))
    body = np.asarray(render_pose(Pose(np.array(frame["body"]), 512, 512), 512, 512))
    changed = (full != body).any(axis=2)
    # Every changed pixel lies within the hand lines/joints or face discs' reach of a hand/face point.
    pts = np.array(
        [p[:2] for h in frame["hands"] for p in h if p[2] > 0] + [p[:2] for p in frame["face"] if p[2] > 0]
    )
    ys, xs = np.nonzero(changed)
    near = np.min(np.hypot(xs[:, None] - pts[None, :, 0], ys[:, None] - pts[None, :, 1]), axis=1)
    # a hand edge pixel is within half an edge (<= 32 px here) of a point; joints/discs within 5 px
    assert changed.sum() > 500 and (near <= 32).all()
    # ...and every face point's and hand joint's own pixel changed to the annotator colour
    for x, y, c in frame["face"]:
        if c > 0 and int(x) >= 1 and int(y) >= 1:
            assert tuple(full[int(y), int(x)]) == (255, 255, 255)
    body_only_pixels = ~changed
    assert np.array_equal(full[body_only_pixels], body[body_only_pixels])


def test_other_sizes_scale_the_strokes():
    frame = wholebody_frame()
    small = np.asarray(render_pose(pose_of(frame), 256, 256))
    assert small.shape == (256, 256, 3)
    assert (small == (0, 0, 255)).all(axis=2).any()  # hand joints drawn
    assert (small == (255, 255, 255)).all(axis=2).any()  # face drawn
