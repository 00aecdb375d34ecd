"""Model defaults, defined once: the hub ids of the method's weights and the random-weights marker.

A torch-free leaf (stdlib only), importable by the job core and the CLI.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_BASE", "DEFAULT_CONTROLNET", "RANDOM_WEIGHTS_MARKER", "is_random_weights"]

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""Stable Diffusion 1.5 (the paper's base model)."""
DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_openpose"
"""The OpenPose ControlNet v1.1 for SD 1.5."""

RANDOM_WEIGHTS_MARKER = "poseanimate_tiny.json"
"""A file of this name in a model directory marks random (test/smoke) weights: outputs mean nothing."""


def is_random_weights(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` is a local model directory holding random weights (carries the marker)."""
    try:
        return (Path(model_dir) / RANDOM_WEIGHTS_MARKER).is_file()
    except (OSError, ValueError):
        return False
