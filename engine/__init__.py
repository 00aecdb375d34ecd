"""PoseAnimate engine: zero-shot pose-controllable character animation on SD-1.5 + OpenPose ControlNet.

Pure: torch, diffusers, numpy and PIL only. No HTTP, queues, Redis, object storage or environment reads.

    from engine import PoseAnimator, AnimateConfig, PoseSequence
    animator = PoseAnimator.from_pretrained()            # hub ids or local directories
    result = animator.animate(image, PoseSequence.from_json(path), "a person on the road")

Names are resolved lazily, so ``import engine.pose`` (numpy + PIL) does not pay for torch/diffusers,
and the torch-free leaves ``engine.poseformat``, ``engine.rules``, ``engine.models`` and
``engine.errors`` can be imported by the service.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "engine.alignment": ("SimilarityTransform", "align_poses", "fit_similarity", "interpolate_poses"),
    "engine.attention": ("AttentionController", "CrossAttentionMapProcessor", "DualConsistencyAttnProcessor"),
    "engine.cache": ("InversionCache", "MemoryInversionCache", "inversion_cache_key"),
    "engine.config": ("AnimateConfig",),
    "engine.errors": ("AnimationCancelled", "InvalidInput"),
    "engine.extract": ("ExtractionError", "ExtractionResult", "extract_poses"),
    "engine.models": ("DEFAULT_BASE", "DEFAULT_CONTROLNET"),
    "engine.pipeline": ("AnimationResult", "PoseAnimator"),
    "engine.masks": ("pose_mask",),
    "engine.pose": ("Pose", "PoseError", "PoseSequence"),
    "engine.render": ("render_pose",),
    "engine.tiny": ("build_tiny_model",),
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
    from engine.alignment import SimilarityTransform, align_poses, fit_similarity, interpolate_poses
    from engine.attention import AttentionController, CrossAttentionMapProcessor, DualConsistencyAttnProcessor
    from engine.cache import InversionCache, MemoryInversionCache, inversion_cache_key
    from engine.config import AnimateConfig
    from engine.errors import AnimationCancelled, InvalidInput
    from engine.extract import ExtractionError, ExtractionResult, extract_poses
    from engine.masks import pose_mask
    from engine.models import DEFAULT_BASE, DEFAULT_CONTROLNET
    from engine.pipeline import AnimationResult, PoseAnimator
    from engine.pose import Pose, PoseError, PoseSequence
    from engine.render import render_pose
    from engine.tiny import build_tiny_model
