"""PACM — the pose-aware control module (Sec. 3.2, Fig. 3, Alg. 1).

Three passes, each a short loop in the shape of null-text inversion's ``ddim_inversion_loop`` /
``null_optimization``, but optimising the *conditional* text embedding (the paper's choice):

1. ``ddim_inversion``: DDIM inversion of ``Z_0 = E(I_s)`` at guidance 1 under ControlNet(p_s)
   -> ``Z_0 .. Z_T`` (Alg. 1 line 1).
2. ``pose_aware_inversion``: for t = T..1, Adam on ``O_{s,t}`` (initialised from ``O_{s,t+1}``), loss
   ``MSE(Z_{t-1}, DDIM(Zbar_t, eps_cfg(O_{s,t}, p_s)))`` (Eq. 6, Alg. 1 line 2); ``Zbar_{t-1}`` is then
   advanced with the *final* embedding, so generation with ``{O_{s,t}}`` retraces it exactly.
3. ``optimise_pose_embeddings``: for every target frame, start from ``Z_T`` and ``{O_{s,t}}``; at each t
   sample ``Ztilde_{t-1}`` under ``p_i`` and update ``Otilde_{i,t}`` with the gradient of
   ``MSE(Z_{t-1}, Ztilde_{t-1})`` (Alg. 1 lines 3-9). Frames are batched; per-frame losses are
   *summed* so each frame's gradient is exactly its own (Adam is element-wise).

Gradients exist only inside the optimisation loops, on detached clones of the embeddings; the models'
parameters never require grad.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.method.denoiser import ControlledDenoiser, guided
from engine.method.lossscale import DynamicLossScale, adam
from engine.method.progress import StageTracker

EARLY_STOP_EVERY = 2
"""The host reads the early-stop flag after every 2nd inner iteration, not after each: the flag is set
on the device and freezes the embedding (``torch.where``) from the iteration whose loss fell below
the threshold, so results equal a check after every iteration; at most one frozen iteration runs."""


@dataclass
class SourceInversion:
    """Source-side results of PACM, reusable across jobs on the same avatar."""

    latents: torch.Tensor
    """(T+1, 4, h, w) float32: ``latents[t] = Z_t``, the DDIM-inversion trajectory."""
    embeddings: torch.Tensor | None
    """(T, 77, D) in the model dtype: ``embeddings[T - t] = O_{s,t}``; None without PACM."""
    reconstruction: torch.Tensor | None
    """(4, h, w) float32 ``Zbar_0``: where CFG sampling with ``{O_{s,t}}`` lands; None without PACM."""
    final_losses: list[float]
    """Last inner-iteration loss of each timestep (t = T..1)."""

    @property
    def num_steps(self) -> int:
        return self.latents.shape[0] - 1

    def to(self, device: torch.device | str) -> SourceInversion:
        move = lambda x: None if x is None else x.to(device)  # noqa: E731
        return SourceInversion(
            move(self.latents), move(self.embeddings), move(self.reconstruction), list(self.final_losses)
        )


@torch.no_grad()
def ddim_inversion(
    denoiser: ControlledDenoiser,
    z0: torch.Tensor,
    text: torch.Tensor,
    pose: torch.Tensor,
    tracker: StageTracker | None = None,
) -> torch.Tensor:
    """z0 (1, 4, h, w), text (1, 77, D), pose (1, 3, H, W) -> (T+1, 4, h, w) with ``[t] = Z_t``.

    Guidance 1.0 means ``eps = eps_cond``: the unconditional branch is not evaluated.
    """
    latents = [z0.float()]
    z = latents[0]
    for t in range(1, denoiser.schedule.num_steps + 1):
        eps = denoiser(z, t, text, pose)
        z = denoiser.schedule.inverse_step(z, eps, t)
        latents.append(z)
        if tracker is not None:
            tracker.advance()
    return torch.cat(latents)


def pose_aware_inversion(
    denoiser: ControlledDenoiser,
    latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    pose: torch.Tensor,
    *,
    guidance_scale: float,
    inner_steps: int,
    lr: float,
    early_stop: float,
    tracker: StageTracker | None = None,
) -> SourceInversion:
    """Optimise ``{O_{s,t}}`` so CFG sampling from ``Z_T`` under ``p_s`` retraces ``Z_T .. Z_0``.

    latents (T+1, 4, h, w) from ``ddim_inversion``; cond/uncond (1, 77, D); pose (1, 3, H, W).
    """
    schedule = denoiser.schedule
    T = schedule.num_steps
    embeddings = torch.empty((T, *cond.shape[1:]), dtype=denoiser.dtype, device=cond.device)
    master = cond.detach().float()  # O_{s,T+1} := prompt embedding; Adam works on a float32 master
    scaler = DynamicLossScale(denoiser.dtype, cond.device)
    z_bar = latents[T : T + 1]
    final_losses: list[torch.Tensor] = []  # on the device, read once at the end
    for t in range(T, 0, -1):
        target = latents[t - 1 : t]
        with torch.no_grad():
            eps_uncond = denoiser(z_bar, t, uncond, pose)  # independent of O: once per timestep
        master = master.detach().clone().requires_grad_(True)
        optimizer = adam(master, lr)
        stopped = torch.zeros((), dtype=torch.bool, device=master.device)
        last = torch.full((), float("nan"), dtype=torch.float64, device=master.device)
        for i in range(1, inner_steps + 1):
            with torch.enable_grad():
                eps = guided(eps_uncond, denoiser(z_bar, t, master, pose), guidance_scale)
                loss = F.mse_loss(schedule.step(z_bar, eps, t), target)
                optimizer.zero_grad(set_to_none=True)
                scaler.scaled(loss).backward()
            denoiser.count_backward(1)
            scaler.step(optimizer, master, hold=stopped)
            loss = loss.detach()
            last = torch.where(stopped | ~torch.isfinite(loss), last, loss)
            stopped = stopped | (loss.double() < early_stop)  # compared in float64, like loss.item()
            if i % EARLY_STOP_EVERY == 0 and i < inner_steps:
                done, skips = torch.stack([stopped.int(), scaler.consecutive]).tolist()  # one read
                scaler.check("inverting", "the source embedding's gradient", skips)
                if done:
                    break
        final_losses.append(last)
        master = master.detach()
        embeddings[T - t] = master.to(denoiser.dtype)[0]
        with torch.no_grad():
            # Advance with the final embedding, exactly as generation will compute frame 0: one
            # U-Net call on the batch [uncond, cond] (the same layout, so the same floating-point
            # result; a separate batch-1 call differs by ~1e-5 in float32).
            eps_u, eps_c = denoiser(
                torch.cat([z_bar, z_bar]),
                t,
                torch.cat([uncond.to(denoiser.dtype), embeddings[T - t : T - t + 1]]),
                torch.cat([pose, pose]),
            ).chunk(2)
            z_bar = schedule.step(z_bar, guided(eps_u, eps_c, guidance_scale), t)
        if tracker is not None:
            tracker.advance()
    losses = torch.stack(final_losses).tolist()
    scaler.finish("inverting", "the source embedding's gradient")
    return SourceInversion(latents, embeddings, z_bar[0], losses)


def optimise_pose_embeddings(
    denoiser: ControlledDenoiser,
    source: SourceInversion,
    uncond: torch.Tensor,
    poses: torch.Tensor,
    *,
    guidance_scale: float,
    inner_steps: int,
    lr: float,
    tracker: StageTracker | None = None,
) -> torch.Tensor:
    """Alg. 1 lines 3-9 for a batch of frames.

    poses (F, 3, H, W); uncond (1, 77, D). Returns ``(T, F, 77, D)`` in the model dtype with
    ``[T - t, i] = Otilde_{i,t}``. Frames are independent, so any split of the batch gives the same
    result as the frame-by-frame loop (up to floating-point batching effects).
    """
    if source.embeddings is None:
        raise ValueError("pose-aware embedding optimisation needs the pose-aware inversion's embeddings")
    schedule = denoiser.schedule
    T, n = schedule.num_steps, poses.shape[0]
    out = torch.empty((T, n, *source.embeddings.shape[1:]), dtype=denoiser.dtype, device=poses.device)
    z = source.latents[T : T + 1].expand(n, -1, -1, -1)  # Ztilde_{i,T} = Z_T
    uncond = uncond.expand(n, -1, -1)
    scaler = DynamicLossScale(denoiser.dtype, poses.device)
    for t in range(T, 0, -1):
        target = source.latents[t - 1 : t]
        with torch.no_grad():
            eps_uncond = denoiser(z, t, uncond, poses)
        emb = source.embeddings[T - t].float().expand(n, -1, -1).clone().requires_grad_(True)
        optimizer = adam(emb, lr)
        for _ in range(inner_steps):
            with torch.enable_grad():
                eps = guided(eps_uncond, denoiser(z, t, emb, poses), guidance_scale)
                z_prev = schedule.step(z, eps, t)  # Alg. 1 line 6
                # Per-frame MSE, summed over frames: each frame's gradient is its own.
                loss = (z_prev - target).pow(2).flatten(1).mean(1).sum()
                optimizer.zero_grad(set_to_none=True)
                scaler.scaled(loss).backward()  # Alg. 1 line 7
            denoiser.count_backward(n)
            scaler.step(optimizer, emb)  # skipped (for the chunk) where the gradient overflowed
        out[T - t] = emb.detach().to(denoiser.dtype)
        z = z_prev.detach()  # the trajectory continues from line 6's sample
        if tracker is not None:
            tracker.advance(n)
    # The skip bound is read once per chunk (its result is copied to the host here anyway).
    scaler.finish("optimizing", "a frame embedding's gradient")
    return out
