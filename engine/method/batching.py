"""Frame chunking: how many frames go through the U-Net together (planned from the measured memory
model), and backing off on out-of-memory as a counted safety net."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

CPU_FRAME_BATCH = 16
MAX_AUTO_FRAME_BATCH = 64
PLANNED_STAGES = ("optimizing", "sampling", "encoding")

log = logging.getLogger("engine.memory")


@dataclass
class FramePlan:
    """Frames per chunk for each batched stage, checkpointing, and the plan as recorded in the job."""

    sizes: dict[str, int]
    checkpointing: bool
    record: dict = field(default_factory=dict)
    offloaded: dict[str, list[str]] = field(default_factory=dict)
    """Per stage, the modules the plan keeps in host memory during it (weight offload); empty: none."""


def plan_frame_batches(
    modules: dict,
    device: torch.device,
    latent_hw: tuple[int, int],
    generated_frames: int,
    *,
    steps: int,
    checkpointing: bool,
    use_pacm: bool = True,
    frame_batch_size: int | None = None,
    budget_bytes: int | None = None,
) -> FramePlan:
    """Per-stage chunks, checkpointing and weight offload from the measured memory model
    (``engine.method.memory``) and the device's free memory, PyTorch's reusable cache counted; a
    fixed ``frame_batch_size`` wins; ``budget_bytes`` (weights included) plans for that much memory on
    any device; otherwise the CPU gets ``CPU_FRAME_BATCH`` (its memory is not the limit). Chunks are
    balanced by ``FrameBatcher``."""
    if frame_batch_size or (device.type != "cuda" and budget_bytes is None):
        chunk = frame_batch_size or CPU_FRAME_BATCH
        record = {"source": "config" if frame_batch_size else "cpu", "chunk": chunk}
        log.info("memory plan: %s", record)
        return FramePlan(dict.fromkeys(PLANNED_STAGES, chunk), checkpointing, record)
    from engine.inputs.memoryplan import plan_job
    from engine.method import memory

    model = memory.model_for(modules, latent_hw)
    counted = budget_bytes is not None
    available = budget_bytes if budget_bytes is not None else memory.device_available_bytes(device)
    plan = plan_job(
        model,
        generated_frames,
        available,
        steps=steps,
        weights_counted=counted,
        max_chunk=MAX_AUTO_FRAME_BATCH,
        use_pacm=use_pacm,
    )
    sizes = {s: plan.stages[s].chunk for s in PLANNED_STAGES if s in plan.stages}
    sizes.setdefault("optimizing", 1)
    ckpt = checkpointing or any(s.checkpointing for s in plan.stages.values())
    record = {"source": "budget" if counted else "memory model", **plan.summary()}
    log.info("memory plan: %s", record)
    offloaded = {name: list(s.offloaded) for name, s in plan.stages.items()} if plan.offload else {}
    return FramePlan(sizes, ckpt, record, offloaded)


class WeightPlacement:
    """Weight offload as the plan says: ``enter(stage)`` keeps on the compute device only the modules
    ``stage`` runs and moves the others (``offloaded[stage]``) to host memory; ``restore()`` brings
    every module back. Without a plan to offload it does nothing. ``resident`` names the modules on
    the device; ``moves`` counts module transfers (each is a host<->device copy of its weights)."""

    def __init__(
        self, modules: dict, device: torch.device | None = None, offloaded: dict[str, list[str]] | None = None
    ) -> None:
        self.modules = dict(modules)
        self.device = device
        self.offloaded = dict(offloaded or {})
        self.resident = set(self.modules)
        self.moves = 0

    def _place(self, name: str, on_device: bool) -> None:
        if (name in self.resident) == on_device or self.device is None:
            return
        self.modules[name].to(self.device if on_device else torch.device("cpu"))
        self.moves += 1
        (self.resident.add if on_device else self.resident.discard)(name)

    def enter(self, stage: str) -> None:
        if stage not in self.offloaded:
            return
        away = set(self.offloaded[stage])
        for name in self.modules:  # free first, then bring in: the peak stays the stage's own
            if name in away:
                self._place(name, False)
        for name in self.modules:
            if name not in away:
                self._place(name, True)

    def restore(self) -> None:
        for name in self.modules:
            self._place(name, True)


class FrameBatcher:
    """Runs ``work(chunk)`` over frames in order, in balanced chunks of at most ``size``. On CUDA out-of-memory the
    chunk size is halved and the failed chunk is run again (work must be idempotent per chunk),
    and the smaller size is kept for the rest of the job.

    The back-off is a safety net, counted in ``shrinks``. With ``counter`` (the denoiser's
    ``EvalCounter``) the evaluations a failed attempt counted are taken back, so a job's counts stay
    those of the work that produced its frames.
    """

    def __init__(self, size: int, counter=None) -> None:
        self.size = max(1, size)
        self.shrinks = 0
        self.counter = counter

    def run(self, frames: Sequence[int], work: Callable[[list[int]], None]) -> None:
        items = list(frames)
        start = 0
        while start < len(items):
            left = len(items) - start
            length = -(-left // -(-left // self.size))  # balanced: 20 at most 17 -> 10 + 10
            chunk = items[start : start + length]
            counted = None
            if self.counter is not None:
                counted = (self.counter.forward.copy(), self.counter.backward.copy())
            try:
                work(chunk)
            except torch.OutOfMemoryError:
                if counted is not None:
                    self.counter.forward, self.counter.backward = counted
                if self.size == 1:
                    raise
                self.size = max(1, self.size // 2)
                self.shrinks += 1
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            start += len(chunk)
