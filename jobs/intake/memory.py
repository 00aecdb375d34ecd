"""Can any worker run this job? With ``POSEANIMATE_WORKER_GPU_MEMORY_GB`` set, a submission is planned
on a card of that size with the engine's own memory plan (``engine.inputs.memoryplan``: SD-1.5 +
OpenPose ControlNet, 16-bit weights, measured on PyTorch's meta device), every memory-saving option
allowed (one frame per chunk, gradient checkpointing, weight offload); a job that still does not fit
is refused with 413 ``job_too_large_for_workers`` before it is queued, instead of failing on a worker
after minutes of work. Unset: no check."""

from __future__ import annotations

from typing import Any

from engine.inputs.errors import Refusal, declare_codes
from engine.inputs.memoryplan import GiB, Plan, card_plan

LATENT_SCALE = 8
"""Pixels per latent cell of the SD VAE the table was measured with."""

MEMORY_CODES = declare_codes({"job_too_large_for_workers": 413}, owner="jobs.intake.memory")


def plan_on_card(card_gb: float, params: dict[str, Any], num_frames: int) -> Plan:
    """The job's memory plan on one worker card (``num_frames``: output frames, frame 0 included)."""
    latent = (int(params["height"]) // LATENT_SCALE, int(params["width"]) // LATENT_SCALE)
    return card_plan(card_gb, max(1, num_frames - 1), latent, steps=int(params["steps"]))


def check_fits_workers(card_gb: float | None, params: dict[str, Any], num_frames: int) -> None:
    """Refuse (413 ``job_too_large_for_workers``) a job whose plan fits no ``card_gb`` GB card."""
    if card_gb is None:
        return
    plan = plan_on_card(card_gb, params, num_frames)
    if not plan.fits:
        need = max(s.peak_bytes for s in plan.stages.values()) / GiB
        raise Refusal(
            f"this job needs about {need:.1f} GiB of GPU memory even at one frame per chunk with"
            f" checkpointing and offload ({plan.reason}); the workers' cards have {card_gb:g} GB:"
            " lower size, width or height",
            code="job_too_large_for_workers",
        )
