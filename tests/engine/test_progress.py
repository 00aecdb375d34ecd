"""Stage progress: fractions for the service, units of work for counters (the CLI's bars)."""

from __future__ import annotations

import pytest

from engine.inputs.errors import AnimationCancelled
from engine.method.progress import StageTracker


def test_steps_are_reported_in_units_of_work_alongside_the_fraction():
    fractions, steps = [], []
    tracker = StageTracker(
        lambda s, f: fractions.append((s, f)), None, lambda s, d, t: steps.append((s, d, t))
    )
    tracker.start("sampling", 4)
    for _ in range(4):
        tracker.advance()
    tracker.start("encoding", 3)
    tracker.advance(3)
    tracker.finish()
    assert steps[:5] == [("sampling", i, 4) for i in range(5)]
    assert ("encoding", 3, 3) in steps and fractions[4] == ("sampling", 1.0)
    assert len(steps) == len(fractions)


def test_a_cancel_stops_at_the_next_step():
    tracker = StageTracker(None, lambda: True)
    with pytest.raises(AnimationCancelled):
        tracker.start("inverting", 2)


def test_stage_times_wait_for_the_device_before_reading_the_clock(monkeypatch):
    """A CUDA stage only queues its kernels: its time is read after the queue drains, so the work is
    charged to the stage that did it, not to the next one."""
    import engine.method.progress as progress

    clock = {"now": 0.0, "queued": 0.0}
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock["now"])

    def drain() -> None:
        clock["now"] += clock["queued"]
        clock["queued"] = 0.0

    for synchronize, expected in ((None, {"inverting": 0.0, "sampling": 3.0}), (drain, {"inverting": 3.0})):
        clock["queued"] = 0.0
        tracker = StageTracker(None, None, synchronize=synchronize)
        tracker.start("inverting", 1)
        clock["queued"] += 3.0  # the stage launched 3 s of device work and returned at once
        tracker.start("sampling", 1)
        drain()  # e.g. the next stage's first read of a result
        tracker.finish()
        assert {k: tracker.timings[k] for k in expected} == expected


def test_the_synchronizer_is_cuda_only(monkeypatch):
    import torch

    from engine.method.progress import device_synchronizer

    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(device))
    assert device_synchronizer(torch.device("cpu")) is None
    sync = device_synchronizer(torch.device("cuda", 0))
    assert sync is not None
    sync()
    assert calls == [torch.device("cuda", 0)]
