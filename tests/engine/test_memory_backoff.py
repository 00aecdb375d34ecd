"""The out-of-memory back-off is a counted safety net: a failed attempt's evaluations are taken back,
so a job's counts stay those of the work that produced its frames (issue 23)."""

from __future__ import annotations

import pytest
import torch

from engine.method.batching import FrameBatcher
from engine.method.denoiser import EvalCounter


def test_failed_attempts_do_not_count_as_evaluations():
    counter = EvalCounter(stage="optimizing")
    done: list[list[int]] = []

    def work(chunk: list[int]) -> None:
        counter.forward["optimizing"] += len(chunk)  # the forward ran...
        if len(chunk) > 2:
            counter.backward["optimizing"] += len(chunk)  # ...and part of the backward
            raise torch.OutOfMemoryError("simulated: chunk too large")
        counter.backward["optimizing"] += len(chunk)
        done.append(chunk)

    batcher = FrameBatcher(8, counter=counter)
    batcher.run(range(1, 11), work)
    assert [f for chunk in done for f in chunk] == list(range(1, 11))
    assert batcher.size == 2 and batcher.shrinks == 2  # 8 -> 4 -> 2, counted
    assert counter.forward["optimizing"] == 10 and counter.backward["optimizing"] == 10


def test_a_chunk_of_one_that_does_not_fit_still_fails():
    batcher = FrameBatcher(2, counter=EvalCounter())

    def work(chunk: list[int]) -> None:
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(torch.OutOfMemoryError):
        batcher.run(range(4), work)
    assert batcher.shrinks == 1
