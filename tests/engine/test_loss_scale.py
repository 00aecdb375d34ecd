"""PACM's guarded optimiser steps (issue 23): the fp16 dynamic loss scale (torch.amp.GradScaler's
rule), overflowed steps skipped on the device, a bounded run of skips failing with a stable code, and
early stopping without a host read per inner iteration."""

from __future__ import annotations

import copy
import functools
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from engine.inputs.errors import NumericalError
from engine.method import pacm
from engine.method.ddim import DDIMSchedule
from engine.method.denoiser import ControlledDenoiser
from engine.method.lossscale import DynamicLossScale, adam


# ---------------------------------------------------------------------------------------------
# The scaler on one tensor
# ---------------------------------------------------------------------------------------------
def _steps(scaler, param, grads, hold=None):
    """Adam on ``param`` through ``scaler`` with the given (unscaled) gradients; -> found_inf per step."""
    optimizer = adam(param, 0.1)
    found = []
    for g in grads:
        param.grad = (g * scaler.scale).to(param.dtype) if scaler.enabled else g.clone()
        found.append(bool(scaler.step(optimizer, param, hold=hold)))
    return optimizer, found


def test_an_overflowed_step_is_skipped_exactly_and_the_scale_halves():
    g = [torch.randn(3, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    bad = torch.full((3, 4), float("inf"))
    bad[0, 0] = float("nan")
    clean, with_bad = torch.zeros(3, 4), torch.zeros(3, 4)
    s_clean, s_bad = DynamicLossScale(torch.float16, "cpu"), DynamicLossScale(torch.float16, "cpu")
    opt_clean, _ = _steps(s_clean, clean, g)
    opt_bad, found = _steps(s_bad, with_bad, [g[0], g[1], bad, g[2], g[3]])
    assert found == [False, False, True, False, False]
    assert torch.equal(with_bad, clean)  # the step never happened: parameter and Adam state as without it
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(opt_bad.state[with_bad][key], opt_clean.state[clean][key]), key
    assert float(s_bad.scale) == float(s_clean.scale) / 2 == 512.0
    assert (int(s_bad.skipped), int(s_bad.consecutive), int(s_bad.attempts)) == (1, 0, 5)


def test_a_skipped_first_step_leaves_adam_as_if_never_stepped():
    param = torch.ones(2, 2)
    optimizer, found = _steps(
        DynamicLossScale(torch.float32, "cpu"), param, [torch.full((2, 2), float("nan"))]
    )
    assert found == [True] and torch.equal(param, torch.ones(2, 2))
    assert not optimizer.state[param]["exp_avg"].any() and float(optimizer.state[param]["step"]) == 0


def test_the_scale_grows_after_growth_interval_good_steps_and_only_in_float16():
    scaler = DynamicLossScale(torch.float16, "cpu", init_scale=4.0, growth_interval=3)
    _steps(scaler, torch.zeros(2), [torch.ones(2)] * 7)
    assert float(scaler.scale) == 16.0  # doubled after steps 3 and 6
    fp32 = DynamicLossScale(torch.float32, "cpu", growth_interval=1)
    _steps(fp32, torch.zeros(2), [torch.ones(2)] * 3 + [torch.full((2,), float("inf"))])
    assert float(fp32.scale) == 1.0 and fp32.scaled(torch.tensor(3.0)).item() == 3.0


def test_float32_steps_equal_plain_adam_bit_for_bit():
    g = [torch.randn(5, generator=torch.Generator().manual_seed(i)) for i in range(6)]
    ours, ref = torch.zeros(5), torch.zeros(5, requires_grad=True)
    _steps(DynamicLossScale(torch.float32, "cpu"), ours, g)
    plain = torch.optim.Adam([ref], lr=0.1)
    for grad in g:
        ref.grad = grad.clone()
        plain.step()
    assert torch.equal(ours, ref.detach())


def test_a_held_step_changes_nothing():
    scaler = DynamicLossScale(torch.float16, "cpu", growth_interval=1)
    param = torch.zeros(3)
    _steps(scaler, param, [torch.ones(3)])
    before, scale = param.clone(), float(scaler.scale)
    _steps(scaler, param, [torch.ones(3), torch.full((3,), float("nan"))], hold=torch.tensor(True))
    assert torch.equal(param, before) and float(scaler.scale) == scale and int(scaler.consecutive) == 0


def test_consecutive_skips_fail_with_non_finite_values_at_the_bound():
    scaler = DynamicLossScale(torch.float16, "cpu", max_consecutive_skips=3)
    param = torch.zeros(2)
    _steps(scaler, param, [torch.ones(2)] + [torch.full((2,), float("inf"))] * 2)
    scaler.finish("optimizing", "x")  # 2 in a row, and one step was taken: fine
    _steps(scaler, param, [torch.full((2,), float("inf"))])
    with pytest.raises(NumericalError) as info:
        scaler.finish("optimizing", "x")
    assert info.value.code == "non_finite_values" and info.value.stage == "optimizing"
    assert float(scaler.scale) == 2.0**10 / 8


def test_a_stage_whose_every_step_was_skipped_fails_however_short():
    scaler = DynamicLossScale(torch.float32, "cpu")
    _steps(scaler, torch.zeros(2), [torch.full((2,), float("nan"))] * 2)
    with pytest.raises(NumericalError):
        scaler.finish("inverting", "x")


# ---------------------------------------------------------------------------------------------
# PACM on the tiny model (32x32: latents 4x4)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    from tests.support.engine import tiny_animator

    animator = tiny_animator(tiny_model_dir)
    cond, uncond = animator.encode_prompt("an astronaut")
    gen = torch.Generator().manual_seed(3)
    return {
        "animator": animator,
        "cond": cond,
        "uncond": uncond,
        "z0": torch.randn(1, 4, 4, 4, generator=gen),
        "pose": torch.rand(1, 3, 32, 32, generator=gen),
    }


def _denoiser(unet, controlnet, scheduler, steps):
    return ControlledDenoiser(unet, controlnet, DDIMSchedule.from_scheduler(scheduler, steps))


def _invert(parts, denoiser, latents, inner_steps, early_stop=0.0):
    return pacm.pose_aware_inversion(
        denoiser,
        latents,
        parts["cond"],
        parts["uncond"],
        parts["pose"],
        guidance_scale=7.5,
        inner_steps=inner_steps,
        lr=0.05,
        early_stop=early_stop,
    )


def _overflow_grad_passes(unet, which):
    """Multiply the U-Net's output by inf in the grad-enabled passes numbered in ``which``."""
    seen = {"n": 0}

    def hook(module, args, kwargs, output):
        if not torch.is_grad_enabled():
            return output
        seen["n"] += 1
        return (output[0] * float("inf"), *output[1:]) if seen["n"] in which else output

    return unet.register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_an_injected_overflow_is_skipped_and_the_inversion_stays_finite(parts, dtype, monkeypatch):
    a = parts["animator"]
    unet, controlnet = copy.deepcopy(a.unet).to(dtype), copy.deepcopy(a.controlnet).to(dtype)
    denoiser = _denoiser(unet, controlnet, a.scheduler, 1)
    latents = pacm.ddim_inversion(denoiser, parts["z0"], parts["cond"], parts["pose"])
    with monkeypatch.context() as m:  # the clean run at the scale the skip halves to (fp16)
        m.setattr(pacm, "DynamicLossScale", functools.partial(DynamicLossScale, init_scale=2.0**9))
        clean = _invert(parts, denoiser, latents, inner_steps=2)
    handle = _overflow_grad_passes(unet, which={1})  # the first of three inner iterations
    try:
        skipped = _invert(parts, denoiser, latents, inner_steps=3)
    finally:
        handle.remove()
    assert torch.isfinite(skipped.embeddings).all() and torch.isfinite(skipped.reconstruction).all()
    # The skipped iteration left no trace: the same as two clean iterations at the halved scale.
    assert torch.equal(skipped.embeddings, clean.embeddings)
    assert torch.equal(skipped.reconstruction, clean.reconstruction)
    assert skipped.final_losses == clean.final_losses


def test_a_permanently_non_finite_gradient_fails_after_the_bound(parts):
    a = parts["animator"]
    denoiser = _denoiser(a.unet, a.controlnet, a.scheduler, 1)
    latents = pacm.ddim_inversion(denoiser, parts["z0"], parts["cond"], parts["pose"])
    handle = _overflow_grad_passes(a.unet, which=range(1, 100))
    try:
        with pytest.raises(NumericalError) as info:
            _invert(parts, denoiser, latents, inner_steps=12)
    finally:
        handle.remove()
    assert info.value.code == "non_finite_values" and info.value.stage == "inverting"
    # it stopped at the bound (8 skips in a row, read with the early-stop flag), not after all 12
    assert denoiser.counter.backward["setup"] == 8


# ---------------------------------------------------------------------------------------------
# Early stopping without a host read per inner iteration
# ---------------------------------------------------------------------------------------------
class HostReads(TorchDispatchMode):
    """Counts the reads that block the host on a device: ``.item()``/``bool()``/``int()`` (aten's
    ``_local_scalar_dense``), ``.tolist()`` and copies to the CPU. Adam's own step count is skipped:
    it is a CPU tensor by design, and on CUDA the optimiser runs capturable (its count on the device)."""

    def __init__(self):
        super().__init__()
        self.count, self.active = 0, False

    def __enter__(self):
        self.active = True
        return super().__enter__()

    def __exit__(self, *exc):
        self.active = False
        return super().__exit__(*exc)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and not _in_optimizer():
            self.count += 1

        return func(*args, **(kwargs or {}))


def _in_optimizer() -> bool:
    return any("/torch/optim/" in frame.filename for frame in traceback.extract_stack())


@pytest.fixture
def host_reads(monkeypatch):
    mode = HostReads()
    tolist = torch.Tensor.tolist

    def counted(self):
        mode.count += mode.active
        return tolist(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counted)  # tolist reads memory without aten
    return mode


def test_early_stopping_reads_the_host_every_other_iteration_with_the_same_result(parts, host_reads):
    a = parts["animator"]
    denoiser = _denoiser(a.unet, a.controlnet, a.scheduler, 2)
    latents = pacm.ddim_inversion(denoiser, parts["z0"], parts["cond"], parts["pose"])
    inner = 6
    with host_reads:
        inv = _invert(parts, denoiser, latents, inner_steps=inner)
    # per timestep: the flag after iterations 2 and 4 (not 6: the loop ends); then one read of
    # the losses and one of the skip counters for the stage. The old loop read 7 per timestep.
    assert host_reads.count == 2 * (inner // pacm.EARLY_STOP_EVERY - 1) + 2 == 6
    assert denoiser.counter.backward["setup"] == 2 * inner

    # A threshold every loss is under: the first iteration's update is kept, then the embedding is
    # frozen on the device until the host sees the flag after iteration 2.
    stopped = _denoiser(a.unet, a.controlnet, a.scheduler, 2)
    early = _invert(parts, stopped, latents, inner_steps=inner, early_stop=1e9)
    one = _invert(parts, _denoiser(a.unet, a.controlnet, a.scheduler, 2), latents, inner_steps=1)
    assert torch.equal(early.embeddings, one.embeddings) and early.final_losses == one.final_losses
    assert stopped.counter.backward["setup"] == 2 * pacm.EARLY_STOP_EVERY
    assert inv.final_losses[0] != one.final_losses[0]
