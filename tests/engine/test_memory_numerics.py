"""fp16 overflow guard (issue 23): an inf injected into a stage never yields frames returned as a
success; the job fails with a stable code instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.inputs.errors import NumericalError
from tests.support.engine import FAST, astronaut_example, tiny_animator


@pytest.fixture(scope="module")
def animator(tiny_model_dir):
    return tiny_animator(tiny_model_dir)


def _overflowing(animator, passes):
    """Multiply the U-Net's output by inf in the grad-enabled (optimised) passes numbered in ``passes``."""
    seen = {"n": 0}

    def hook(module, args, kwargs, output):
        if not torch.is_grad_enabled():
            return output
        seen["n"] += 1
        return (output[0] * float("inf"), *output[1:]) if seen["n"] in passes else output

    return seen, animator.unet.register_forward_hook(hook, with_kwargs=True)


def _animate(animator):
    from engine import AnimateConfig

    image, source, targets = astronaut_example(1)
    config = AnimateConfig(**FAST).replace(num_inference_steps=2)
    return animator.animate(image, targets, "an astronaut", source_pose=source, config=config)


def test_one_overflowed_gradient_in_the_inversion_is_skipped_and_the_job_succeeds(animator):
    seen, handle = _overflowing(animator, {1})
    try:
        result = _animate(animator)
    finally:
        handle.remove()
    assert seen["n"] > 1  # the first optimised pass overflowed, later ones ran
    frames = np.stack([np.asarray(f, dtype=np.float32) for f in result.frames])
    assert np.isfinite(result.inversion_losses).all() and frames.std(axis=(1, 2, 3)).min() > 1


def test_a_gradient_that_always_overflows_fails_the_job_with_a_stable_code(animator):
    seen, handle = _overflowing(animator, range(1, 1000))
    try:
        with pytest.raises(NumericalError) as info:
            _animate(animator)
    finally:
        handle.remove()
    assert seen["n"] and info.value.code == "non_finite_values" and info.value.stage == "inverting"


def test_a_decoded_overflow_is_not_a_black_frame(animator):
    def overflow(module, args, output):
        return output * float("inf")

    latents = torch.zeros(2, 4, 8, 8)
    assert len(animator.decode_latents(latents)) == 2  # finite: decodes
    handle = animator.vae.decoder.register_forward_hook(overflow)
    try:
        with pytest.raises(NumericalError, match="encoding"):
            animator.decode_latents(latents)
    finally:
        handle.remove()
