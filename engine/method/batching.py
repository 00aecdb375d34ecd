"""Frame chunking: how many frames go through the U-Net together, and backing off on out-of-memory."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Activation memory of one 512x512 frame (64x64 latent) in the optimisation passes (forward + backward
# of U-Net and ControlNet, input gradients only), fp16. Estimates, not measurements on this machine
# (no GPU here); an underestimate costs one halving retry, an overestimate only some speed.
_BYTES_PER_FRAME = {False: 3.0 * 2**30, True: 1.0 * 2**30}
_HEADROOM = 0.7
CPU_FRAME_BATCH = 16
MAX_AUTO_FRAME_BATCH = 64


def auto_frame_batch(
    device: torch.device, dtype: torch.dtype, latent_hw: tuple[int, int], checkpointing: bool
) -> int:
    """Frames per chunk that fit in the device's free memory (16 on the CPU)."""
    if device.type != "cuda":
        return CPU_FRAME_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    scale = latent_hw[0] * latent_hw[1] / 4096 * (2 if dtype == torch.float32 else 1)
    per_frame = _BYTES_PER_FRAME[checkpointing] * scale
    return int(min(MAX_AUTO_FRAME_BATCH, max(1, _HEADROOM * free // per_frame)))


class FrameBatcher:
    """Runs ``work(chunk)`` over frames in order, in chunks of ``size``. On CUDA out-of-memory the
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
            chunk = items[start : start + self.size]
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
