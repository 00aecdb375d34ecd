"""Guarded optimiser steps for PACM's embedding optimisation: a dynamic fp16 loss scale and steps that
are undone on the device, so neither an overflow nor early stopping needs a host sync per iteration.

``DynamicLossScale`` follows ``torch.amp.GradScaler``'s rule: the loss is multiplied by ``scale``
before ``backward``; the gradient is unscaled before Adam; a step whose gradient holds inf/NaN is
skipped (the tensor and Adam's state are restored with ``torch.where``, not an ``if`` on the host)
and the scale halves; after ``growth_interval`` good steps in a row it doubles. Only float16 scales;
other dtypes keep ``scale = 1`` (no multiply, no unscale: results bit-identical to a plain Adam) but
still skip non-finite steps. ``consecutive`` counts skipped steps in a row on the device; callers read
it where they already read the host (``check``, ``finish``) and fail the job with
``non_finite_values`` once it reaches ``max_consecutive_skips`` or when a stage took no step at all.
"""

from __future__ import annotations

import torch

from engine.inputs.errors import NumericalError


def adam(param: torch.Tensor, lr: float) -> torch.optim.Adam:
    """``torch.optim.Adam`` on one tensor; capturable where PyTorch supports it (CUDA), so its step
    count lives on the device and ``step()`` never reads the host (on the CPU there is no device)."""
    from torch.optim.optimizer import _get_capturable_supported_devices

    capturable = param.device.type in _get_capturable_supported_devices()
    return torch.optim.Adam([param], lr=lr, capturable=capturable)


class DynamicLossScale:
    """The loss scale and skip counters of one optimisation stage (kept across its timesteps)."""

    def __init__(
        self,
        dtype: torch.dtype,
        device: torch.device | str,
        *,
        init_scale: float = 2.0**10,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 100,
        max_consecutive_skips: int = 8,
    ) -> None:
        self.enabled = dtype == torch.float16
        self.scale = torch.tensor(init_scale if self.enabled else 1.0, device=device)
        self.growth_factor, self.backoff_factor = growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self.max_consecutive_skips = max_consecutive_skips
        self._good = torch.zeros((), dtype=torch.int32, device=device)  # good steps since the last change
        self.consecutive = torch.zeros((), dtype=torch.int32, device=device)
        self.skipped = torch.zeros((), dtype=torch.int32, device=device)  # in total
        self.attempts = torch.zeros((), dtype=torch.int32, device=device)  # steps not held

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale if self.enabled else loss

    def step(
        self, optimizer: torch.optim.Optimizer, param: torch.Tensor, hold: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Unscale ``param.grad``, run ``optimizer.step()`` and undo it where the gradient is not
        finite or ``hold`` (a 0-dim bool, e.g. "early stop reached") is set. -> found_inf (0-dim bool).

        The scale and counters move only on steps that are not held.
        """
        grad = param.grad
        if grad is None:
            raise ValueError("step() needs param.grad: call backward() on scaled(loss) first")
        if self.enabled:
            grad.mul_(self.scale.reciprocal())
        found_inf = ~torch.isfinite(grad).all()
        undo = found_inf if hold is None else found_inf | hold
        state = optimizer.state[param]
        before = [param.detach().clone()] + [
            state[k].clone() for k in ("step", "exp_avg", "exp_avg_sq") if k in state
        ]
        optimizer.step()
        after = [param.detach()] + [state[k] for k in ("step", "exp_avg", "exp_avg_sq")]
        for new, old in zip(after, before + [None] * (len(after) - len(before)), strict=True):
            if new.device != undo.device and undo.device.type == "meta":
                continue  # Adam's CPU step count in the memory model's dry runs: no flag to read
            restored = torch.zeros_like(new) if old is None else old  # no state before Adam's first step
            new.copy_(torch.where(undo.to(new.device), restored, new))  # Adam's CPU step off CUDA
        self._update(found_inf if hold is None else found_inf & ~hold, hold)
        return found_inf

    def _update(self, found_inf: torch.Tensor, hold: torch.Tensor | None) -> None:
        good = torch.where(found_inf, 0, self._good + 1)
        consecutive = torch.where(found_inf, self.consecutive + 1, 0).to(torch.int32)
        if hold is not None:  # a held step changes nothing (found_inf is already False there)
            good = torch.where(hold, self._good, good)
            consecutive = torch.where(hold, self.consecutive, consecutive)
        grow = good >= self.growth_interval
        scale = torch.where(found_inf, self.scale * self.backoff_factor, self.scale)
        scale = torch.where(grow, scale * self.growth_factor, scale)
        if self.enabled:
            self.scale = torch.where(torch.isfinite(scale), scale, self.scale)
        self._good = torch.where(grow, 0, good).to(torch.int32)
        self.consecutive = consecutive
        self.skipped = self.skipped + found_inf.to(torch.int32)
        self.attempts = self.attempts + (1 if hold is None else (~hold).to(torch.int32))

    def check(self, stage: str, what: str, consecutive: int) -> None:
        """Fail with ``non_finite_values`` once ``max_consecutive_skips`` steps in a row were skipped;
        ``consecutive`` is a host copy of ``self.consecutive`` read with whatever the caller reads."""
        if consecutive >= self.max_consecutive_skips:
            raise NumericalError(stage, what)

    def finish(self, stage: str, what: str) -> None:
        """At the end of a stage (one read): fail as ``check`` does, or when no step of it was taken
        (every one skipped: nothing was optimised, however short the stage). Nothing to read on the
        ``meta`` device (the memory model's dry runs)."""
        if self.consecutive.device.type == "meta":
            return
        consecutive, attempts = torch.stack([self.consecutive, self.attempts]).tolist()
        self.check(stage, what, consecutive)
        if attempts and consecutive == attempts:
            raise NumericalError(stage, what)
