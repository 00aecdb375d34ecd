"""PATA and retargeting carry hands and face: one similarity transform for the whole body, transitions
that never start a hand or face point at (0, 0), and parts attached to their wrist / head."""

from __future__ import annotations

import numpy as np
import pytest

from engine.poses.alignment import align_poses, fit_similarity, interpolate_poses, reference_pose
from engine.poses.pose import Pose, PoseSequence
from tests.support.payloads import STANDING
from tests.support.wholebody import wholebody_frame

L_WRIST, R_WRIST, NOSE = 7, 4, 0


def whole(frame: dict, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0, size: int = 512) -> Pose:
    def move(points):
        arr = np.array(points, dtype=np.float64)
        seen = arr[..., 2] > 0
        arr[..., 0] = np.where(seen, arr[..., 0] * scale + dx, 0)
        arr[..., 1] = np.where(seen, arr[..., 1] * scale + dy, 0)
        return arr

    return Pose(move(frame["body"]), size, size, hands=move(frame["hands"]), face=move(frame["face"]))


def driving_clip(n: int = 4) -> PoseSequence:
    frame = wholebody_frame()
    return PoseSequence(whole(frame, dx=40 + 6 * i, dy=-20 + 3 * i, scale=0.7) for i in range(n))


def test_every_aligned_target_moves_hands_and_face_with_its_body_under_one_transform():
    source = Pose(np.array(STANDING, dtype=np.float64), 512, 512)
    targets = driving_clip()
    out = align_poses(source, targets, 3)
    transform = fit_similarity(source, reference_pose(source, targets))
    assert transform.scale != pytest.approx(1.0)
    for target, aligned in zip(targets, out[4:], strict=True):
        for name in ("hands", "face"):
            given, got = getattr(target, name), getattr(aligned, name)
            seen = given[..., 2] > 0
            np.testing.assert_allclose(
                got[..., 0][seen], given[..., 0][seen] * transform.scale + transform.tx, atol=1e-9
            )
            np.testing.assert_allclose(
                got[..., 1][seen], given[..., 1][seen] * transform.scale + transform.ty, atol=1e-9
            )
            np.testing.assert_array_equal(got[..., 2], given[..., 2])
        np.testing.assert_allclose(
            aligned.keypoints[:, 0][target.visible],
            target.keypoints[target.visible, 0] * transform.scale + transform.tx,
        )


def test_transition_frames_never_place_a_hand_or_face_point_at_the_origin():
    source = Pose(np.array(STANDING, dtype=np.float64), 512, 512)  # no hands, no face
    out = align_poses(source, driving_clip(), 6)
    for pose in out[1:7]:
        for part in (pose.hands, pose.face):
            if part is None:
                continue
            seen = part[..., 2] > 0
            assert not ((part[..., 0] == 0) & (part[..., 1] == 0))[seen].any()
            assert (np.abs(part[..., :2][seen]) > 1).all()


def test_a_hand_seen_only_at_the_target_appears_at_the_interpolated_wrist_with_its_shape():
    frame = wholebody_frame()
    a = Pose(np.array(frame["body"]), 512, 512)
    b = whole(frame, dx=60, dy=30)
    mid = interpolate_poses(a, b, 3)
    assert mid[0].hands is None or not (mid[0].hands[..., 2] > 0).any()  # alpha 0.25: not yet
    later = mid[2]  # alpha 0.75
    for side, wrist in ((0, L_WRIST), (1, R_WRIST)):
        seen = b.hands[side][:, 2] > 0
        offset = b.hands[side][seen, :2] - b.keypoints[wrist, :2]
        np.testing.assert_allclose(later.hands[side][seen, :2] - later.keypoints[wrist, :2], offset)
    face_seen = b.face[:, 2] > 0
    np.testing.assert_allclose(
        later.face[face_seen, :2] - later.keypoints[NOSE, :2], b.face[face_seen, :2] - b.keypoints[NOSE, :2]
    )


def test_hands_present_at_both_ends_move_linearly():
    frame = wholebody_frame()
    a, b = whole(frame), whole(frame, dx=40, dy=-10)
    (mid,) = interpolate_poses(a, b, 1)
    seen = a.hands[..., 2] > 0
    np.testing.assert_allclose(
        mid.hands[..., :2][seen], (a.hands[..., :2][seen] + b.hands[..., :2][seen]) / 2
    )


def test_bone_retargeting_hangs_each_hand_from_its_wrist_and_the_face_from_the_nose():
    source = Pose(np.array(STANDING, dtype=np.float64), 512, 512)
    targets = driving_clip(2)
    out = align_poses(source, targets, 0, retarget="bones")
    for target, aligned in zip(targets, out[1:], strict=True):
        for side, wrist in ((0, L_WRIST), (1, R_WRIST)):
            seen = target.hands[side][:, 2] > 0
            seen[0] = False  # the hand's own wrist point sits on the body's wrist
            got = aligned.hands[side][seen, :2] - aligned.keypoints[wrist, :2]
            want = target.hands[side][seen, :2] - target.keypoints[wrist, :2]
            ratio = np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
            # one ratio (the forearm's) for the whole hand, directions kept
            np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
            np.testing.assert_allclose(got / ratio[0], want, atol=1e-9)
        face_seen = target.face[:, 2] > 0
        assert (np.linalg.norm(aligned.face[face_seen, :2] - aligned.keypoints[NOSE, :2], axis=1) < 60).all()
