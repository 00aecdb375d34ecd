"""The worker's memory metrics (issue 23): predicted vs actual peak per stage, their ratio, the
out-of-memory back-offs and the offloads, from the plan a job recorded; per-stage CUDA peaks."""

from __future__ import annotations

import math

from prometheus_client import REGISTRY

from worker import memory

GiB = 2**30


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


class FakeCuda:
    """``torch.cuda``'s allocator statistics, driven by the test."""

    def __init__(self) -> None:
        self.allocated = 3 * GiB
        self.peak = self.allocated

    def memory_allocated(self) -> int:
        return self.allocated

    def max_memory_allocated(self) -> int:
        return self.peak

    def reset_peak_memory_stats(self) -> None:
        self.peak = self.allocated


class FakeTorch:
    def __init__(self) -> None:
        self.cuda = FakeCuda()


def test_stage_peaks_are_per_stage_above_the_memory_held_at_the_start():
    torch = FakeTorch()
    peaks = memory.StagePeaks(torch)
    for stage, peak in (("inverting", 5), ("inverting", 6), ("sampling", 4), ("encoding", 7)):
        peaks.at(stage)
        torch.cuda.peak = max(torch.cuda.peak, peak * GiB)
    assert peaks.finish() == {"inverting": 3 * GiB, "sampling": 1 * GiB, "encoding": 4 * GiB}
    assert peaks.overall == 7 * GiB


def test_observe_exports_predicted_actual_ratio_backoffs_and_offloads():
    backoffs = _sample("poseanimate_memory_oom_backoffs_total") or 0.0
    offloads = _sample("poseanimate_memory_offloads_total") or 0.0
    record = {
        "source": "memory model",
        "fits": True,
        "offload": True,
        "predicted_peak_bytes": 8 * GiB,
        "stages": {
            "optimizing": {"chunk": 2, "chunks": [2, 2], "checkpointing": True, "peak_bytes": 8 * GiB},
            "encoding": {"chunk": 5, "chunks": [5], "checkpointing": False, "peak_bytes": 2 * GiB},
        },
    }
    memory.observe(memory.plan_view(record, 2, {"optimizing": 6 * GiB}))
    assert _sample("poseanimate_memory_predicted_peak_bytes", stage="optimizing") == 8 * GiB
    assert _sample("poseanimate_memory_actual_peak_bytes", stage="optimizing") == 6 * GiB
    assert math.isclose(_sample("poseanimate_memory_peak_ratio", stage="optimizing") or 0, 0.75)
    assert _sample("poseanimate_memory_predicted_peak_bytes", stage="encoding") == 2 * GiB
    # nothing measured for a stage (a CPU worker): no actual or ratio series rather than a made-up one
    assert _sample("poseanimate_memory_actual_peak_bytes", stage="encoding") is None
    assert _sample("poseanimate_memory_peak_ratio", stage="encoding") is None
    assert _sample("poseanimate_memory_oom_backoffs_total") == backoffs + 2
    assert _sample("poseanimate_memory_offloads_total") == offloads + 1


def test_a_cpu_or_fixed_chunk_job_shows_the_chunks_it_ran_with():
    view = memory.plan_view({"source": "cpu", "chunk": 16, "chunks_at_end": {"sampling": 16}}, 0, None)
    assert view["source"] == "cpu" and view["fits"] is None and not view["offload"]
    assert view["stages"] == {"sampling": {"chunk": 16, "actual_peak_bytes": None}}
