"""Deterministic DDIM (eta = 0) steps in both directions, written out so they are differentiable and
batched, with every constant read from the scheduler's config.

Notation follows the paper: latents ``Z_0 .. Z_T`` where ``Z_0`` is the clean latent and ``Z_t`` sits
at the scheduler's t-th smallest timestep. Step ``t`` (t = T..1) denoises ``Z_t -> Z_{t-1}``; its
index into ``scheduler.timesteps`` (descending) is ``T - t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from engine.inputs.errors import InvalidInput


@dataclass(frozen=True)
class DDIMSchedule:
    timesteps: torch.Tensor
    """(T,) int64, descending: ``timesteps[T - t]`` is the model timestep of step t."""
    alphas: torch.Tensor
    """(T,) float64 cumulative alpha at ``timesteps[k]``."""
    alphas_prev: torch.Tensor
    """(T,) float64 cumulative alpha one step closer to clean (the scheduler's final alpha at the end)."""
    prediction_type: str

    @classmethod
    def from_scheduler(cls, scheduler, num_inference_steps: int) -> DDIMSchedule:
        """Take timesteps and alphas from a diffusers DDIMScheduler (its own arithmetic, no copies)."""
        prediction_type = scheduler.config.prediction_type
        if prediction_type not in ("epsilon", "v_prediction"):
            raise InvalidInput(f"unsupported scheduler prediction_type {prediction_type!r}")
        scheduler.set_timesteps(num_inference_steps)
        timesteps = scheduler.timesteps.to(torch.int64).cpu()
        step = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        cumprod = scheduler.alphas_cumprod.to(torch.float64).cpu()
        final = torch.as_tensor(scheduler.final_alpha_cumprod, dtype=torch.float64).cpu()
        alphas = cumprod[timesteps]
        prev = timesteps - step
        alphas_prev = torch.where(prev >= 0, cumprod[prev.clamp(min=0)], final)
        return cls(timesteps, alphas, alphas_prev, prediction_type)

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.numel())

    @cached_property
    def _alpha_pairs(self) -> list[tuple[float, float]]:
        """``(alphas[k], alphas_prev[k])`` as Python floats, read once: a step reads no tensor."""
        return list(zip(self.alphas.tolist(), self.alphas_prev.tolist(), strict=True))

    def index(self, t: int) -> int:
        """Position of step ``t`` (T..1) in the descending timestep list."""
        return self.num_steps - t

    def timestep(self, t: int) -> torch.Tensor:
        return self.timesteps[self.index(t)]

    def to_eps(self, model_output: torch.Tensor, sample: torch.Tensor, t: int) -> torch.Tensor:
        """Convert the model's prediction at step t to epsilon (identity for epsilon models)."""
        if self.prediction_type == "epsilon":
            return model_output
        a = self._alpha_pairs[self.index(t)][0]
        return a**0.5 * model_output + (1 - a) ** 0.5 * sample

    def step(self, sample: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """Denoise ``Z_t -> Z_{t-1}`` (DDIM, eta 0). Differentiable in ``eps``. Shapes (B, C, h, w)."""
        k = self.index(t)
        a_t, a_prev = self._alpha_pairs[k]
        x0 = (sample - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps

    def inverse_step(self, sample: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """Invert ``Z_{t-1} -> Z_t`` with eps evaluated at (Z_{t-1}, timestep of step t)."""
        k = self.index(t)
        a_t, a_prev = self._alpha_pairs[k]
        x0 = (sample - (1 - a_prev) ** 0.5 * eps) / a_prev**0.5
        return a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
