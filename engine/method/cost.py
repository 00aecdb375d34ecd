"""What a job costs in U-Net+ControlNet evaluations — the formula the pipeline is tested against.

Per job with T steps, n inner inversion iterations, k per-frame updates per step and N generated
frames after frame 0 (N = M + t):

- DDIM inversion at w = 1:            T forward (conditional branch only)
- pose-aware inversion (Eq. 6):       T * (1 + n + 2) forward, T * n backward
  (the unconditional branch once per step — it does not depend on the optimised embedding —, n
  optimised conditional passes, and one [uncond, cond] batch of two to advance Zbar with the final
  embedding in generation's call layout, so frame 0 retraces Zbar bit for bit)
- pose-aware embedding optimisation:  N * T * (1 + k) forward, N * T * k backward (Alg. 1 lines 3-9)
- generation with CFG:                2 * T * (N + 1) forward

An inversion-cache hit removes the first two lines. Early stopping (a small loss) can only lower the
inversion's count. Evaluations are counted per sample: a batch of 16 frames counts 16.
"""

from __future__ import annotations

from engine.method.config import AnimateConfig


def expected_evaluations(
    config: AnimateConfig, num_targets: int, *, cache_hit: bool = False
) -> dict[str, int]:
    """Upper bound (exact without early stopping) on evaluations per stage for ``num_targets`` poses."""
    T = config.num_inference_steps
    frames = num_targets + (config.transition_frames if config.use_pata else 0)  # N
    counts = {
        "inverting_forward": 0,
        "inverting_backward": 0,
        "optimizing_forward": 0,
        "optimizing_backward": 0,
    }
    if not cache_hit:
        counts["inverting_forward"] = T
        if config.use_pacm:
            n = config.inversion_inner_steps
            counts["inverting_forward"] += T * (n + 3)
            counts["inverting_backward"] = T * n
    if config.use_pacm:
        k = config.pose_opt_inner_steps
        counts["optimizing_forward"] = frames * T * (1 + k)
        counts["optimizing_backward"] = frames * T * k
    counts["sampling_forward"] = 2 * T * (frames + 1)
    counts["total_forward"] = sum(v for key, v in counts.items() if key.endswith("_forward"))
    counts["total_backward"] = counts["inverting_backward"] + counts["optimizing_backward"]
    return counts
