"""The worker tunes the allocator when its engine runs on a CPU (``POSEANIMATE_CPU_ALLOCATOR_TUNING``,
on by default), and leaves it alone when told to."""

from __future__ import annotations

import pytest

from jobs.settings import Settings


@pytest.mark.parametrize("tuning", [True, False])
def test_engine_worker_on_a_cpu_tunes_the_allocator_unless_turned_off(
    tiny_model_dir, monkeypatch, tmp_path, tuning
):
    from engine.weights import runtime
    from worker.animators import load_animator

    calls: list[bool] = []
    monkeypatch.setattr(runtime, "tune_cpu_allocator", lambda: calls.append(True) or True)
    settings = Settings(
        _env_file=None,
        animator="engine",
        model=str(tiny_model_dir),
        device="cpu",
        cpu_allocator_tuning=tuning,
        model_cache_dir=tmp_path,
    )
    animator = load_animator(settings)
    assert animator.device == "cpu"
    assert calls == ([True] if tuning else [])
