"""Whole-body detection (issue 20): MediaPipe Holistic's hands and Face Mesh mapped to OpenPose's
21-point hands and 70-point face, placed on the person."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.poses.detect import (
    MEDIAPIPE_FACE_TO_OPENPOSE,
    face_mesh_to_openpose,
    get_pose_detector,
    hand_landmarks_to_openpose,
)
from tests.support import EXAMPLES


def test_the_face_mapping_names_68_distinct_face_mesh_landmarks():
    assert len(MEDIAPIPE_FACE_TO_OPENPOSE) == 68
    assert len(set(MEDIAPIPE_FACE_TO_OPENPOSE)) == 68
    assert all(0 <= i < 468 for i in MEDIAPIPE_FACE_TO_OPENPOSE)
    # known anchors of Face Mesh's canonical model: chin 152, nose tip 4, eye corners 33/133/362/263
    assert MEDIAPIPE_FACE_TO_OPENPOSE[8] == 152 and MEDIAPIPE_FACE_TO_OPENPOSE[30] == 4
    assert MEDIAPIPE_FACE_TO_OPENPOSE[36] == 33 and MEDIAPIPE_FACE_TO_OPENPOSE[39] == 133
    assert MEDIAPIPE_FACE_TO_OPENPOSE[42] == 362 and MEDIAPIPE_FACE_TO_OPENPOSE[45] == 263


def test_face_mesh_to_openpose_picks_the_mapped_points_and_pupils():
    rng = np.random.default_rng(0)
    lm = rng.uniform(0.2, 0.8, (468, 3))
    face = face_mesh_to_openpose(lm, 200, 100)
    assert face.shape == (70, 3) and (face[:, 2] == 1).all()
    np.testing.assert_allclose(face[:68, 0], lm[list(MEDIAPIPE_FACE_TO_OPENPOSE), 0] * 200)
    np.testing.assert_allclose(face[:68, 1], lm[list(MEDIAPIPE_FACE_TO_OPENPOSE), 1] * 100)
    np.testing.assert_allclose(face[68, :2], face[36:42, :2].mean(axis=0))
    refined = np.concatenate([lm, rng.uniform(0.2, 0.8, (10, 3))])
    np.testing.assert_allclose(
        face_mesh_to_openpose(refined, 200, 100)[69, :2], refined[473, :2] * (200, 100)
    )
    lm[152] = (1.5, 0.5, 0)  # off the image: missing
    assert face_mesh_to_openpose(lm, 200, 100)[8].tolist() == [0.0, 0.0, 0.0]


def test_hand_landmarks_keep_their_order():
    lm = np.linspace(0.1, 0.9, 42).reshape(21, 2)
    hand = hand_landmarks_to_openpose(lm, 100, 100)
    np.testing.assert_allclose(hand[:, :2], lm * 100)


def test_holistic_finds_the_astronauts_face_on_the_face():
    pytest.importorskip("mediapipe")
    pose = get_pose_detector("mediapipe-holistic").detect(Image.open(EXAMPLES / "astronaut.jpg"))
    assert pose is not None and pose.face is not None
    kp, face = pose.keypoints, pose.face
    seen = face[:, 2] > 0
    assert seen.sum() >= 60
    # the face lies around the body's head keypoints: within the ears' span, nose tip near the nose
    ears_x = sorted([kp[16, 0], kp[17, 0]])
    assert (face[seen, 0] > ears_x[0] - 15).all() and (face[seen, 0] < ears_x[1] + 15).all()
    assert np.hypot(*(face[30, :2] - kp[0, :2])) < 12
    assert np.hypot(*(face[68, :2] - kp[14, :2])) < 12 and np.hypot(*(face[69, :2] - kp[15, :2])) < 12
    # iBUG's right side is the image's left for a face looking at the camera
    assert face[36, 0] < face[45, 0] and face[0, 0] < face[16, 0]
    assert face[8, 1] > face[30, 1] > face[27, 1]  # chin below the nose tip below the bridge
