"""The ControlNet-conditioned U-Net as one noise predictor, with evaluation counting.

Every U-Net call of the method goes through ``ControlledDenoiser`` (ControlNet applied in every call,
Sec. 3.2), so the evaluation counts it keeps are the job's true cost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from engine.method.ddim import DDIMSchedule


@dataclass
class EvalCounter:
    """U-Net+ControlNet evaluations per stage, counted per sample (a batch of 8 counts 8)."""

    stage: str = "setup"
    forward: Counter[str] = field(default_factory=Counter)
    backward: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        out = {f"{stage}_forward": n for stage, n in self.forward.items()}
        out.update({f"{stage}_backward": n for stage, n in self.backward.items()})
        out["total_forward"] = sum(self.forward.values())
        out["total_backward"] = sum(self.backward.values())
        return out


class ControlledDenoiser:
    """``eps = UNet(z, t, text, ControlNet(z, t, text, pose))`` in the models' dtype, returned in float32."""

    def __init__(self, unet, controlnet, schedule: DDIMSchedule, conditioning_scale: float = 1.0) -> None:
        self.unet = unet
        self.controlnet = controlnet
        self.schedule = schedule
        self.conditioning_scale = conditioning_scale
        self.counter = EvalCounter()
        self._device_timesteps: list[torch.Tensor] = []

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def __call__(self, latents: torch.Tensor, t: int, text: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """latents (B, 4, h, w) float32; text (B, 77, D); pose (B, 3, H, W) in [0, 1] -> eps (B, 4, h, w)."""
        timestep = self._timesteps(latents.device)[self.schedule.index(t)]
        sample = latents.to(self.dtype)
        text = text.to(self.dtype)
        down, mid = self.controlnet(
            sample,
            timestep,
            encoder_hidden_states=text,
            controlnet_cond=pose.to(self.dtype),
            conditioning_scale=self.conditioning_scale,
            return_dict=False,
        )
        out = self.unet(
            sample,
            timestep,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            return_dict=False,
        )[0]
        self.counter.forward[self.counter.stage] += latents.shape[0]
        return self.schedule.to_eps(out.float(), latents, t)

    def _timesteps(self, device: torch.device) -> list[torch.Tensor]:
        """The schedule's timesteps on ``device``, copied once (not one transfer per call), each a
        0-dim tensor of its own: a view into the (T,) tensor would let ``torch.compile`` relate T to
        the batch size ("duck sizing") and recompile when they differ."""
        if not self._device_timesteps or self._device_timesteps[0].device != device:
            self._device_timesteps = [t.clone() for t in self.schedule.timesteps.to(device)]
        return self._device_timesteps

    def count_backward(self, samples: int) -> None:
        self.counter.backward[self.counter.stage] += samples


def guided(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance."""
    return eps_uncond + scale * (eps_cond - eps_uncond)
