"""torch.compile of the U-Net and the ControlNet (issue 23): a dynamo cache each, batch sizes sharing
one graph, broadcast inputs not recompiling, outputs equal to eager. Dynamo's "eager" backend traces
exactly what inductor would be given, without generating code, so this runs on the CPU in seconds."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.eval_frame import _debug_get_cache_entry_list
from torch._dynamo.utils import counters

from engine.method.compiled import _own_code, compile_models
from engine.method.ddim import DDIMSchedule
from engine.method.denoiser import ControlledDenoiser


def test_diffusers_models_share_one_forward_code_object_and_ours_do_not(tiny_model_dir):
    """Why compiling each model's forward as it is was not enough: dynamo keeps one cache, with one
    recompile limit, per code object, and diffusers 0.42 wraps every model's forward in the same one."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    control = ControlNetModel.from_pretrained(tiny_model_dir / "controlnet")
    assert unet.forward.__func__.__code__ is control.forward.__func__.__code__
    ours = _own_code(unet.forward, "unet"), _own_code(control.forward, "controlnet")
    assert ours[0].__func__.__code__ is not ours[1].__func__.__code__
    assert ours[0].__self__ is unet and ours[0].__wrapped__ is unet.forward.__wrapped__


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True, recompile_limit=8):
        yield
    torch._dynamo.reset()


def test_compiled_models_keep_a_cache_each_and_one_graph_for_every_batch(tiny_model_dir, fresh_dynamo):
    from tests.support.engine import tiny_animator

    animator = tiny_animator(tiny_model_dir)
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, 2)
    denoiser = ControlledDenoiser(animator.unet, animator.controlnet, schedule)
    cond, _ = animator.encode_prompt("an astronaut")
    gen = torch.Generator().manual_seed(0)
    inputs = [
        (torch.randn(b, 4, 4, 4, generator=gen), torch.rand(b, 3, 32, 32, generator=gen)) for b in (2, 3)
    ]
    with torch.no_grad():
        eager = [denoiser(z, 2, cond.expand(len(z), -1, -1), pose) for z, pose in inputs]
        animator.compile(backend="eager")
        compiled = [denoiser(z, 2, cond.expand(len(z), -1, -1), pose) for z, pose in inputs]
        dense = denoiser(inputs[1][0], 1, cond.repeat(3, 1, 1), inputs[1][1])  # another t, not a view

    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.isfinite(dense).all()
    # two graphs in all: one per model, for batch 2 and 3, broadcast or dense text, any timestep
    assert counters["stats"]["unique_graphs"] == 2
    assert counters["frames"]["total"] == counters["frames"]["ok"] == 2
    models = (animator.unet, animator.controlnet)
    caches = [_debug_get_cache_entry_list(m.forward.__wrapped__.__func__.__code__) for m in models]
    assert [len(c) for c in caches] == [1, 1]
    assert torch._dynamo.config.recompile_limit >= 32  # per model: room for a job's graphs


def _sample_steps(unet, cond, steps: int, graphs: list[int]) -> list[torch.Tensor]:
    """The U-Net in DCAM+MGDM sampling as ``PoseAnimator.sample`` runs it (4 frames in chunks of 2,
    CFG pairs, masks renewed and cross-attention maps recorded every step); ``graphs`` gets dynamo's
    graph count after each step. (The ControlNet has no processors of ours: left out, it only adds
    tracing time.)"""
    from engine.method.attention import AttentionController, install_processors

    gen = torch.Generator().manual_seed(1)
    z = torch.randn(4, 4, 8, 8, generator=gen)
    controller = AttentionController(latent_hw=(8, 8), batch_size=2, recording=True)
    outputs = []
    with (
        torch.no_grad(),
        install_processors(unet, controller, (0.7, 0.15, 0.15), use_dcam=True, record_maps=True),
    ):
        for step in range(steps):
            controller.set_masks((torch.rand(4, 8, 8, generator=gen) > 0.3 + 0.2 * step).float())
            for chunk in ([0, 1], [2, 3]):
                controller.begin_batch(chunk)
                text = cond.expand(2 * len(chunk), -1, -1)
                t = torch.tensor(900 - 400 * step)
                outputs.append(unet(z[chunk].repeat(2, 1, 1, 1), t, encoder_hidden_states=text).sample)
            controller.end_step()
            assert controller.pop_maps()  # maps were recorded
            graphs.append(counters["stats"]["unique_graphs"])
    return outputs


def test_dcam_mgdm_sampling_compiles_once_and_never_recompiles_after_the_first_step(
    tiny_model_dir, fresh_dynamo
):
    """The processors' Python state (controller dicts, index caches, region plans) stays out of the
    guards: only the first sampling step compiles, later steps (new masks, other chunks) reuse it.
    Before (processors traced), with the ControlNet too: 42 graphs after step 1, 63 after step 2."""
    from tests.support.engine import tiny_animator

    animator = tiny_animator(tiny_model_dir)
    cond, _ = animator.encode_prompt("an astronaut")
    eager = _sample_steps(animator.unet, cond, 2, [])
    compile_models({"unet": animator.unet}, backend="eager", dynamic=True)
    graphs: list[int] = []
    compiled = _sample_steps(animator.unet, cond, 2, graphs)
    for a, b in zip(eager, compiled, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert graphs[0] == graphs[1], graphs  # no graph after the first step
    assert graphs[0] <= 40, graphs  # graph breaks around the two disabled calls
