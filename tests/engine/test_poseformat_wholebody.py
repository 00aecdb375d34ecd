"""Every common pose file accepted (issue 20): OpenPose with hands and face, BODY_25, COCO-17,
COCO-WholeBody-133, COCO annotations, MMPose instances, ComfyUI POSE_KEYPOINT, canvas-less files;
each mapping checked with known numbers, unknown shapes refused naming what was seen."""

from __future__ import annotations

import numpy as np
import pytest

from engine.inputs.poseformat import (
    BODY_25_TO_COCO_18,
    COCO_17_TO_COCO_18,
    PoseError,
    normalize_poses,
)
from engine.poses.pose import PoseSequence
from tests.support.payloads import STANDING
from tests.support.wholebody import openpose_person, wholebody_frame


def flat(points):
    return [float(v) for p in points for v in p]


def test_openpose_hands_and_face_are_kept_in_the_compact_form_and_the_pose():
    frame = wholebody_frame()
    out = normalize_poses(
        {"people": [openpose_person(frame)], "canvas_width": 512, "canvas_height": 512}, max_frames=1
    )
    assert out["frames"][0] == [[float(v) for v in p] for p in STANDING]
    assert out["hands"][0][0] == frame["hands"][0] and out["hands"][0][1] == frame["hands"][1]
    assert out["faces"][0] == frame["face"]
    pose = PoseSequence.from_compact(out)[0]
    assert pose.hands.shape == (2, 21, 3) and pose.face.shape == (70, 3)
    # round trip: to_compact / to_openpose and back
    again = normalize_poses(PoseSequence([pose]).to_openpose(), max_frames=1)
    assert again == out
    assert normalize_poses(PoseSequence([pose]).to_compact(), max_frames=1) == out


def test_a_68_point_face_gets_two_missing_pupils_and_empty_arrays_mean_absent():
    frame = wholebody_frame()
    person = {
        **openpose_person(frame),
        "face_keypoints_2d": flat(frame["face"][:68]),
        "hand_left_keypoints_2d": [],
    }
    out = normalize_poses({"people": [person], "canvas_width": 512, "canvas_height": 512}, max_frames=1)
    assert out["faces"][0][68:] == [[0.0, 0.0, 0.0]] * 2
    assert out["hands"][0][0] is None and out["hands"][0][1] == frame["hands"][1]


def test_body_25_maps_onto_coco_18_dropping_mid_hip_and_feet():
    body25 = [[100.0 + i, 200.0 + i, round(0.5 + i / 100, 4)] for i in range(25)]
    out = normalize_poses(
        {"people": [{"pose_keypoints_2d": flat(body25)}], "canvas_width": 512, "canvas_height": 512},
        max_frames=1,
    )
    assert out["frames"][0] == [body25[i] for i in BODY_25_TO_COCO_18]
    # known numbers: COCO-18 r_hip (8) is BODY_25's RHip (9), l_ear (17) is LEar (18)
    assert out["frames"][0][8] == [109.0, 209.0, 0.59] and out["frames"][0][17] == [118.0, 218.0, 0.68]


def coco17():
    # COCO-17 from STANDING: nose, l_eye, r_eye, l_ear, r_ear, l_sho, r_sho, l_elb, r_elb, l_wri, r_wri,
    # l_hip, r_hip, l_knee, r_knee, l_ank, r_ank
    order = [0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10]
    return [list(map(float, STANDING[i])) for i in order]


def test_coco_17_gets_the_neck_as_the_shoulders_midpoint():
    out = normalize_poses({"width": 512, "height": 512, "frames": [coco17()]}, max_frames=1)
    frame = out["frames"][0]
    assert frame[1] == [256.0, 151.0, 0.95]  # neck: ((212 + 300) / 2, (152 + 150) / 2), min confidence
    for coco18 in (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17):
        assert frame[coco18] == [float(v) for v in STANDING[coco18]]
    assert len(COCO_17_TO_COCO_18) == 18
    # no neck when a shoulder is missing
    one_shoulder = coco17()
    one_shoulder[5] = [0.0, 0.0, 0.0]
    assert normalize_poses({"width": 512, "height": 512, "frames": [one_shoulder]}, max_frames=1)["frames"][
        0
    ][1] == [0.0, 0.0, 0.0]


def wholebody133():
    frame = wholebody_frame()
    feet = [[0.0, 0.0, 0.0]] * 6
    return frame, coco17() + feet + frame["face"][:68] + frame["hands"][0] + frame["hands"][1]


def test_coco_wholebody_133_maps_body_face_and_hands():
    frame, points = wholebody133()
    assert len(points) == 133
    out = normalize_poses({"width": 512, "height": 512, "frames": [points]}, max_frames=1)
    assert out["frames"][0][0] == [256.0, 96.0, 1.0]
    assert out["faces"][0][:68] == frame["face"][:68] and out["faces"][0][68:] == [[0.0, 0.0, 0.0]] * 2
    assert out["hands"][0] == [frame["hands"][0], frame["hands"][1]]
    # the same as flat numbers inside an OpenPose frame (DWPose's 133 in pose_keypoints_2d)
    op = {"people": [{"pose_keypoints_2d": flat(points)}], "canvas_width": 512, "canvas_height": 512}
    assert normalize_poses(op, max_frames=1) == out


def test_coco_annotations_with_visibility_flags_and_wholebody_parts():
    frame, _ = wholebody133()
    ann = {
        "image_id": 7,
        "category_id": 1,
        "keypoints": [v for p in coco17() for v in (p[0], p[1], 2 if p[2] > 0 else 0)],
        "lefthand_kpts": flat([[x, y, 2.0] for x, y, _ in frame["hands"][0]]),
        "righthand_kpts": [],
        "face_kpts": flat([[x, y, 1.0] for x, y, _ in frame["face"][:68]]),
    }
    out = normalize_poses(
        {"images": [{"id": 7, "width": 640, "height": 480}], "annotations": [ann]}, max_frames=1
    )
    assert (out["width"], out["height"]) == (640, 480)
    assert out["frames"][0][0] == [256.0, 96.0, 1.0]  # v=2 -> confidence 1
    assert out["hands"][0][1] is None and out["hands"][0][0][3][2] == 1.0
    # a bare annotation list (one per frame) with no image sizes gets a derived canvas: one pixel
    # past the furthest point (a left-hand fingertip here)
    seq = normalize_poses([ann, ann], max_frames=2)
    furthest = max(p[0] for p in coco17() + frame["hands"][0] + frame["face"][:68] if p[2] > 0)
    assert len(seq["frames"]) == 2 and seq["width"] == int(furthest) + 1


def test_mmpose_instances_with_keypoint_scores():
    pts = coco17()
    inst = {"keypoints": [[x, y] for x, y, _ in pts], "keypoint_scores": [c for _, _, c in pts]}
    out = normalize_poses([{"frame_id": 0, "instances": [inst]}], max_frames=1)
    assert out["frames"][0][2] == [212.0, 152.0, 0.95]


def test_comfyui_pose_keypoint_normalised_with_hands_and_face():
    frame = wholebody_frame()
    norm = lambda pts: [[x / 512, y / 512, c] for x, y, c in pts]  # noqa: E731
    person = {
        "pose_keypoints_2d": flat(norm(frame["body"])),
        "hand_left_keypoints_2d": flat(norm(frame["hands"][0])),
        "hand_right_keypoints_2d": flat(norm(frame["hands"][1])),
        "face_keypoints_2d": flat(norm(frame["face"])),
    }
    comfy = [{"people": [person], "canvas_width": 512, "canvas_height": 512}] * 2
    out = normalize_poses(comfy, max_frames=2)
    np.testing.assert_allclose(
        np.array(out["hands"][1][0])[:, :2], np.array(frame["hands"][0])[:, :2], atol=1e-3
    )
    np.testing.assert_allclose(np.array(out["faces"][0])[:, :2], np.array(frame["face"])[:, :2], atol=1e-3)


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        (
            {"people": [{"pose_keypoints_2d": [1.0] * 60}], "canvas_width": 9, "canvas_height": 9},
            ["60 numbers", "BODY_25", "poses convert"],
        ),
        ({"width": 512, "height": 512, "frames": [[[1, 1, 1]] * 19]}, ["19 keypoints", "COCO-17"]),
        ({"skeleton": []}, ["keys skeleton", "docs/poses.md"]),
        ([{"foo": 1}], ["saw keys: foo"]),
        ("[1, 2]", ["got int"]),
    ],
)
def test_an_unknown_shape_is_refused_naming_what_was_seen(obj, words):
    with pytest.raises(PoseError) as info:
        normalize_poses(obj, max_frames=4)
    for word in words:
        assert word in info.value.message, info.value.message


def test_a_hand_with_the_wrong_count_is_refused():
    person = {"pose_keypoints_2d": flat(STANDING), "hand_left_keypoints_2d": [1.0] * 60}
    with pytest.raises(PoseError) as info:
        normalize_poses({"people": [person], "canvas_width": 512, "canvas_height": 512}, max_frames=1)
    assert info.value.code == "pose_keypoint_count" and "hand" in info.value.message
