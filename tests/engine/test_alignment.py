from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.poses.alignment import (
    SCALE_RANGE,
    AlignmentError,
    SimilarityTransform,
    align_poses,
    fit_similarity,
    interpolate_poses,
)
from engine.poses.pose import KEYPOINT_NAMES, Pose, PoseSequence

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# The source character: a full, standing body on 512 x 512.
SOURCE = np.array(
    [
        [256, 96, 1.0],
        [256, 150, 1.0],
        [212, 152, 1.0],
        [196, 222, 1.0],
        [188, 290, 1.0],
        [300, 150, 1.0],
        [318, 220, 1.0],
        [330, 286, 1.0],
        [230, 282, 1.0],
        [226, 372, 1.0],
        [224, 456, 1.0],
        [282, 282, 1.0],
        [288, 372, 1.0],
        [292, 456, 1.0],
        [246, 86, 1.0],
        [266, 86, 1.0],
        [236, 92, 1.0],
        [276, 92, 1.0],
    ]
)


def target_frames(count: int = 5, *, scale: float = 0.5, shift=(60.0, -40.0)) -> list[np.ndarray]:
    """A smaller, displaced copy of SOURCE that raises its right arm over ``count`` frames."""
    frames = []
    for k in range(count):
        kp = SOURCE.copy()
        kp[KP["r_wrist"], 1] -= 40 * k
        kp[KP["r_elbow"], 1] -= 20 * k
        kp[:, :2] = kp[:, :2] * scale + shift
        frames.append(kp)
    return frames


def torso_lengths(kp: np.ndarray) -> list[float]:
    pairs = [("neck", "r_hip"), ("neck", "l_hip"), ("r_shoulder", "l_shoulder"), ("r_hip", "l_hip")]
    return [float(np.linalg.norm(kp[KP[a], :2] - kp[KP[b], :2])) for a, b in pairs]


def source(width: int = 512, height: int = 512) -> Pose:
    return Pose(SOURCE, width, height)


def targets(count: int = 5, **kwargs) -> PoseSequence:
    return PoseSequence(Pose(kp, 512, 512) for kp in target_frames(count, **kwargs))


# --- fit ------------------------------------------------------------------------------------------


def test_aligned_first_target_has_the_source_body_size_and_anchor():
    seq = align_poses(source(), targets(), transition_frames=3)
    first = seq[1 + 3].keypoints
    np.testing.assert_allclose(torso_lengths(first), torso_lengths(SOURCE), atol=1e-6)
    np.testing.assert_allclose(first[KP["neck"], :2], SOURCE[KP["neck"], :2], atol=1e-6)


def test_fit_similarity_recovers_a_known_scale_and_translation():
    transform = fit_similarity(source(), targets(1, scale=0.25, shift=(10.0, 300.0))[0])
    assert transform.scale == pytest.approx(4.0)
    # The target neck (256 * 0.25 + 10, 150 * 0.25 + 300) must land on the source neck (256, 150).
    assert (transform.tx, transform.ty) == pytest.approx(
        (256 - 4 * (256 * 0.25 + 10), 150 - 4 * (150 * 0.25 + 300))
    )


def test_fit_prefers_torso_segments_over_moving_limbs():
    tgt = SOURCE.copy()
    tgt[KP["r_elbow"], :2] += (80, 0)  # long, stretched arms must not change the body size
    tgt[KP["l_elbow"], :2] += (-70, 10)
    assert fit_similarity(source(), Pose(tgt, 512, 512)).scale == pytest.approx(1.0)


def test_fit_takes_the_median_so_one_odd_torso_segment_does_not_skew_the_scale():
    tgt = SOURCE.copy()
    tgt[:, :2] *= 0.5
    tgt[KP["r_shoulder"], 0] += 11  # hunched: the shoulder line alone is half as wide again
    tgt[KP["l_shoulder"], 0] -= 11
    assert fit_similarity(source(), Pose(tgt, 512, 512)).scale == pytest.approx(2.0)


def test_fit_uses_limbs_when_no_torso_segment_is_shared():
    src = SOURCE.copy()
    src[[KP["r_shoulder"], KP["r_hip"], KP["l_hip"]], 2] = 0.0  # no torso segment in the source
    tgt = SOURCE.copy()
    tgt[:, :2] *= 0.5
    assert fit_similarity(Pose(src, 512, 512), Pose(tgt, 512, 512)).scale == pytest.approx(2.0)


def test_fit_uses_rms_spread_without_shared_segments_and_centroid_without_anchors():
    src = np.zeros((18, 3))
    tgt = np.zeros((18, 3))
    for name, (x, y) in {"r_wrist": (100, 100), "l_ankle": (200, 300)}.items():
        src[KP[name]] = (x, y, 1.0)
        tgt[KP[name]] = (x / 2 + 5, y / 2 + 7, 1.0)
    transform = fit_similarity(Pose(src, 512, 512), Pose(tgt, 512, 512))
    assert transform.scale == pytest.approx(2.0)
    aligned = transform.apply(Pose(tgt, 512, 512)).keypoints
    np.testing.assert_allclose(aligned[[KP["r_wrist"], KP["l_ankle"]], :2], [[100, 100], [200, 300]])


def test_fit_anchors_on_the_neck_even_when_the_hips_disagree():
    tgt = SOURCE.copy()
    tgt[[KP["r_hip"], KP["l_hip"]], 0] += 40  # leaning: hips sideways of the neck
    aligned = fit_similarity(source(), Pose(tgt, 512, 512)).apply(Pose(tgt, 512, 512)).keypoints
    np.testing.assert_allclose(aligned[KP["neck"], :2], SOURCE[KP["neck"], :2], atol=1e-9)


def test_fit_anchors_on_mid_hip_when_a_neck_is_missing():
    src = SOURCE.copy()
    src[KP["neck"], 2] = 0.0
    tgt = target_frames(1)[0]
    aligned = fit_similarity(Pose(src, 512, 512), Pose(tgt, 512, 512)).apply(Pose(tgt, 512, 512)).keypoints
    mid = lambda kp: (kp[KP["r_hip"], :2] + kp[KP["l_hip"], :2]) / 2  # noqa: E731
    np.testing.assert_allclose(mid(aligned), mid(SOURCE), atol=1e-6)


def test_fit_ignores_keypoints_below_the_confidence_threshold():
    tgt = target_frames(1)[0]
    tgt[KP["neck"], :2] = (0.0, 0.0)
    tgt[KP["neck"], 2] = 0.01  # a wild, barely-confident neck must not become the anchor
    transform = fit_similarity(source(), Pose(tgt, 512, 512))
    aligned = transform.apply(Pose(tgt, 512, 512)).keypoints
    np.testing.assert_allclose(
        (aligned[KP["r_hip"], :2] + aligned[KP["l_hip"], :2]) / 2, [256, 282], atol=1e-6
    )


def test_fit_without_common_keypoints_is_identity_scale_and_no_translation():
    src = np.zeros((18, 3))
    src[KP["nose"]] = (10, 10, 1)
    tgt = np.zeros((18, 3))
    tgt[KP["l_ankle"]] = (300, 300, 1)
    assert fit_similarity(Pose(src, 512, 512), Pose(tgt, 512, 512)) == SimilarityTransform(1.0, 0.0, 0.0)


def test_fit_clamps_absurd_scales():
    tgt = SOURCE.copy()
    tgt[:, :2] = tgt[:, :2] * 1e-3 + 100  # a collapsed pose
    assert fit_similarity(source(), Pose(tgt, 512, 512)).scale == SCALE_RANGE[1]
    tgt = SOURCE.copy()
    tgt[:, :2] *= 50.0
    assert fit_similarity(source(), Pose(tgt, 5120, 5120)).scale == SCALE_RANGE[0]


def test_fit_skips_zero_length_segments():
    tgt = SOURCE.copy()
    tgt[KP["l_shoulder"], :2] = tgt[KP["r_shoulder"], :2]  # degenerate shoulder line
    transform = fit_similarity(source(), Pose(tgt, 512, 512))
    assert np.isfinite(transform.scale) and transform.scale == pytest.approx(1.0)


# --- whole sequence -----------------------------------------------------------------------------------


def test_relative_motion_is_preserved_exactly():
    tg = targets(6)
    seq = align_poses(source(), tg, transition_frames=2)
    aligned = seq.keypoints()[3:]
    original = tg.keypoints()
    scale = fit_similarity(source(), tg[0]).scale
    assert scale == pytest.approx(2.0)
    for i in range(len(tg)):
        for j in range(len(tg)):
            np.testing.assert_allclose(
                aligned[i, :, :2] - aligned[j, :, :2],
                scale * (original[i, :, :2] - original[j, :, :2]),
                atol=1e-9,
            )
    np.testing.assert_array_equal(aligned[..., 2], original[..., 2])


def test_sequence_is_source_then_transition_then_targets():
    tg = targets(5)
    for t in (0, 1, 4):
        seq = align_poses(source(), tg, transition_frames=t)
        assert len(seq) == 1 + t + len(tg)  # N + 1 poses, N = M + t
        assert seq[0] == source()


def test_transition_interpolates_linearly_from_source_to_aligned_first_target():
    tg = targets(3)
    seq = align_poses(source(), tg, transition_frames=3)
    start, end = SOURCE, seq[4].keypoints
    for k in (1, 2, 3):
        np.testing.assert_allclose(seq[k].keypoints, start + k / 4 * (end - start), atol=1e-9)


def test_everything_lands_on_the_requested_canvas():
    seq = align_poses(source(640, 480), targets(), 2, width=256, height=384)
    assert (seq.width, seq.height) == (256, 384)
    np.testing.assert_allclose(seq[0].keypoints, source(640, 480).to_canvas(256, 384).keypoints)


def test_targets_on_another_canvas_are_mapped_to_the_source_canvas_first():
    tg = PoseSequence(Pose(kp * [2, 2, 1], 1024, 1024) for kp in target_frames(3))
    a = align_poses(source(), tg, 2)
    b = align_poses(source(), targets(3), 2)
    np.testing.assert_allclose(a.keypoints(), b.keypoints(), atol=1e-9)
    assert (a.width, a.height) == (512, 512)


def test_an_empty_first_target_frame_does_not_cancel_the_alignment():
    frames = [np.zeros((18, 3)), *target_frames(3)]
    seq = align_poses(source(), PoseSequence(Pose(kp, 512, 512) for kp in frames), 0)
    np.testing.assert_allclose(torso_lengths(seq[2].keypoints), torso_lengths(SOURCE), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transition_frames": -1}, ">= 0"),
        ({"transition_frames": 1.5}, "integer"),
        ({"transition_frames": True}, "integer"),
        ({"transition_frames": 2, "width": 512}, "both width and height"),
    ],
)
def test_align_poses_rejects_bad_arguments(kwargs, message):
    with pytest.raises(AlignmentError, match=message):
        align_poses(source(), targets(), **kwargs)


def test_alignment_error_is_a_value_error():
    assert issubclass(AlignmentError, ValueError)


# --- one-sided keypoints ------------------------------------------------------------------------------


def test_one_sided_keypoints_never_travel_and_switch_at_half_way():
    src = SOURCE.copy()
    src[KP["r_wrist"], 2] = 0.0  # only the target has a right wrist
    tgt = SOURCE.copy()
    tgt[KP["l_ankle"], 2] = 0.0  # only the source has a left ankle
    a, b = Pose(src, 512, 512), Pose(tgt, 512, 512)
    poses = interpolate_poses(a, b, 5)  # alpha = 1/6 .. 5/6
    for k, pose in enumerate(poses, start=1):
        alpha = k / 6
        assert pose.visible[KP["l_ankle"]] == (alpha < 0.5)
        assert pose.visible[KP["r_wrist"]] == (alpha >= 0.5)
        if pose.visible[KP["l_ankle"]]:
            np.testing.assert_array_equal(pose.keypoints[KP["l_ankle"]], SOURCE[KP["l_ankle"]])
        if pose.visible[KP["r_wrist"]]:
            np.testing.assert_array_equal(pose.keypoints[KP["r_wrist"]], SOURCE[KP["r_wrist"]])


def test_switch_point_alpha_one_half_belongs_to_the_target():
    src = np.zeros((18, 3))
    src[KP["nose"]] = (100, 100, 1)
    tgt = np.zeros((18, 3))
    tgt[KP["neck"]] = (200, 200, 1)
    (mid,) = interpolate_poses(Pose(src, 512, 512), Pose(tgt, 512, 512), 1)  # alpha = 0.5
    assert mid.visible.tolist() == [i == KP["neck"] for i in range(18)]


def test_interpolation_blends_confidence_of_shared_keypoints():
    src = SOURCE.copy()
    src[:, 2] = 0.2
    tgt = SOURCE.copy()
    tgt[:, 2] = 1.0
    (mid,) = interpolate_poses(Pose(src, 512, 512), Pose(tgt, 512, 512), 1)
    np.testing.assert_allclose(mid.keypoints[:, 2], 0.6)


def test_interpolation_rejects_mixed_canvases_and_negative_counts():
    with pytest.raises(AlignmentError, match="different canvases"):
        interpolate_poses(source(), source(640, 480), 2)
    with pytest.raises(AlignmentError, match="non-negative"):
        interpolate_poses(source(), source(), -2)
    assert interpolate_poses(source(), source(), 0) == []


def test_example_motion_aligns_onto_the_astronaut_without_flying_keypoints():
    src = Pose.from_json(EXAMPLES / "astronaut_pose.json")
    tg = PoseSequence.from_json(EXAMPLES / "raise_arms.json")
    seq = align_poses(src, tg, 6)
    assert len(seq) == 1 + 6 + len(tg)
    for pose in seq:
        assert not (pose.visible & (np.abs(pose.keypoints[:, :2]).sum(axis=1) == 0)).any()
    shoulders = [KP["r_shoulder"], KP["l_shoulder"]]
    first = seq[7].keypoints
    assert np.linalg.norm(first[shoulders[0], :2] - first[shoulders[1], :2]) == pytest.approx(
        np.linalg.norm(src.keypoints[shoulders[0], :2] - src.keypoints[shoulders[1], :2])
    )


# --- property test ----------------------------------------------------------------------------------------

coords = st.floats(min_value=0.0, max_value=511.0, allow_nan=False)
confs = st.sampled_from([0.0, 0.0, 0.3, 0.8, 1.0])
keypoints = st.lists(st.tuples(coords, coords, confs), min_size=18, max_size=18)


@settings(max_examples=60, deadline=None)
@given(src=keypoints, tgt=st.lists(keypoints, min_size=1, max_size=4), t=st.integers(0, 5))
def test_alignment_invariants_hold_for_random_poses(src, tgt, t):
    source_pose = Pose(np.array(src), 512, 512)
    target_seq = PoseSequence(Pose(np.array(k), 512, 512) for k in tgt)
    seq = align_poses(source_pose, target_seq, t)
    assert len(seq) == 1 + t + len(tgt)
    assert seq[0] == source_pose
    assert SCALE_RANGE[0] <= fit_similarity(source_pose, target_seq[0]).scale <= SCALE_RANGE[1]
    aligned = seq.keypoints()[1 + t :]
    original = target_seq.keypoints()
    np.testing.assert_array_equal(aligned[..., 2], original[..., 2])
    # One transform for every frame: differences between frames scale uniformly.
    vis = (original[..., 2] > 0).all(axis=0)
    scale = None
    for i in range(1, len(tgt)):
        d_new = aligned[i, vis, :2] - aligned[0, vis, :2]
        d_old = original[i, vis, :2] - original[0, vis, :2]
        if scale is None and np.abs(d_old).max(initial=0) > 1e-3:
            scale = np.abs(d_new).max() / np.abs(d_old).max()
        if scale is not None:
            np.testing.assert_allclose(d_new, scale * d_old, rtol=1e-7, atol=1e-6)
    # Transition: visible keypoints sit on the segment between their two ends, or at their own end.
    first = seq[1 + t]
    for k in range(1, t + 1):
        pose = seq[k]
        for j in np.flatnonzero(pose.visible):
            on_src = source_pose.visible[j]
            on_tgt = first.visible[j]
            p = pose.keypoints[j, :2]
            if on_src and on_tgt:
                alpha = k / (t + 1)
                expected = (1 - alpha) * source_pose.keypoints[j, :2] + alpha * first.keypoints[j, :2]
                np.testing.assert_allclose(p, expected, atol=1e-9)
            elif on_src:
                np.testing.assert_array_equal(p, source_pose.keypoints[j, :2])
            else:
                assert on_tgt
                np.testing.assert_array_equal(p, first.keypoints[j, :2])
