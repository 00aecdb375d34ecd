"""A job's memory on the worker (issue 23): the engine's plan as the job view shows it
(``jobs.contract.MemoryPlan``), the measured peak of each stage on CUDA, and their Prometheus metrics.

Predicted and actual peaks share one base: bytes above what was allocated when the job started (the
resident weights), as the memory model counts them on a live device. On a CPU worker nothing is
measured: ``actual_peak_bytes`` is null and the actual/ratio gauges have no sample for the stage
(Prometheus shows no series rather than a made-up number).
"""

from __future__ import annotations

from typing import Any

from worker import metrics


class StagePeaks:
    """Per-stage CUDA peaks: call ``at(stage)`` from the progress callback (every call; a change of
    stage closes the previous one) and ``finish()`` at the end. ``torch`` is the worker's module."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.base = int(torch.cuda.memory_allocated())
        self.stage: str | None = None
        self.peaks: dict[str, int] = {}
        self.overall = self.base
        torch.cuda.reset_peak_memory_stats()

    def _close(self) -> None:
        peak = int(self.torch.cuda.max_memory_allocated())
        self.overall = max(self.overall, peak)
        if self.stage is not None:
            self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), peak - self.base)
        self.torch.cuda.reset_peak_memory_stats()

    def at(self, stage: str) -> None:
        if stage != self.stage:
            self._close()
            self.stage = stage

    def finish(self) -> dict[str, int]:
        self._close()
        self.stage = None
        return dict(self.peaks)


def plan_view(record: dict[str, Any], oom_backoffs: int, actual: dict[str, int] | None) -> dict[str, Any]:
    """The engine's ``AnimationResult.memory_plan`` as ``jobs.contract.MemoryPlan`` (a plain dict)."""
    actual = actual or {}
    stages: dict[str, dict[str, Any]] = {}
    for name, s in (record.get("stages") or {}).items():
        stages[name] = {
            "chunk": int(s["chunk"]),
            "chunks": list(s.get("chunks", [])),
            "checkpointing": bool(s.get("checkpointing", False)),
            "offloaded": list(s.get("offloaded", [])),
            "predicted_peak_bytes": s.get("peak_bytes"),
            "actual_peak_bytes": actual.get(name),
        }
    if not stages:  # a fixed chunk (config) or a CPU worker: the chunks it ran with, nothing predicted
        for name, chunk in (record.get("chunks_at_end") or {}).items():
            stages[name] = {"chunk": max(1, int(chunk)), "actual_peak_bytes": actual.get(name)}
    return {
        "source": str(record.get("source", "unknown")),
        "fits": record.get("fits"),
        "offload": bool(record.get("offload", False)),
        "checkpointing": bool(record.get("checkpointing", False)),
        "predicted_peak_bytes": record.get("predicted_peak_bytes"),
        "available_bytes": record.get("available_bytes"),
        "oom_backoffs": int(oom_backoffs),
        "stages": stages,
    }


def observe(plan: dict[str, Any]) -> None:
    """Prometheus: predicted and actual peak per stage, their ratio, back-offs and offloads."""
    if plan.get("oom_backoffs"):
        metrics.MEMORY_OOM_BACKOFFS.inc(plan["oom_backoffs"])
    if plan.get("offload"):
        metrics.MEMORY_OFFLOADS.inc()
    for stage, s in plan.get("stages", {}).items():
        predicted, actual = s.get("predicted_peak_bytes"), s.get("actual_peak_bytes")
        if predicted is not None:
            metrics.MEMORY_PREDICTED_PEAK.labels(stage).set(float(predicted))
        if actual is not None:
            metrics.MEMORY_ACTUAL_PEAK.labels(stage).set(float(actual))
            if predicted:
                metrics.MEMORY_PEAK_RATIO.labels(stage).set(float(actual) / float(predicted))
