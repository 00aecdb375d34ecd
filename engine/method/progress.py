"""Stage progress and cooperative cancellation, checked between model steps."""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.inputs.errors import AnimationCancelled

STAGES = ("inverting", "optimizing", "sampling", "encoding")

ProgressCallback = Callable[[str, float], None]
StepCallback = Callable[[str, int, int], None]
"""``on_step(stage, done, total)``: the same reports in units of work (steps, frames), for counters."""
CancelCheck = Callable[[], bool]


def device_synchronizer(device) -> Callable[[], None] | None:
    """What ``StageTracker`` calls before reading the clock: ``torch.cuda.synchronize(device)`` on a
    CUDA device (its kernels run asynchronously: without it a stage's time would be its launch time
    and the next stage would be charged for the rest), None where the host waits anyway (CPU)."""
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    return lambda: torch.cuda.synchronize(device)


class StageTracker:
    """Reports ``on_progress(stage, fraction)`` and raises ``AnimationCancelled`` when asked to stop.

    ``advance()`` is called after each unit of work (one denoising step, one decoded frame); it
    reports, then checks ``should_cancel``, so a cancel takes effect before the next step starts.
    """

    def __init__(
        self,
        on_progress: ProgressCallback | None,
        should_cancel: CancelCheck | None,
        on_step: StepCallback | None = None,
        synchronize: Callable[[], None] | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._synchronize = synchronize
        self._on_step = on_step
        self._should_cancel = should_cancel
        self.stage = "setup"
        self._total = 1
        self._done = 0
        self._started = self._clock()
        self.timings: dict[str, float] = {}

    def start(self, stage: str, total: int) -> None:
        self.finish()
        self.stage, self._total, self._done = stage, max(1, total), 0
        self._started = self._clock()
        self.check()
        self._report(0.0)

    def advance(self, units: int = 1) -> None:
        self._done = min(self._total, self._done + units)
        self._report(self._done / self._total)
        self.check()

    def check(self) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise AnimationCancelled(self.stage)

    def finish(self) -> None:
        """Close the current stage and record its wall time (seconds)."""
        if self.stage in STAGES and self.stage not in self.timings:
            self.timings[self.stage] = self._clock() - self._started
            if self._done < self._total:
                self._done = self._total
                self._report(1.0)

    def _clock(self) -> float:
        """The time once the device has finished the work queued so far (stage times are honest)."""
        if self._synchronize is not None:
            self._synchronize()
        return time.perf_counter()

    def _report(self, fraction: float) -> None:
        if self._on_progress is not None:
            self._on_progress(self.stage, fraction)
        if self._on_step is not None:
            self._on_step(self.stage, round(fraction * self._total), self._total)
