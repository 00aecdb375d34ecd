"""PoseAnimate engine: zero-shot pose-controllable character animation on SD-1.5 + OpenPose ControlNet.

Pure: torch, diffusers, numpy and PIL only. No HTTP, queues, Redis, object storage or environment reads.

    from engine import PoseAnimator, AnimateConfig, PoseSequence
    animator = PoseAnimator.from_pretrained()            # hub ids or local directories
    result = animator.animate(image, PoseSequence.from_json(path), "a person on the road")

Names are resolved lazily, so ``import engine.poses.pose`` (numpy + PIL) does not pay for
torch/diffusers. The wings:

    engine/inputs/   torch-free: pose format, input rules, refusals, model names, video probe
                     (the only part ``api`` and ``jobs`` may import)
    engine/method/   the method: pipeline, PACM, DCAM/MGDM attention, masks, DDIM, batching, cache
    engine/poses/    pose types, PATA + retargeting, rendering, detection, extraction, video
    engine/weights/  loading, tiny and random models, runtime tuning
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "engine.poses.alignment": ("SimilarityTransform", "align_poses", "fit_similarity", "interpolate_poses"),
    "engine.method.attention": (
        "AttentionController",
        "CrossAttentionMapProcessor",
        "DualConsistencyAttnProcessor",
    ),
    "engine.method.cache": ("InversionCache", "MemoryInversionCache", "inversion_cache_key"),
    "engine.method.config": ("AnimateConfig",),
    "engine.inputs.errors": ("AnimationCancelled", "InvalidInput"),
    "engine.poses.extract": ("ExtractionError", "ExtractionResult", "extract_poses"),
    "engine.inputs.models": ("DEFAULT_BASE", "DEFAULT_CONTROLNET"),
    "engine.method.pipeline": ("AnimationResult", "PoseAnimator"),
    "engine.method.masks": ("pose_mask",),
    "engine.poses.pose": ("Pose", "PoseError", "PoseSequence"),
    "engine.poses.render": ("render_pose",),
    "engine.weights.tiny": ("build_tiny_model",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_CONTROLNET",
    "AnimateConfig",
    "AnimationCancelled",
    "AnimationResult",
    "AttentionController",
    "CrossAttentionMapProcessor",
    "DualConsistencyAttnProcessor",
    "ExtractionError",
    "ExtractionResult",
    "InvalidInput",
    "InversionCache",
    "MemoryInversionCache",
    "Pose",
    "PoseAnimator",
    "PoseError",
    "PoseSequence",
    "SimilarityTransform",
    "align_poses",
    "build_tiny_model",
    "extract_poses",
    "fit_similarity",
    "interpolate_poses",
    "inversion_cache_key",
    "pose_mask",
    "render_pose",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from engine.inputs.errors import AnimationCancelled, InvalidInput
    from engine.inputs.models import DEFAULT_BASE, DEFAULT_CONTROLNET
    from engine.method.attention import (
        AttentionController,
        CrossAttentionMapProcessor,
        DualConsistencyAttnProcessor,
    )
    from engine.method.cache import InversionCache, MemoryInversionCache, inversion_cache_key
    from engine.method.config import AnimateConfig
    from engine.method.masks import pose_mask
    from engine.method.pipeline import AnimationResult, PoseAnimator
    from engine.poses.alignment import SimilarityTransform, align_poses, fit_similarity, interpolate_poses
    from engine.poses.extract import ExtractionError, ExtractionResult, extract_poses
    from engine.poses.pose import Pose, PoseError, PoseSequence
    from engine.poses.render import render_pose
    from engine.weights.tiny import build_tiny_model
