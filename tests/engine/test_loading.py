"""Loading: a local pipeline directory with its own controlnet/ loads offline through the defaults."""

from __future__ import annotations

import pytest

from engine.inputs.models import DEFAULT_CONTROLNET
from engine.method.pipeline import PoseAnimator


def test_a_local_model_dir_uses_its_own_controlnet_by_default(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub's ControlNet cannot be what gets loaded
    animator = PoseAnimator.from_pretrained(tiny_model_dir, device="cpu")
    assert animator.model_info["controlnet"] == str(tiny_model_dir / "controlnet")
    assert animator.model_info["random_weights"] is True


def test_an_explicit_controlnet_still_wins(tiny_model_dir, tmp_path):
    with pytest.raises(OSError):  # an empty directory is not a ControlNet: the override was used
        PoseAnimator.from_pretrained(tiny_model_dir, tmp_path, device="cpu", local_files_only=True)
    assert DEFAULT_CONTROLNET.startswith("lllyasviel/")
