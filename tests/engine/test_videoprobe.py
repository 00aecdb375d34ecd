"""The video probe (``engine.inputs.videoprobe``): what the API runs on a driving video at submission, with
no decoding beyond the first frame. It must refuse what extraction would refuse for the clip itself
(truncated or damaged files, not a video, a still image, too many pixels, too long) and count the
frames extraction samples, on MP4/H.264, WebM/VP9 and animated GIF."""

from __future__ import annotations

import time

import pytest

from engine.inputs.videoprobe import (
    ExtractionError,
    VideoTooLarge,
    VideoTooLong,
    VideoUnreadable,
    probe_video,
)
from engine.poses.extract import extract_poses
from engine.poses.pose import Pose
from tests.support.clips import astronaut_gif, astronaut_mp4, astronaut_webm, blank_mp4
from tests.support.payloads import png_bytes

CLIPS = {
    "mp4": astronaut_mp4(16, fps=8, side=48, canvas=(64, 64), step=1),
    "webm": astronaut_webm(16, fps=8, side=48, canvas=(64, 64), step=1),
    "gif": astronaut_gif(16, fps=8, side=48, canvas=(64, 64), step=1),
}


class EveryFrame:
    """A detector that finds the same person in every frame: extraction then keeps every sample."""

    name = "every-frame"

    def detect(self, image):
        import numpy as np

        kp = np.zeros((18, 3))
        kp[0] = (image.width / 2, image.height / 2, 1.0)
        kp[1] = (image.width / 2, image.height / 2 + 4, 1.0)
        return Pose(kp, *image.size)


@pytest.mark.parametrize("kind", sorted(CLIPS))
def test_a_whole_clip_passes_with_its_size_duration_and_frames(kind):
    info = probe_video(CLIPS[kind], max_frames=64)
    assert (info.width, info.height) == (64, 64)
    assert info.packets == 16 and info.frames == 16
    # GIF delays are in centiseconds: 125 ms is stored as 12 cs (8.33 fps)
    assert info.source_fps == pytest.approx(8.0, rel=0.05) and info.duration_s == pytest.approx(2.0, abs=0.13)


@pytest.mark.parametrize("kind", sorted(CLIPS))
@pytest.mark.parametrize(
    ("fps", "start", "end"),
    [(None, None, None), (4, None, None), (3, 0.5, None), (8, 0.25, 1.5), (12, None, 1.0)],
)
def test_the_probe_counts_the_frames_extraction_samples(kind, fps, start, end):
    info = probe_video(CLIPS[kind], fps=fps, start=start, end=end, max_frames=64)
    result = extract_poses(
        CLIPS[kind], fps=fps, start=start, end=end, detector=EveryFrame(), smoothing="none"
    )
    assert info.frames == result.frames_sampled


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.6, 0.9, 0.97])
def test_a_truncated_mp4_is_unreadable(fraction):
    data = CLIPS["mp4"]
    with pytest.raises(VideoUnreadable):
        probe_video(data[: int(len(data) * fraction)], max_frames=64)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_a_webm_cut_well_short_of_its_declared_duration_is_unreadable(fraction):
    data = CLIPS["webm"]
    with pytest.raises(VideoUnreadable, match="truncated"):
        probe_video(data[: int(len(data) * fraction)], max_frames=64)


@pytest.mark.parametrize(
    "data",
    [b"", b"not a video at all" * 10, png_bytes(), b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200],
    ids=["empty", "text", "png", "ftyp-only"],
)
def test_things_that_are_not_videos_are_unreadable(data):
    with pytest.raises(VideoUnreadable):
        probe_video(data, max_frames=64)


def test_a_stream_whose_frames_do_not_decode_is_unreadable():
    data = bytearray(CLIPS["mp4"])
    mdat = data.index(b"mdat")
    data[mdat + 4 : mdat + 400] = b"\xff" * 396  # the first frame's H.264 data, garbage
    with pytest.raises(VideoUnreadable):
        probe_video(bytes(data), max_frames=64)


def test_too_many_pixels_is_refused_from_the_header_in_milliseconds():
    data = blank_mp4(4096, 2304)
    started = time.perf_counter()
    with pytest.raises(VideoTooLarge, match="4096x2304"):
        probe_video(data, max_frames=64)
    assert time.perf_counter() - started < 1.0  # no frame is decoded
    assert probe_video(data, max_frames=64, max_pixels=4096 * 2304).width == 4096


def test_too_long_or_too_many_frames_is_refused_and_trimming_admits_it():
    long_clip = blank_mp4(64, 64, pts=[0, 8 * 200])  # two frames 200 s apart
    with pytest.raises(VideoTooLong, match="200"):
        probe_video(long_clip, max_frames=64, max_duration=120)
    with pytest.raises(VideoTooLong, match="16 frames"):
        probe_video(CLIPS["mp4"], max_frames=10)
    assert probe_video(CLIPS["mp4"], fps=4, max_frames=10).frames == 8
    assert probe_video(CLIPS["mp4"], end=1.0, max_frames=10).frames == 8


def test_a_start_past_the_end_is_refused():
    with pytest.raises(ExtractionError, match="past the end"):
        probe_video(CLIPS["mp4"], start=5.0, max_frames=64)


def test_a_path_works_like_bytes(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(CLIPS["mp4"])
    assert probe_video(path, max_frames=64) == probe_video(CLIPS["mp4"], max_frames=64)
    with pytest.raises(VideoUnreadable, match="no such video file"):
        probe_video(tmp_path / "missing.mp4", max_frames=64)
