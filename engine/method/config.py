"""Every knob of the method, with the paper's value where it gives one (Sec. 3.2-3.4, 4.1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from engine.inputs.errors import InvalidInput
from engine.inputs.rules import (
    DEFAULTS,
    LIMITS,
    POSE_PARTS,
    check_generation_size,
    check_guidance,
    check_steps,
    check_transition_frames,
)


@dataclass(frozen=True)
class AnimateConfig:
    # --- Sampling (Sec. 4.1) -------------------------------------------------------------------
    num_inference_steps: int = DEFAULTS.steps
    """DDIM steps T. Paper: 50."""
    guidance_scale: float = DEFAULTS.guidance
    """CFG scale w for pose-aware inversion, embedding optimisation and generation. Paper: 7.5."""
    height: int = DEFAULTS.size
    """Generation height in pixels (multiple of 8). Paper: 512."""
    width: int = DEFAULTS.size
    """Generation width in pixels (multiple of 8). Paper: 512."""
    controlnet_conditioning_scale: float = 1.0
    """Weight of the OpenPose ControlNet residuals (diffusers' default)."""
    seed: int | None = None
    """The method is deterministic (DDIM, eta=0, inverted noise); the seed is recorded and seeds torch
    so that any future stochastic option is reproducible."""

    # --- PACM: pose-aware inversion (Sec. 3.2, Eq. 6, Alg. 1 line 2) ---------------------------
    use_pacm: bool = True
    """Ablation switch (Fig. 5a): without PACM every frame uses the plain prompt embedding."""
    inversion_inner_steps: int = 5
    """Adam iterations n per timestep. Paper: 5 (250 in total at T=50)."""
    inversion_lr: float = 1e-2
    """Adam learning rate for the source embeddings. The paper gives none; 1e-2 is null-text
    inversion's, the method PACM adapts."""
    inversion_early_stop: float = 1e-5
    """Stop a timestep's inner loop once its loss is below this (null-text inversion's epsilon)."""

    # --- PACM: pose-aware embedding optimisation (Alg. 1 lines 3-9) ----------------------------
    pose_opt_inner_steps: int = 1
    """Gradient updates of each frame's embedding per timestep. Alg. 1 line 7: one."""
    pose_opt_lr: float = 1e-2
    """Adam learning rate for the per-frame embeddings (Sec. 4.1: Adam; rate as for inversion)."""

    # --- Speed and memory (results unchanged up to floating-point batching effects) -------------
    frame_batch_size: int | None = None
    """Frames optimised / sampled / decoded together; None = automatic (16 on CPU, sized from free
    memory on CUDA, halved on out-of-memory). Frames are independent in the optimisation and DCAM's
    references cross chunk boundaries through a cache, so this only trades memory for speed; 1
    reproduces the frame-by-frame loop."""
    gradient_checkpointing: bool = False
    """Recompute U-Net/ControlNet activations in the backward passes of the two optimisations:
    ~1/3 of the activation memory (bigger frame batches) for ~+30% compute."""

    # --- DCAM (Sec. 3.3, Eq. 8) -----------------------------------------------------------------
    use_dcam: bool = True
    """Ablation switch (Fig. 5b): without DCAM the up-blocks keep plain self-attention."""
    lambdas: tuple[float, float, float] = (0.7, 0.15, 0.15)
    """Weights of frame 0, the previous frame and the current frame. Paper: 0.7, 0.15, 0.15."""

    # --- MGDM (Sec. 3.4, Eq. 9-10) --------------------------------------------------------------
    use_mgdm: bool = True
    """Ablation switch (Fig. 5c): without MGDM, DCAM attends over whole frames."""
    mask_threshold: float = 0.4
    """Threshold on min-max normalised cross-attention maps (prompt-to-prompt's local blend uses 0.3)."""
    mask_map_downsample: tuple[int, ...] = (4, 2)
    """Cross-attention layers whose token grid is latent/4 or latent/2 (16x16 and 32x32 at 512 px)
    supply the subject maps."""
    subject_token_ratio: float = 0.8
    """Automatic subject tokens: every prompt token scoring at least this fraction of the best
    token's overlap with the source mask."""

    # --- PATA (Sec. 3) --------------------------------------------------------------------------
    use_pata: bool = True
    """Ablation switch (Fig. 5d): without PATA target poses are used as given, with no transition."""
    transition_frames: int = DEFAULTS.transition_frames
    """Intermediate poses t between the source pose and the first target pose (N = M + t)."""
    retarget: Literal["scale", "bones"] = "scale"
    """How the driving skeleton meets the character. ``"scale"`` (default, the paper's PATA): one
    uniform scale + translation, the driving proportions kept. ``"bones"``: each bone also gets the
    character's length, its direction kept per frame (UniAnimate-style; engine.poses.alignment)."""
    parts: Literal["body", "body+hands", "body+face", "full"] = DEFAULTS.parts
    """What of whole-body poses conditions the ControlNet: ``full`` (default: body, hands and face,
    as the OpenPose ControlNet's "openpose_full" training images), ``body+hands``, ``body+face`` or
    ``body`` (body-only control). Parts a pose does not carry are not drawn either way."""

    # --- Limits ---------------------------------------------------------------------------------
    max_frames: int = LIMITS.max_output_frames
    """Upper bound on output frames (1 + t + M); at most ``rules.LIMITS.max_output_frames``."""

    def replace(self, **changes: object) -> AnimateConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise InvalidInput(msg)

        # Bounds shared with the service: engine.inputs.rules.LIMITS (one table).
        check_steps(self.num_inference_steps)
        check_guidance(self.guidance_scale)
        check_generation_size(self.width, self.height)
        check_transition_frames(self.transition_frames)
        if not 0.0 <= self.controlnet_conditioning_scale <= 4.0:
            bad("controlnet_conditioning_scale must be in [0, 4]")
        if self.inversion_inner_steps < 1 or self.pose_opt_inner_steps < 1:
            bad("inner steps must be >= 1")
        if self.inversion_lr <= 0 or self.pose_opt_lr <= 0:
            bad("learning rates must be > 0")
        if self.frame_batch_size is not None and not 1 <= self.frame_batch_size <= 256:
            bad("frame_batch_size must be in 1..256 (or None for automatic)")
        if len(self.lambdas) != 3 or any(not 0.0 <= w <= 1.0 for w in self.lambdas):
            bad(f"lambdas must be three weights in [0, 1], got {self.lambdas}")
        if abs(sum(self.lambdas) - 1.0) > 1e-6:
            bad(f"lambdas must sum to 1, got {sum(self.lambdas)}")
        if not 0.0 < self.mask_threshold < 1.0:
            bad("mask_threshold must be in (0, 1)")
        if not 0.0 < self.subject_token_ratio <= 1.0:
            bad("subject_token_ratio must be in (0, 1]")
        if not 2 <= self.max_frames <= LIMITS.max_output_frames:
            bad(f"max_frames must be in 2..{LIMITS.max_output_frames}")
        if self.retarget not in ("scale", "bones"):
            bad(f"retarget must be 'scale' or 'bones', got {self.retarget!r}")
        if self.parts not in POSE_PARTS:
            bad(f"parts must be one of {', '.join(POSE_PARTS)}, got {self.parts!r}")
