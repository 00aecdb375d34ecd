"""The engine tests' shared inputs: the tiny model loaded the way the worker loads it (no detector,
no segmenter: the source pose is given) and the astronaut example (photo, its pose, arm-raising
targets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from tests.support import EXAMPLES

FAST = {
    "num_inference_steps": 3,
    "height": 64,
    "width": 64,
    "transition_frames": 1,
    "inversion_inner_steps": 2,
    "inversion_lr": 0.05,
    "pose_opt_lr": 0.05,
}
"""AnimateConfig settings that exercise every stage of the method in seconds on the tiny model."""


def tiny_animator(model_dir: Path, **kwargs: Any):
    """``PoseAnimator.from_pretrained(model_dir)`` on the CPU with 2 threads, no pose detector and no
    segmenter (``kwargs`` override)."""
    import torch

    from engine import PoseAnimator

    torch.set_num_threads(2)
    options = {"device": "cpu", "pose_detector": "none", "segmenter": "none", **kwargs}
    return PoseAnimator.from_pretrained(model_dir, None, **options)


def astronaut_example(targets: int):
    """(the astronaut photo, its source pose, the first ``targets`` poses of ``raise_arms.json``)."""
    from engine import Pose, PoseSequence

    image = Image.open(EXAMPLES / "astronaut.jpg")
    image.load()
    source = Pose.from_json((EXAMPLES / "astronaut_pose.json").read_text())
    return image, source, PoseSequence.from_json((EXAMPLES / "raise_arms.json").read_text())[:targets]
