"""Fast tests (no model) written for mutants of ``bench/mutants.py`` that the other engine tests let
through: frame chunk boundaries and the video probe's limits (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.inputs.videoprobe import VideoTooLong, probe_video
from engine.method.batching import FrameBatcher
from tests.support.clips import astronaut_mp4, blank_mp4


# ---------------------------------------------------------------------------------------------
# Frame chunks
# ---------------------------------------------------------------------------------------------
def _chunks(batcher: FrameBatcher, frames, fail_once_at: set[int] | None = None) -> list[list[int]]:
    """The chunks ``work`` saw complete, in order; a chunk holding a frame of ``fail_once_at`` raises
    out-of-memory once (the frame is then removed from the set)."""
    done: list[list[int]] = []
    pending = set(fail_once_at or ())

    def work(chunk: list[int]) -> None:
        hit = pending & set(chunk)
        if hit and len(chunk) > 1:
            pending.difference_update(hit)
            raise torch.OutOfMemoryError("simulated")
        done.append(list(chunk))

    batcher.run(frames, work)
    return done


@pytest.mark.parametrize(("size", "count"), [(1, 5), (2, 5), (3, 7), (4, 8), (16, 5)])
def test_chunks_cover_every_frame_once_in_order(size, count):
    chunks = _chunks(FrameBatcher(size), range(count))
    assert [f for c in chunks for f in c] == list(range(count))
    # as few chunks as the size allows, balanced (20 frames at 17 run as 10 + 10, not 17 + 3)
    lengths = [len(c) for c in chunks]
    assert len(chunks) == -(-count // size) and max(lengths) <= size and max(lengths) - min(lengths) <= 1


def test_out_of_memory_retries_the_failed_chunk_at_half_size_and_keeps_that_size():
    batcher = FrameBatcher(4)
    chunks = _chunks(batcher, range(10), fail_once_at={5})
    # chunk [0..3] runs; [4..7] fails and is retried as [4, 5], then [6, 7], [8, 9] at the new size
    assert chunks == [[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]]
    assert batcher.size == 2 and batcher.shrinks == 1


# ---------------------------------------------------------------------------------------------
# The video probe's limits
# ---------------------------------------------------------------------------------------------
CLIP = astronaut_mp4(16, fps=8, side=48, canvas=(64, 64), step=1)  # 2 s at 8 fps


def test_exactly_max_frames_samples_are_admitted_one_more_is_not():
    assert probe_video(CLIP, fps=4, max_frames=8).frames == 8
    with pytest.raises(VideoTooLong, match="8 frames"):
        probe_video(CLIP, fps=4, max_frames=7)


def test_sampled_frames_count_from_start_and_round_up_a_partial_interval():
    # samples at start + k / fps before end: 0.5, 0.75, ..., 1.75 -> 6; 0.5 .. 1.6 -> 5 (1.5 included)
    assert probe_video(CLIP, fps=4, start=0.5, max_frames=64).frames == 6
    assert probe_video(CLIP, fps=4, start=0.5, end=1.6, max_frames=64).frames == 5
    with pytest.raises(VideoTooLong):
        probe_video(CLIP, fps=4, start=0.5, max_frames=5)


def test_a_long_clip_trimmed_under_the_duration_cap_is_admitted():
    long_clip = blank_mp4(64, 64, pts=[0, 8 * 200])  # two frames 200 s apart
    with pytest.raises(VideoTooLong, match="200"):
        probe_video(long_clip, fps=0.1, max_frames=64, max_duration=120)
    info = probe_video(long_clip, fps=0.1, end=100, max_frames=64, max_duration=120)
    assert info.frames == 10


def test_the_pixel_cap_is_on_width_times_height():
    wide = blank_mp4(256, 64)
    assert probe_video(wide, max_frames=64, max_pixels=256 * 64).width == 256


# ---------------------------------------------------------------------------------------------
# PATA: one transform for the whole motion
# ---------------------------------------------------------------------------------------------
def test_a_motion_that_travels_and_approaches_keeps_its_travel_and_growth_after_alignment():
    """A dancer who walks right and comes closer (the body grows): one similarity transform, fitted on
    the first frame, keeps both; fitting every frame would pin every neck on the source's."""
    from engine.poses.alignment import align_poses, fit_similarity
    from engine.poses.pose import Pose, PoseSequence
    from tests.support import EXAMPLES

    source = Pose.from_json((EXAMPLES / "astronaut_pose.json").read_text()).to_canvas(512, 512)
    base = source.keypoints.copy()
    frames = []
    for k in range(4):
        kp = base.copy()
        grow = 0.5 * (1 + 0.1 * k)
        kp[:, :2] = (kp[:, :2] - 256) * grow + 256 + (15.0 * k, 0.0)
        frames.append(source.with_keypoints(kp))
    targets = PoseSequence(frames)
    aligned = align_poses(source, targets, 0).keypoints()[1:]
    transform = fit_similarity(source, targets[0])
    original = targets.keypoints()
    visible = original[0, :, 2] > 0
    for k in range(1, 4):
        np.testing.assert_allclose(
            aligned[k, visible, :2] - aligned[0, visible, :2],
            transform.scale * (original[k, visible, :2] - original[0, visible, :2]),
            atol=1e-6,
        )
