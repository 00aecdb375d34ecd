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
