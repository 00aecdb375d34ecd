"""Fast tests written for mutants of ``bench/mutants.py`` that the other engine tests let through:
subject-token selection, frame chunk boundaries and the video probe's limits (issue 25)."""

from __future__ import annotations

import pytest
import torch

from engine.inputs.videoprobe import VideoTooLong, probe_video
from engine.method.batching import FrameBatcher
from engine.method.masks import select_subject_tokens, subject_token_indices
from tests.support.clips import astronaut_mp4, blank_mp4


# ---------------------------------------------------------------------------------------------
# Subject tokens
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(tiny_model_dir, subfolder="tokenizer")


def test_a_subject_word_maps_to_every_occurrence(tokenizer):
    prompt = "an astronaut waves to another astronaut"
    ids = tokenizer(prompt).input_ids
    piece = tokenizer("astronaut", add_special_tokens=False).input_ids
    starts = [i for i in range(len(ids)) if ids[i : i + len(piece)] == piece]
    assert len(starts) == 2
    expected = sorted(p for s in starts for p in range(s, s + len(piece)))
    assert subject_token_indices(tokenizer, prompt, ["astronaut"]) == expected


def test_automatic_subject_keeps_every_token_within_the_ratio_of_the_best():
    """Two words naming the character ("young astronaut") both overlap M_0; a ratio of 0.8 keeps the
    one at 0.9 x the best IoU, and drops the background word."""
    grid = 10
    reference = torch.zeros(grid, grid, dtype=torch.bool)
    reference[:, :5] = True  # 50 cells
    maps = torch.zeros(4, grid, grid)
    maps[1, :, :5] = 1.0  # IoU 1
    maps[2, :9, :5] = 1.0  # 45 cells inside: IoU 0.9
    maps[3, :, 5:] = 1.0  # the background: IoU 0
    assert select_subject_tokens(maps, reference, [1, 2, 3], threshold=0.5, ratio=0.8) == [1, 2]
    assert select_subject_tokens(maps, reference, [1, 2, 3], threshold=0.5, ratio=0.95) == [1]


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
    assert all(len(c) == size for c in chunks[:-1]) and 0 < len(chunks[-1]) <= size


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
