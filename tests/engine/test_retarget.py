"""Bone retargeting: the character's bone lengths, the driving motion's bone directions."""

from pathlib import Path

import numpy as np
import pytest

from engine.inputs.errors import InvalidInput
from engine.method.config import AnimateConfig
from engine.poses.alignment import align_poses, bone_lengths, fit_similarity, retarget_bones
from engine.poses.pose import KEYPOINT_NAMES, LIMBS, Pose, PoseSequence

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


def skeleton(neck, lengths, angles, width=512, height=512, hidden=()) -> Pose:
    """A pose built down the LIMBS tree from ``neck``: limb i has length lengths[i] and points at
    angles[i] radians (image coordinates)."""
    kp = np.zeros((18, 3))
    kp[KP["neck"]] = (*neck, 1.0)
    for i, (a, b) in enumerate(LIMBS):
        kp[b, :2] = kp[a, :2] + lengths[i] * np.array([np.cos(angles[i]), np.sin(angles[i])])
        kp[b, 2] = 1.0
    for name in hidden:
        kp[KP[name]] = 0.0
    return Pose(kp, width, height)


# A standing figure: arms hanging, legs down, face up. Angles in LIMBS order.
REST = np.radians([180, 0, 100, 90, 80, 90, 100, 95, 90, 80, 85, 90, -90, -120, -170, -60, -10])
SOURCE_LENGTHS = np.array([40, 40, 60, 50, 60, 50, 100, 90, 85, 100, 90, 85, 30, 12, 15, 12, 15], float)
# The dancer: smaller overall, long arms, short legs.
DRIVER_LENGTHS = (
    SOURCE_LENGTHS * 0.5 * np.array([1, 1, 1.6, 1.6, 1.6, 1.6, 1, 0.7, 0.7, 1, 0.7, 0.7, 1, 1, 1, 1, 1])
)


def driving_clip(frames=6, hidden=()) -> PoseSequence:
    """Arms swinging up and legs kicking out while the dancer drifts right; bone lengths constant."""
    poses = []
    for k in range(frames):
        angles = REST.copy()
        angles[[2, 3]] -= np.radians(20 * k)  # right arm
        angles[[4, 5]] += np.radians(15 * k)  # left arm
        angles[8] -= np.radians(8 * k)  # right shin
        poses.append(skeleton((300 + 5 * k, 150), DRIVER_LENGTHS, angles, hidden=hidden))
    return PoseSequence(poses)


def directions(pose: Pose) -> np.ndarray:
    kp = pose.keypoints
    d = np.stack([kp[b, :2] - kp[a, :2] for a, b in LIMBS])
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.fixture
def source() -> Pose:
    return skeleton((220, 120), SOURCE_LENGTHS, REST)


def test_every_frame_gets_the_source_bone_lengths(source):
    out = retarget_bones(source, driving_clip())
    assert len(out) == 6
    for pose in out:
        np.testing.assert_allclose(bone_lengths(pose), SOURCE_LENGTHS, atol=1e-9)
    # The driving proportions really differed: the uniform PATA scale cannot give these lengths.
    scaled = align_poses(source, driving_clip(), 0)[1:]
    assert np.abs(bone_lengths(scaled[0]) - SOURCE_LENGTHS).max() > 10


def test_bone_directions_of_the_motion_are_kept(source):
    driving = driving_clip()
    for got, want in zip(retarget_bones(source, driving), driving, strict=True):
        np.testing.assert_allclose(directions(got), directions(want), atol=1e-9)
        np.testing.assert_array_equal(got.keypoints[:, 2], want.keypoints[:, 2])


def test_the_root_follows_the_pata_transform(source):
    driving = driving_clip()
    transform = fit_similarity(source, driving[0])
    out = retarget_bones(source, driving)
    np.testing.assert_allclose(out[0].keypoints[KP["neck"], :2], source.keypoints[KP["neck"], :2], atol=1e-6)
    for got, pose in zip(out, driving, strict=True):
        np.testing.assert_allclose(
            got.keypoints[KP["neck"], :2], transform.apply(pose).keypoints[KP["neck"], :2]
        )


def test_bones_the_source_lacks_keep_the_driving_length_times_the_pata_scale():
    source = skeleton((220, 120), SOURCE_LENGTHS, REST, hidden=("r_wrist", "l_ankle"))
    driving = driving_clip()
    scale = fit_similarity(source, driving[0]).scale
    lengths = bone_lengths(retarget_bones(source, driving)[2])
    r_forearm, l_shin = LIMBS.index((3, 4)), LIMBS.index((12, 13))
    assert lengths[r_forearm] == pytest.approx(DRIVER_LENGTHS[r_forearm] * scale)
    assert lengths[l_shin] == pytest.approx(DRIVER_LENGTHS[l_shin] * scale)
    assert lengths[LIMBS.index((2, 3))] == pytest.approx(SOURCE_LENGTHS[LIMBS.index((2, 3))])


def test_a_keypoint_whose_parent_is_missing_is_placed_by_pata_and_grows_its_subtree(source):
    driving = driving_clip(hidden=("r_elbow",))
    transform = fit_similarity(source, driving[0])
    out = retarget_bones(source, driving)[1]
    assert not out.visible[KP["r_elbow"]]
    np.testing.assert_allclose(
        out.keypoints[KP["r_wrist"], :2], transform.apply(driving[1]).keypoints[KP["r_wrist"], :2]
    )


def test_foreshortening_in_the_driving_clip_is_kept(source):
    driving = list(driving_clip(5))
    kp = driving[2].keypoints.copy()
    r_shin = LIMBS.index((9, 10))
    kp[10, :2] = kp[9, :2] + 0.5 * (kp[10, :2] - kp[9, :2])  # the shin turns away: half as long
    driving[2] = driving[2].with_keypoints(kp)
    out = retarget_bones(source, PoseSequence(driving))
    # The ratio is taken against the bone's median driving length, so the other frames are exact.
    assert bone_lengths(out[2])[r_shin] == pytest.approx(0.5 * SOURCE_LENGTHS[r_shin])
    assert bone_lengths(out[0])[r_shin] == pytest.approx(SOURCE_LENGTHS[r_shin])


def test_on_the_examples_lengths_scale_with_the_driving_bone_and_directions_are_kept():
    source = Pose.from_json(EXAMPLES / "astronaut_pose.json")
    driving = PoseSequence.from_json(EXAMPLES / "raise_arms.json")
    out = retarget_bones(source, driving)
    src = bone_lengths(source)
    drv = np.stack([bone_lengths(p) for p in driving])
    median = np.array(
        [np.median(col[np.isfinite(col)]) if np.isfinite(col).any() else np.nan for col in drv.T]
    )
    both = np.isfinite(src) & np.isfinite(median)
    assert both.sum() >= 5  # neck-shoulders, upper arms, face
    for k, pose in enumerate(out):
        got = bone_lengths(pose)
        sel = both & np.isfinite(drv[k])
        np.testing.assert_allclose(got[sel], src[sel] * drv[k, sel] / median[sel], rtol=1e-9)
        visible = np.array([pose.visible[a] and pose.visible[b] for a, b in LIMBS])
        np.testing.assert_allclose(
            directions_where(pose, visible), directions_where(driving[k], visible), atol=1e-9
        )


def directions_where(pose: Pose, mask: np.ndarray) -> np.ndarray:
    kp = pose.keypoints
    d = np.stack([kp[b, :2] - kp[a, :2] for (a, b), m in zip(LIMBS, mask, strict=True) if m])
    return d / np.linalg.norm(d, axis=1, keepdims=True)


# --- PATA and the config -----------------------------------------------------------------------------


def test_align_poses_with_bones_transitions_into_the_retargeted_motion(source):
    driving = driving_clip()
    seq = align_poses(source, driving, 3, retarget="bones")
    assert len(seq) == 1 + 3 + 6 and seq[0] == source
    assert list(seq[4:]) == list(retarget_bones(source, driving))
    np.testing.assert_allclose(bone_lengths(seq[-1]), SOURCE_LENGTHS, atol=1e-9)


def test_the_scale_path_is_unchanged_and_the_default(source):
    driving = driving_clip()
    transform = fit_similarity(source, driving[0])
    default = align_poses(source, driving, 2)
    assert default == align_poses(source, driving, 2, retarget="scale")
    assert list(default[3:]) == [transform.apply(p) for p in driving]
    with pytest.raises(ValueError, match="retarget"):
        align_poses(source, driving, 2, retarget="limbs")


def test_config_retarget_option_drives_build_pose_sequence(source):
    from engine.method.pipeline import PoseAnimator

    assert AnimateConfig().retarget == "scale"
    driving = driving_clip()
    build = PoseAnimator.build_pose_sequence  # uses no model state
    scale = build(None, source, driving, AnimateConfig(transition_frames=2))
    bones = build(None, source, driving, AnimateConfig(transition_frames=2, retarget="bones"))
    assert scale == align_poses(source, driving, 2, width=512, height=512)
    assert bones == align_poses(source, driving, 2, width=512, height=512, retarget="bones")
    assert scale != bones
    with pytest.raises(InvalidInput, match="retarget"):
        AnimateConfig(retarget="limbs")
