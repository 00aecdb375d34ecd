"""Pose extraction from driving videos: decoding, resampling, trimming, limits, gaps, smoothing, and
MediaPipe following a real photo moved by a known transform."""

import io
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.poses.detect import MediaPipePoseDetector
from engine.poses.extract import (
    ExtractionError,
    NoPersonFound,
    VideoTooLarge,
    VideoTooLong,
    VideoUnreadable,
    bridge_gaps,
    extract_poses,
    smooth_track,
)
from engine.poses.pose import KEYPOINT_NAMES, Pose
from tests.support.clips import blank_mp4
from tests.support.clips import encode_clip as encode

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


class MarkerDetector:
    """A stand-in detector: the 'nose' is the centroid of the bright pixels, nobody when there are
    none. It tells exactly which source frame a sample came from."""

    name = "marker"

    def detect(self, image: Image.Image) -> Pose | None:
        ys, xs = np.nonzero(np.asarray(image.convert("L")) > 200)
        if len(xs) == 0:
            return None
        kp = np.zeros((18, 3))
        kp[KP["nose"]] = (xs.mean(), ys.mean(), 1.0)
        kp[KP["neck"]] = (xs.mean(), ys.mean() + 10, 0.9)
        return Pose(kp, *image.size)


def marker_frames(count: int, size=(96, 64), missing=()) -> list[Image.Image]:
    """Frame k shows an 8x8 white square at x = 4 + 4k (centre 7.5 + 4k) on black, unless k is missing."""
    frames = []
    for k in range(count):
        frame = Image.new("RGB", size, (0, 0, 0))
        if k not in missing:
            frame.paste((255, 255, 255), (4 + 4 * k, 20, 12 + 4 * k, 28))
        frames.append(frame)
    return frames


def source_index(result) -> list[int]:
    """Which marker frame each extracted pose came from."""
    return [round((x - 7.5) / 4) for x in result.poses.keypoints()[:, KP["nose"], 0]]


@pytest.fixture(scope="module")
def marker_clip(tmp_path_factory) -> Path:
    """12 frames at 24 fps (0.5 s)."""
    return encode(marker_frames(12), tmp_path_factory.mktemp("clips") / "marker.mp4")


def extract(video, **kwargs):
    kwargs.setdefault("detector", MarkerDetector())
    kwargs.setdefault("smoothing", "none")
    return extract_poses(video, **kwargs)


# --- resampling and trimming ------------------------------------------------------------------------


def test_keeping_the_source_rate_samples_every_frame(marker_clip):
    result = extract(marker_clip)
    assert len(result.poses) == result.frames_sampled == result.frames_decoded == 12
    assert source_index(result) == list(range(12))
    assert result.fps == result.source_fps == 24.0
    assert (result.width, result.height) == (result.poses.width, result.poses.height) == (96, 64)
    np.testing.assert_allclose(result.times, np.arange(12) / 24, atol=1e-6)


@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (8, [0, 3, 6, 9]),  # every third frame
        (12, [0, 2, 4, 6, 8, 10]),
        (10, [0, 2, 4, 7, 9]),  # t = 0.3 s shows frame 7 (0.292 s), not 8 (0.333 s)
        (30, [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 8, 9, 10, 11]),  # upsampling repeats frames
    ],
)
def test_resampling_takes_the_frame_on_screen_at_each_sample_time(marker_clip, fps, expected):
    result = extract(marker_clip, fps=fps)
    assert source_index(result) == expected
    assert len(result.poses) == int(np.ceil(0.5 * fps - 1e-9))  # 0.5 s of video
    assert result.fps == fps
    np.testing.assert_allclose(result.times, np.arange(len(expected)) / fps, atol=1e-6)


def test_trimming_by_start_and_end_seconds(marker_clip):
    assert source_index(extract(marker_clip, start=0.125, end=0.375)) == [3, 4, 5, 6, 7, 8]
    assert source_index(extract(marker_clip, fps=8, start=0.25)) == [6, 9]
    trimmed = extract(marker_clip, end=0.25)
    assert source_index(trimmed) == [0, 1, 2, 3, 4, 5]
    assert trimmed.frames_decoded < 12  # decoding stops at the end of the trim


def test_bytes_are_accepted_like_a_path(marker_clip):
    assert source_index(extract(marker_clip.read_bytes(), fps=8)) == [0, 3, 6, 9]


@pytest.mark.parametrize(("fmt", "codec"), [("webm", "libvpx-vp9"), ("mov", "libx264")])
def test_webm_vp9_and_mov_decode(tmp_path, fmt, codec):
    path = encode(marker_frames(12), tmp_path / f"clip.{fmt}", fmt=fmt, codec=codec)
    assert source_index(extract(path)) == list(range(12))
    assert source_index(extract(path, fps=8)) == [0, 3, 6, 9]


def test_animated_gif_decodes_at_its_frame_delays(tmp_path):
    frames = marker_frames(12)
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert source_index(extract(tmp_path / "clip.gif")) == list(range(12))
    # 20 fps source sampled at 8 fps: t = 0, 0.125, 0.25, 0.375, 0.5 s -> frames 0, 2, 5, 7, 10.
    assert source_index(extract(tmp_path / "clip.gif", fps=8)) == [0, 2, 5, 7, 10]


def test_display_rotation_is_applied_as_players_show_it():
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(90)  # a phone held upright: shown rotated 90 degrees anticlockwise
        for k, image in enumerate(marker_frames(4)):
            frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    result = extract(buf.getvalue())
    assert (result.width, result.height) == (64, 96)
    # (x, y) on the stored frame is shown at (y, 95 - x).
    expected = [(23.5, 95 - (7.5 + 4 * k)) for k in range(4)]
    np.testing.assert_allclose(result.poses.keypoints()[:, KP["nose"], :2], expected, atol=0.6)


# --- limits and hostile files, refused before (or early in) decoding ------------------------------------


def refused(error, video, **kwargs):
    start = time.perf_counter()
    with pytest.raises(error) as info:
        extract(video, **kwargs)
    assert time.perf_counter() - start < 2.0
    assert "\n" not in str(info.value)
    return info.value


def test_frame_cap_is_checked_from_the_header(tmp_path):
    path = encode(marker_frames(48), tmp_path / "long.mp4")  # 2 s at 24 fps
    err = refused(VideoTooLong, path, max_frames=20)
    assert err.code == "video_too_long"
    assert "48 frames at 24 fps" in str(err) and "at most 20" in str(err)
    assert len(extract(path, max_frames=20, fps=8, no_person="keep").poses) == 16
    assert len(extract(path, max_frames=20, start=0.25, end=0.75).poses) == 12  # a trim that fits


def test_declared_duration_beyond_the_limit_is_refused_unread():
    two_frames_1000_s_apart = blank_mp4(64, 64, pts=[0, 8 * 1000])
    err = refused(VideoTooLong, two_frames_1000_s_apart)
    assert "lasts 1000" in str(err) and "120 s" in str(err)


def test_huge_frames_are_refused_from_the_header():
    err = refused(VideoTooLarge, blank_mp4(4096, 2176))
    assert err.code == "video_too_large" and "4096x2176" in str(err)
    assert "96x64" in str(refused(VideoTooLarge, blank_mp4(96, 64), max_pixels=1000))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not a video at all", "not a video PyAV can read"),
        ((EXAMPLES / "astronaut.jpg").read_bytes(), "still image"),
    ],
)
def test_non_videos_are_refused(data, message):
    err = refused(VideoUnreadable, data)
    assert message in str(err) and err.code == "video_unreadable"


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.9])
def test_truncated_videos_are_refused(marker_clip, fraction):
    data = marker_clip.read_bytes()
    refused(VideoUnreadable, data[: int(len(data) * fraction)])


def test_gif_with_absurd_declared_size_is_refused(tmp_path):
    frames = marker_frames(4)
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=50)
    data = bytearray((tmp_path / "clip.gif").read_bytes())
    data[6:10] = (60000).to_bytes(2, "little") * 2  # logical screen 60000 x 60000
    refused(ExtractionError, bytes(data))


def test_missing_file_and_bad_arguments(tmp_path, marker_clip):
    assert "no such video file" in str(refused(VideoUnreadable, tmp_path / "nope.mp4"))
    for kwargs, needle in [
        ({"fps": 0}, "fps"),
        ({"start": -1}, "start"),
        ({"start": 0.3, "end": 0.2}, "after start"),
        ({"start": 10}, "past the end"),
        ({"smoothing": "kalman"}, "smoothing"),
        ({"window": 4}, "odd"),
        ({"max_gap": -1}, "max_gap"),
        ({"no_person": "ignore"}, "no_person"),
    ]:
        assert needle in str(refused(ExtractionError, marker_clip, **kwargs)), kwargs


# --- people missing: the policy, gap bridging ----------------------------------------------------------


def test_a_clip_with_nobody_in_it_is_a_clear_error(tmp_path):
    path = encode([Image.new("RGB", (96, 64), (40, 90, 160))] * 8, tmp_path / "blue.mp4", fps=8)
    err = refused(NoPersonFound, path)
    assert err.code == "no_person" and "no person found" in str(err)


def test_noise_has_no_person_for_mediapipe(tmp_path):
    pytest.importorskip("mediapipe")
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)) for _ in range(4)]
    with pytest.raises(NoPersonFound, match="no person found"):
        extract_poses(encode(frames, tmp_path / "noise.mp4", fps=8), detector="mediapipe")


@pytest.fixture(scope="module")
def gappy_clip(tmp_path_factory) -> Path:
    """Nobody in frames 3-4 (short gap) and 8-11 (the end)."""
    path = tmp_path_factory.mktemp("clips") / "gaps.mp4"
    return encode(marker_frames(12, missing={3, 4, 8, 9, 10, 11}), path)


def test_short_gaps_are_bridged_and_frames_left_empty_are_dropped_and_reported(gappy_clip):
    result = extract(gappy_clip, max_gap=2)
    assert result.frames_without_person == (3, 4, 8, 9, 10, 11)
    assert result.frames_bridged == (3, 4)
    assert result.frames_dropped == (8, 9, 10, 11)
    assert len(result.poses) == 8
    nose = result.poses.keypoints()[:, KP["nose"]]
    # Frames 3 and 4 interpolate between the real frames 2 and 5 (x = 15.5 and 27.5).
    np.testing.assert_allclose(nose[3:5, 0], [19.5, 23.5], atol=0.6)
    assert result.report()["frames_dropped"] == [8, 9, 10, 11]


def test_gaps_longer_than_max_gap_are_never_invented(gappy_clip):
    result = extract(gappy_clip, max_gap=1, no_person="keep")
    assert len(result.poses) == 12 and result.frames_bridged == ()
    for i in (3, 4, 8, 9, 10, 11):
        assert not result.poses[i].visible.any(), i


def test_no_person_hold_keeps_every_sampled_frame_at_its_clip_time(tmp_path, gappy_clip):
    sampled = extract(gappy_clip, max_gap=2, no_person="keep")
    held = extract(gappy_clip, max_gap=2, no_person="hold")
    assert len(held.poses) == held.frames_sampled == len(sampled.poses) == 12
    assert held.times == sampled.times
    assert held.frames_held == (8, 9, 10, 11) and held.frames_dropped == ()
    assert held.report()["frames_held"] == [8, 9, 10, 11]
    # the bridged frames are interpolated as before; the tail repeats the last pose seen (frame 7)
    assert source_index(held)[:8] == source_index(sampled)[:8]
    for i in range(8, 12):
        np.testing.assert_array_equal(held.poses[i].keypoints, held.poses[7].keypoints)
    # nobody at the start: those frames take the first pose seen
    late = extract(
        encode(marker_frames(6, missing={0, 1}), tmp_path / "late.mp4"), max_gap=0, no_person="hold"
    )
    assert source_index(late) == [2, 2, 2, 3, 4, 5] and late.frames_held == (0, 1)
    np.testing.assert_allclose(late.times, np.arange(6) / 24, atol=1e-6)


def test_no_person_policy_error_names_the_frames(gappy_clip):
    with pytest.raises(NoPersonFound, match="sampled frames 8, 9, 10, 11"):
        extract(gappy_clip, max_gap=2, no_person="error")


def test_bridging_fills_only_interior_gaps_up_to_max_gap():
    kp = np.zeros((8, 18, 3))
    seen = [0, 3, 7]  # gaps of 2 (frames 1-2) and 3 (frames 4-6)
    kp[seen, 0] = [[0, 0, 0.9], [30, 3, 0.6], [70, 7, 1.0]]
    out, filled = bridge_gaps(kp, max_gap=2)
    assert filled == 1
    np.testing.assert_allclose(out[1:3, 0], [[10, 1, 0.6], [20, 2, 0.6]])
    assert (out[4:7, 0] == 0).all()
    assert (out[:, 1:] == 0).all()  # other keypoints were never seen: still missing


# --- smoothing ----------------------------------------------------------------------------------------------


def test_savgol_keeps_constant_velocity_motion_and_removes_jitter():
    rng = np.random.default_rng(1)
    t = np.arange(20, dtype=float)
    kp = np.zeros((20, 18, 3))
    kp[:, 0] = np.stack([10 + 3 * t, 50 - 2 * t, np.ones(20)], axis=1)
    np.testing.assert_allclose(smooth_track(kp, "savgol", fps=8), kp, atol=1e-9)
    noisy = kp.copy()
    noisy[:, 0, :2] += rng.normal(0, 2, (20, 2))
    smoothed = smooth_track(noisy, "savgol", fps=8)
    err_before = np.abs(noisy[:, 0, :2] - kp[:, 0, :2]).mean()
    err_after = np.abs(smoothed[:, 0, :2] - kp[:, 0, :2]).mean()
    assert err_after < 0.8 * err_before
    one_euro = smooth_track(noisy, "one_euro", fps=8)
    assert (
        np.abs(np.diff(one_euro[:, 0, :2], 2, axis=0)).mean()
        < np.abs(np.diff(noisy[:, 0, :2], 2, axis=0)).mean()
    )


def test_smoothing_never_touches_missing_keypoints_or_crosses_gaps():
    kp = np.zeros((10, 18, 3))
    kp[:4, 0] = [[0, 0, 1]] * 4
    kp[6:, 0] = [[100, 100, 1]] * 4
    out = smooth_track(kp, "savgol", fps=8)
    np.testing.assert_allclose(out, kp)  # each run is constant: the far run does not pull on it
    assert (smooth_track(kp, "one_euro", fps=8)[4:6] == 0).all()


# --- MediaPipe on the astronaut photo moved by a known transform --------------------------------------------

SIDE, CANVAS, STEP, FRAMES = 192, (320, 256), 6, 10
FACE = ("nose", "r_eye", "l_eye", "r_ear", "l_ear")
TORSO = ("neck", "r_shoulder", "l_shoulder")
# At a 192-px portrait the face landmarks sit within about 3.5 px of where the photo's own pose maps
# to; the suit's shoulders are softer (about 12 px). Tolerances: 5 px (face), 16 px (neck, shoulders).
FACE_TOL, TORSO_TOL = 5.0, 16.0


@pytest.fixture(scope="module")
def astronaut_clip(tmp_path_factory) -> tuple[Path, Pose]:
    """The astronaut scaled to 192 px, sliding right 6 px per frame on a grey 320 x 256 canvas
    (10 frames at 24 fps); and her pose on frame 0 as the transform predicts it."""
    pytest.importorskip("mediapipe")
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")
    small = photo.resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    frames = []
    for k in range(FRAMES):
        canvas = Image.new("RGB", CANVAS, (120, 120, 120))
        canvas.paste(small, (16 + STEP * k, CANVAS[1] - SIDE))
        frames.append(canvas)
    path = encode(frames, tmp_path_factory.mktemp("clips") / "astronaut.mp4")
    detector = MediaPipePoseDetector()
    try:
        still = detector.detect(photo)
    finally:
        detector.close()
    kp = still.keypoints.copy()
    kp[:, :2] = kp[:, :2] * (SIDE / photo.width) + (16, CANVAS[1] - SIDE)
    return path, Pose(kp, *CANVAS)


def test_extracted_keypoints_follow_the_known_translation(astronaut_clip):
    path, first = astronaut_clip
    result = extract_poses(path, detector="mediapipe", smoothing="none")
    assert result.detector == "mediapipe" and len(result.poses) == FRAMES
    assert result.frames_without_person == ()
    kp = result.poses.keypoints()
    for names, tol in ((FACE, FACE_TOL), (TORSO, TORSO_TOL)):
        for name in names:
            j = KP[name]
            assert first.visible[j] and (kp[:, j, 2] > 0).all(), name
            expected_x = first.keypoints[j, 0] + STEP * np.arange(FRAMES)
            assert np.abs(kp[:, j, 0] - expected_x).max() < tol, name
            assert np.abs(kp[:, j, 1] - first.keypoints[j, 1]).max() < tol, name


def test_smoothed_extraction_at_a_lower_rate_still_follows_the_motion(astronaut_clip):
    path, first = astronaut_clip
    result = extract_poses(path, fps=12, detector="mediapipe")  # savgol by default
    assert len(result.poses) == 5  # 10 frames / 24 fps = 0.417 s -> samples at 0, 1/12, ... 4/12
    kp = result.poses.keypoints()
    source_frames = np.arange(5) * 2
    for name in FACE:
        j = KP[name]
        expected_x = first.keypoints[j, 0] + STEP * source_frames
        assert np.abs(kp[:, j, 0] - expected_x).max() < FACE_TOL, name


def test_extract_poses_is_exported_lazily_without_torch_av_or_mediapipe():
    import ast

    import engine
    from engine.poses import extract as module

    assert engine.extract_poses is extract_poses
    tree = ast.parse(Path(module.__file__).read_text())
    top = {a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module for n in tree.body if isinstance(n, ast.ImportFrom)}
    assert not {"av", "mediapipe", "torch"} & top


def test_progress_counts_detected_frames_against_the_headers_promise_and_can_stop_it(marker_clip):
    calls = []
    extract(marker_clip, fps=8, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(k, 4) for k in range(1, 5)]

    class Stop(Exception):
        pass

    def stop_at_two(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        extract(marker_clip, progress=stop_at_two)
