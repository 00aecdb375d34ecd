"""fp16 overflow guard (issue 23): an inf injected into a stage never yields frames returned as a
success; the job fails with a stable code instead."""

from __future__ import annotations

import pytest
import torch

from engine.inputs.errors import NumericalError
from tests.support.engine import FAST, astronaut_example, tiny_animator


@pytest.fixture(scope="module")
def animator(tiny_model_dir):
    return tiny_animator(tiny_model_dir)


def test_one_overflowed_gradient_in_the_inversion_fails_the_job_with_a_stable_code(animator):
    from engine import AnimateConfig

    image, source, targets = astronaut_example(1)
    calls = {"n": 0}

    def overflow_once(module, args, kwargs, output):
        calls["n"] += 1
        if torch.is_grad_enabled() and calls.get("done") is None:  # the first optimised pass
            calls["done"] = True
            return (output[0] * float("inf"), *output[1:])
        return output

    handle = animator.unet.register_forward_hook(overflow_once, with_kwargs=True)
    try:
        with pytest.raises(NumericalError) as info:
            animator.animate(
                image,
                targets,
                "an astronaut",
                source_pose=source,
                config=AnimateConfig(**FAST).replace(num_inference_steps=2),
            )
    finally:
        handle.remove()
    assert calls.get("done") and info.value.code == "non_finite_values" and info.value.stage == "inverting"


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
