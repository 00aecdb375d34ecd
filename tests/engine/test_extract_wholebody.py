"""Whole-body extraction (issue 20): hands and face cleaned with the body's gap, smoothing and
no-person policies, the ``parts`` switch, and MediaPipe Holistic finding the astronaut's face in a clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.poses.extract import ExtractionError, extract_poses
from engine.poses.pose import Pose
from tests.support.clips import astronaut_frames
from tests.support.clips import encode_clip as encode

FRAMES = 12


def marker_frames(count: int, missing=()) -> list[Image.Image]:
    """Frame k shows an 8x8 white square at x = 4 + 4k on black (nobody in the ``missing`` frames)."""
    frames = []
    for k in range(count):
        frame = Image.new("RGB", (96, 64), (0, 0, 0))
        if k not in missing:
            frame.paste((255, 255, 255), (4 + 4 * k, 20, 12 + 4 * k, 28))
        frames.append(frame)
    return frames


class ScriptedDetector:
    """The frame index k is read from the marker's position; the body is at the marker, the left hand
    at (x + 2k, 40) and the face at (x, 10 + k) unless k is listed as without that part. Every point
    moves with constant velocity, so interpolation and Savitzky-Golay reproduce it exactly."""

    name = "scripted"

    def __init__(self, no_left_hand=(), no_right_hand=(), no_face=()) -> None:
        self.no_left, self.no_right, self.no_face = set(no_left_hand), set(no_right_hand), set(no_face)

    def detect(self, image: Image.Image) -> Pose | None:
        ys, xs = np.nonzero(np.asarray(image.convert("L")) > 200)
        if len(xs) == 0:
            return None
        k = round((xs.mean() - 7.5) / 4)
        body = np.zeros((18, 3))
        body[0] = (xs.mean(), ys.mean(), 1.0)
        body[1] = (xs.mean(), ys.mean() + 10, 0.9)
        hands = np.zeros((2, 21, 3))
        if k not in self.no_left:
            hands[0, :, 0] = xs.mean() + 2 * k + np.arange(21) * 0.1
            hands[0, :, 1], hands[0, :, 2] = 40.0, 1.0
        if k not in self.no_right:
            hands[1, :, 0], hands[1, :, 1], hands[1, :, 2] = 5.0, 50.0 - k, 0.8
        face = None
        if k not in self.no_face:
            face = np.zeros((70, 3))
            face[:, 0], face[:, 1], face[:, 2] = xs.mean() + np.arange(70) * 0.05, 10.0 + k, 1.0
        return Pose(body, *image.size, hands=hands, face=face)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return encode(marker_frames(FRAMES), tmp_path_factory.mktemp("clips") / "marker.mp4")


def run(video, detector, **kwargs):
    kwargs.setdefault("smoothing", "none")
    return extract_poses(video, detector=detector, **kwargs)


def expected_left(k: int) -> np.ndarray:
    return 7.5 + 4 * k + 2 * k + np.arange(21) * 0.1


def test_a_hand_lost_for_a_few_frames_is_bridged_like_the_body(clip):
    result = run(clip, ScriptedDetector(no_left_hand={4, 5}), max_gap=3)
    for k in (4, 5):
        hand = result.poses[k].hands[0]
        assert (hand[:, 2] == 1.0).all()
        np.testing.assert_allclose(hand[:, 0], expected_left(k), atol=0.6)  # interpolated
        np.testing.assert_allclose(hand[:, 1], 40.0, atol=0.6)
    assert result.keypoint_gaps_bridged == 21  # one two-frame gap per hand point


def test_a_hand_or_face_gone_longer_is_absent_never_at_the_origin(clip):
    detector = ScriptedDetector(no_left_hand={3, 4, 5, 6, 7}, no_face={0, 1, 10, 11})
    for smoothing in ("none", "savgol", "one_euro"):
        result = run(clip, detector, max_gap=3, smoothing=smoothing)
        assert len(result.poses) == FRAMES
        for k, pose in enumerate(result.poses):
            left = pose.hands[0]
            assert (left[:, 2] > 0).all() == (k not in {3, 4, 5, 6, 7}), (smoothing, k)
            assert (left[:, 2] == 0).all() or (left[:, 2] > 0).all()
            assert pose.has_face == (k not in {0, 1, 10, 11}), (smoothing, k)  # ends: never extrapolated
            for part in pose.parts().values():
                seen = part[..., 2] > 0
                assert not (seen & (part[..., 0] == 0) & (part[..., 1] == 0)).any()
                assert (part[~seen] == 0).all()  # a missing point is stored as (0, 0, 0): not drawn
    report = result.report()
    assert report["frames_with_face"] == FRAMES - 4 and report["frames_with_hands"] == FRAMES


def test_hands_and_face_are_smoothed_within_their_runs(clip):
    rng = np.random.default_rng(3)

    class Jittery(ScriptedDetector):
        def detect(self, image):
            pose = super().detect(image)
            face = pose.face.copy()
            face[:, :2] += rng.normal(0, 1.5, (70, 2))
            return Pose(pose.keypoints, pose.width, pose.height, hands=pose.hands, face=face)

    raw = run(clip, Jittery(), smoothing="none")
    smooth = run(clip, Jittery(), smoothing="savgol")
    truth = np.array([10.0 + k for k in range(FRAMES)])

    def error(result):
        return np.abs(np.stack([p.face[:, 1] for p in result.poses]) - truth[:, None]).mean()

    assert error(smooth) < 0.75 * error(raw)
    # a constant-velocity hand is kept exactly by Savitzky-Golay
    right = np.stack([p.hands[1, 0, 1] for p in smooth.poses])
    np.testing.assert_allclose(right, 50.0 - np.arange(FRAMES), atol=1e-6)


@pytest.mark.parametrize(
    ("parts", "hands", "face"),
    [("body", False, False), ("body+hands", True, False), ("body+face", False, True), ("full", True, True)],
)
def test_parts_keeps_only_what_it_names(clip, parts, hands, face):
    result = run(clip, ScriptedDetector(), parts=parts)
    assert all(p.has_hands == hands and p.has_face == face for p in result.poses)
    assert result.report()["parts"] == parts
    doc = result.poses.to_compact()
    assert ("hands" in doc) == hands and ("faces" in doc) == face


def test_parts_is_checked(clip):
    with pytest.raises(ExtractionError, match="parts must be one of body, body\\+hands, body\\+face, full"):
        run(clip, ScriptedDetector(), parts="hands")


def test_hold_carries_the_hands_and_face_of_the_last_pose(tmp_path):
    video = encode(marker_frames(8, missing={5, 6, 7}), tmp_path / "tail.mp4")
    result = run(video, ScriptedDetector(), max_gap=0, no_person="hold")
    assert len(result.poses) == 8 and result.frames_held == (5, 6, 7)
    for k in (5, 6, 7):
        np.testing.assert_array_equal(result.poses[k].hands, result.poses[4].hands)
        np.testing.assert_array_equal(result.poses[k].face, result.poses[4].face)


# --- MediaPipe on a clip of a person facing the camera ---------------------------------------------------


@pytest.fixture(scope="module")
def facing_clip(tmp_path_factory) -> Path:
    """The astronaut (facing the camera) at 256 px, sliding 4 px a frame, every other frame 5 % larger."""
    pytest.importorskip("mediapipe")
    frames = astronaut_frames(8, side=256, canvas=(384, 320), step=4)
    for k in range(1, 8, 2):
        frames[k] = frames[k].resize((404, 336)).crop((10, 8, 394, 328))
    return encode(frames, tmp_path_factory.mktemp("clips") / "facing.mp4", fps=8)


def test_auto_picks_the_body_model_for_body_and_holistic_for_full(facing_clip):
    assert run(facing_clip, "auto", parts="body").detector == "mediapipe"
    faced = run(facing_clip, "auto", parts="body+face")
    assert faced.detector == "mediapipe-holistic" and faced.report()["frames_with_face"] >= 6
    assert faced.report()["frames_with_hands"] == 0  # body+face: no hands even where some are found
