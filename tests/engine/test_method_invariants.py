"""Tests that fail when the method is implemented wrongly (issue 13), on the tiny random model.

Each test pins one equation or data flow of the paper against an independent computation: diffusers'
own schedulers and ControlNet pipeline, a literal re-implementation of Alg. 1, or a spy on what each
U-Net call receives. ``bench/mutants.py`` applies plausible wrong methods to a copy of the engine and
checks that this file (with the other engine tests) fails for each; docs/evaluation.md lists them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention

from engine import AnimateConfig, PoseAnimator
from engine.method.attention import AttentionController, DualConsistencyAttnProcessor
from engine.method.batching import FrameBatcher
from engine.method.ddim import DDIMSchedule
from engine.method.denoiser import ControlledDenoiser, guided
from engine.method.pacm import SourceInversion, ddim_inversion, optimise_pose_embeddings, pose_aware_inversion
from engine.method.progress import StageTracker
from tests.support.engine import FAST as ENGINE_FAST
from tests.support.engine import astronaut_example, tiny_animator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROMPT = "an astronaut on the road"
W = 7.5
FAST = AnimateConfig(**ENGINE_FAST, inversion_early_stop=0.0)


@pytest.fixture(scope="module")
def animator(tiny_model_dir) -> PoseAnimator:
    return tiny_animator(tiny_model_dir)


@pytest.fixture(scope="module")
def example():
    return astronaut_example(3)


@pytest.fixture(scope="module")
def f64(animator):
    """float64 copies of U-Net and ControlNet (optimisation comparisons need float64, DESIGN 4)."""
    import copy

    return copy.deepcopy(animator.unet).double(), copy.deepcopy(animator.controlnet).double()


def _texts(animator, dtype=torch.float32):
    cond, uncond = animator.encode_prompt(PROMPT)
    return cond.to(dtype), uncond.to(dtype)


def _poses(animator, example, config=FAST) -> torch.Tensor:
    """Rendered [p_s, transition, targets] in [0, 1], (N+1, 3, H, W)."""
    image, source, targets = example
    seq = animator.build_pose_sequence(source.to_canvas(*image.size).to_canvas(64, 64), targets, config)
    return animator.render_poses(seq, config).float() / 255.0


def _z0(animator, example):
    return animator.encode_image(animator.prepare_image(example[0], FAST))


# ---------------------------------------------------------------------------------------------
# DDIM in both directions against diffusers' schedulers
# ---------------------------------------------------------------------------------------------
def test_ddim_inversion_matches_diffusers_ddim_inverse_scheduler(animator, example):
    """Alg. 1 line 1: DDIM inversion at guidance 1 (conditional branch only) under p_s."""
    from diffusers import DDIMInverseScheduler

    T = 4
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, T)
    denoiser = ControlledDenoiser(animator.unet, animator.controlnet, schedule)
    cond, _ = _texts(animator)
    pose = _poses(animator, example)[:1]
    z0 = _z0(animator, example)
    ours = ddim_inversion(denoiser, z0, cond, pose)

    inverse = DDIMInverseScheduler.from_config(animator.scheduler.config)
    inverse.set_timesteps(T)
    assert inverse.timesteps.tolist() == schedule.timesteps.flip(0).tolist()
    z = z0
    expected = [z0]
    with torch.no_grad():
        for k, timestep in enumerate(inverse.timesteps):
            assert int(timestep) == int(schedule.timestep(k + 1))
            down, mid = animator.controlnet(
                z, timestep, encoder_hidden_states=cond, controlnet_cond=pose, return_dict=False
            )
            eps = animator.unet(
                z,
                timestep,
                encoder_hidden_states=cond,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
            z = inverse.step(eps, timestep, z).prev_sample
            expected.append(z)
    torch.testing.assert_close(ours, torch.cat(expected), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Generation (CFG + ControlNet + DDIM) against diffusers' StableDiffusionControlNetPipeline
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_dcam", [False, True])
def test_sampling_matches_diffusers_controlnet_pipeline(animator, example, use_dcam):
    """Without PACM every frame is ordinary ControlNet CFG sampling from Z_T with its own pose; with
    DCAM frame 0 still is (plain self-attention). Pins ``guided`` (eps_u + w(eps_c - eps_u)), the
    batch layout, the pose per frame and the DDIM step against diffusers' own pipeline math."""
    from diffusers import StableDiffusionControlNetPipeline

    T = 3
    config = FAST.replace(num_inference_steps=T, use_pacm=False, use_dcam=use_dcam, use_mgdm=False)
    cond, uncond = _texts(animator)
    poses = _poses(animator, example, config)[:3]
    z_T = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, T)
    denoiser = ControlledDenoiser(animator.unet, animator.controlnet, schedule)
    source = SourceInversion(z_T.expand(T + 1, -1, -1, -1).clone(), None, None, [])
    pixels = (poses * 255).round().to(torch.uint8)
    ours = animator.sample(
        denoiser, source, None, cond, uncond, pixels, None, FrameBatcher(16), config, StageTracker(None, None)
    )

    pipe = StableDiffusionControlNetPipeline(
        vae=animator.vae,
        text_encoder=animator.text_encoder,
        tokenizer=animator.tokenizer,
        unet=animator.unet,
        controlnet=animator.controlnet,
        scheduler=type(animator.scheduler).from_config(animator.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    frames = [0] if use_dcam else range(poses.shape[0])
    for i in frames:
        theirs = pipe(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            image=poses[i : i + 1],
            height=64,
            width=64,
            num_inference_steps=T,
            guidance_scale=W,
            latents=z_T.clone(),
            output_type="latent",
        ).images
        torch.testing.assert_close(ours[i : i + 1], theirs, rtol=1e-4, atol=1e-5)
    if use_dcam:  # and DCAM really changes the other frames
        assert (ours[1] - ours[0]).abs().max() > 1e-4


def test_guided_is_classifier_free_guidance():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.5])
    torch.testing.assert_close(guided(u, c, 7.5), torch.tensor([16.0, 16.75]))
    torch.testing.assert_close(guided(u, c, 1.0), c)


# ---------------------------------------------------------------------------------------------
# PACM against literal re-implementations of Eq. 6 and Alg. 1 (float64)
# ---------------------------------------------------------------------------------------------
def _f64_setup(animator, example, f64, T=2):
    unet, controlnet = f64
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, T)
    denoiser = ControlledDenoiser(unet, controlnet, schedule)
    cond, uncond = _texts(animator, torch.float64)
    poses = _poses(animator, example).double()
    z0 = _z0(animator, example).double()
    return denoiser, cond, uncond, poses, z0


def _eps_cfg(denoiser, z, t, text, uncond, pose):
    return guided(denoiser(z, t, uncond, pose), denoiser(z, t, text, pose), W)


def _reference_pose_aware_inversion(denoiser, latents, cond, uncond, pose, n, lr):
    """Eq. 6 / Alg. 1 line 2 written out: O_{s,t} from O_{s,t+1}; Zbar advanced with the final one."""
    s, T = denoiser.schedule, denoiser.schedule.num_steps
    z_bar, emb, out = latents[T:], cond.float(), []  # Adam on a float32 master, as the engine does
    for t in range(T, 0, -1):
        emb = emb.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([emb], lr=lr)
        for _ in range(n):
            loss = F.mse_loss(
                s.step(z_bar, _eps_cfg(denoiser, z_bar, t, emb, uncond, pose), t), latents[t - 1 : t]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        emb = emb.detach()
        out.append(emb[0])
        with torch.no_grad():
            z_bar = s.step(z_bar, _eps_cfg(denoiser, z_bar, t, emb, uncond, pose), t)
    return torch.stack(out), z_bar[0]


def _reference_frame_optimisation(denoiser, latents, source_embeddings, uncond, pose, k, lr):
    """Alg. 1 lines 3-9 for ONE frame i: from Z_T, at each t sample Ztilde_{t-1} under p_i with
    Otilde_{i,t} (initialised from O_{s,t}) and step Adam on MSE(Z_{t-1}, Ztilde_{t-1})."""
    s, T = denoiser.schedule, denoiser.schedule.num_steps
    z, out = latents[T:], []
    for t in range(T, 0, -1):
        emb = source_embeddings[T - t : T - t + 1].float().requires_grad_(True)  # float32 master
        opt = torch.optim.Adam([emb], lr=lr)
        for _ in range(k):
            z_prev = s.step(z, _eps_cfg(denoiser, z, t, emb, uncond, pose), t)  # line 6
            loss = F.mse_loss(z_prev, latents[t - 1 : t])  # the target is Z_{t-1}
            opt.zero_grad()
            loss.backward()
            opt.step()  # line 7
        out.append(emb.detach()[0])
        z = z_prev.detach()
    return torch.stack(out)


def test_pose_aware_inversion_equals_eq6_written_out(animator, example, f64):
    denoiser, cond, uncond, poses, z0 = _f64_setup(animator, example, f64)
    latents = ddim_inversion(denoiser, z0, cond, poses[:1])
    inv = pose_aware_inversion(
        denoiser, latents, cond, uncond, poses[:1], guidance_scale=W, inner_steps=2, lr=0.05, early_stop=0.0
    )
    emb, z_bar = _reference_pose_aware_inversion(denoiser, latents, cond, uncond, poses[:1], n=2, lr=0.05)
    torch.testing.assert_close(inv.embeddings, emb.double(), rtol=0, atol=1e-9)
    torch.testing.assert_close(inv.reconstruction, z_bar, rtol=0, atol=1e-9)


def test_pose_optimisation_equals_alg1_written_out_frame_by_frame(animator, example, f64):
    """Kills: targeting Z_t instead of Z_{t-1}, initialising from the wrong step's embedding, continuing
    the trajectory from the wrong sample, conditioning on another frame's pose, mean over frames."""
    denoiser, cond, uncond, poses, z0 = _f64_setup(animator, example, f64)
    latents = ddim_inversion(denoiser, z0, cond, poses[:1])
    inv = pose_aware_inversion(
        denoiser, latents, cond, uncond, poses[:1], guidance_scale=W, inner_steps=1, lr=0.05, early_stop=0.0
    )
    targets = poses[1:3]
    ours = optimise_pose_embeddings(denoiser, inv, uncond, targets, guidance_scale=W, inner_steps=2, lr=0.05)
    for i in range(targets.shape[0]):
        ref = _reference_frame_optimisation(
            denoiser, latents, inv.embeddings, uncond, targets[i : i + 1], k=2, lr=0.05
        )
        torch.testing.assert_close(ours[:, i], ref.double(), rtol=0, atol=1e-8)


def test_both_optimisations_lower_their_loss(animator, example):
    T = 2
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, T)
    denoiser = ControlledDenoiser(animator.unet, animator.controlnet, schedule)
    cond, uncond = _texts(animator)
    poses = _poses(animator, example)
    latents = ddim_inversion(denoiser, _z0(animator, example), cond, poses[:1])

    def loss_at_T(text, pose):
        with torch.no_grad():
            z = latents[T:].expand(pose.shape[0], -1, -1, -1)
            u = uncond.expand(pose.shape[0], -1, -1)
            step = schedule.step(z, _eps_cfg(denoiser, z, T, text, u, pose), T)
            return (step - latents[T - 1 : T]).pow(2).flatten(1).mean(1)

    inv = pose_aware_inversion(
        denoiser, latents, cond, uncond, poses[:1], guidance_scale=W, inner_steps=3, lr=0.05, early_stop=0.0
    )
    before, after = loss_at_T(cond, poses[:1]), loss_at_T(inv.embeddings[:1], poses[:1])
    assert after.item() < 0.9 * before.item(), (before, after)

    targets = poses[1:3]
    out = optimise_pose_embeddings(denoiser, inv, uncond, targets, guidance_scale=W, inner_steps=3, lr=0.05)
    start = loss_at_T(inv.embeddings[:1].expand(len(targets), -1, -1), targets)
    end = loss_at_T(out[0].float(), targets)
    assert bool((end < start).all()), (start, end)


# ---------------------------------------------------------------------------------------------
# The pipeline's data flow: which pose and which embedding each U-Net call receives
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def traced(animator, example):
    """One job at frame batch 1 with every denoiser call recorded, plus the tensors it was built from."""
    calls: list[dict] = []
    captured: dict = {}
    original_call = ControlledDenoiser.__call__

    def spy(self, latents, t, text, pose):
        calls.append(
            {
                "stage": self.counter.stage,
                "t": t,
                "text": text.detach().clone(),
                "pose": pose.detach().clone(),
            }
        )
        return original_call(self, latents, t, text, pose)

    def wrap(name):
        original = getattr(animator, name)

        def wrapper(*args, **kwargs):
            out = original(*args, **kwargs)
            captured.setdefault(name, []).append(out)
            return out

        return wrapper

    mp = pytest.MonkeyPatch()
    mp.setattr(ControlledDenoiser, "__call__", spy)
    for name in ("render_poses", "encode_prompt", "invert_source", "optimise_frames"):
        mp.setattr(animator, name, wrap(name))
    decode = animator.decode_latents
    mp.setattr(
        animator,
        "decode_latents",
        lambda z: captured.setdefault("latents", []).append(z.clone()) or decode(z),
    )
    try:
        image, source, targets = example
        result = animator.animate(
            image, targets[:2], PROMPT, source_pose=source, config=FAST.replace(frame_batch_size=1)
        )
    finally:
        mp.undo()
    latents = torch.cat(captured.pop("latents"))
    return {"calls": calls, "result": result, "latents": latents, **{k: v[-1] for k, v in captured.items()}}


def _by_stage(traced, stage):
    return [c for c in traced["calls"] if c["stage"] == stage]


def test_inversion_runs_under_the_source_pose_and_ddim_inversion_at_guidance_one(traced):
    T = FAST.num_inference_steps
    poses = traced["render_poses"].float() / 255.0
    cond, _ = traced["encode_prompt"]
    calls = _by_stage(traced, "inverting")
    assert calls, "no inversion calls recorded"
    for c in calls:  # DDIM inversion and pose-aware inversion: p_s, never a target pose
        assert torch.equal(c["pose"], poses[:1].expand_as(c["pose"]))
    ddim = calls[:T]  # Alg. 1 line 1: t = 1..T, one conditional call each (w = 1: no null text)
    assert [c["t"] for c in ddim] == list(range(1, T + 1))
    for c in ddim:
        assert c["text"].shape[0] == 1 and torch.equal(c["text"], cond)


def test_per_frame_optimisation_is_conditioned_on_each_frames_own_pose(traced):
    """Alg. 1 line 6 samples under p_i: never the source pose, never another frame's pose."""
    poses = traced["render_poses"].float() / 255.0
    calls = _by_stage(traced, "optimizing")
    frames_seen = set()
    for c in calls:
        matches = [i for i in range(1, poses.shape[0]) if torch.equal(c["pose"][0], poses[i])]
        assert len(matches) == 1, "an optimisation call used a pose that is no target frame's pose"
        frames_seen.add(matches[0])
        assert not torch.equal(c["pose"][0], poses[0])
    assert frames_seen == set(range(1, poses.shape[0]))


def test_generation_reads_each_frames_embedding_of_the_same_timestep(traced):
    """Frame i at step t uses Otilde_{i,t} (``[T - t, i - 1]``) and p_i; frame 0 uses O_{s,t} and p_s."""
    T = FAST.num_inference_steps
    poses = traced["render_poses"].float() / 255.0
    _, uncond = traced["encode_prompt"]
    source_emb = traced["invert_source"].embeddings
    frame_emb = traced["optimise_frames"]
    calls = _by_stage(traced, "sampling")
    assert len(calls) == T * poses.shape[0]  # frame batch 1: one call per frame per step
    for index, c in enumerate(calls):
        t, frame = T - index // poses.shape[0], index % poses.shape[0]
        assert c["t"] == t
        assert c["text"].shape[0] == 2 and torch.equal(c["text"][0], uncond[0])  # [uncond, cond]
        expected = source_emb[T - t] if frame == 0 else frame_emb[T - t, frame - 1]
        assert torch.equal(c["text"][1], expected), (t, frame)
        assert torch.equal(c["pose"], poses[frame : frame + 1].expand(2, -1, -1, -1))
    # the embeddings really differ per step (otherwise time reversal would go unnoticed)
    assert not torch.equal(frame_emb[0], frame_emb[-1])


def test_frame_0_equals_the_pose_aware_reconstruction_exactly_at_batch_1(traced):
    """DESIGN 2.6 / 4: generation's frame 0 retraces the pose-aware inversion bit for bit."""
    latents = traced["latents"]
    assert torch.equal(latents[0], traced["invert_source"].reconstruction)


@pytest.mark.parametrize(
    ("dtype", "batch", "atol"),
    [(torch.bfloat16, 1, 0.0), (torch.float32, 16, 1e-4)],
    ids=["bfloat16-batch1", "float32-batch16"],
)
def test_frame_0_reconstruction_gap_in_other_settings(tiny_model_dir, example, dtype, batch, atol):
    """bf16 at batch 1 is exact too (same call layout); a batch of 16 frames changes the kernels'
    blocking, so frame 0 differs at floating-point level (measured 2e-5 in float32)."""
    animator = tiny_animator(tiny_model_dir, dtype=dtype)
    captured = {}
    invert, decode = animator.invert_source, animator.decode_latents
    animator.invert_source = lambda *a, **k: captured.setdefault("inversion", invert(*a, **k))
    animator.decode_latents = lambda z: captured.setdefault("frame0", z[0].clone()) is None or decode(z)
    image, source, targets = example
    config = FAST.replace(
        frame_batch_size=batch,
        num_inference_steps=2,
        use_mgdm=False,
        transition_frames=0,
        inversion_inner_steps=1,
    )
    animator.animate(image, targets[:2], PROMPT, source_pose=source, config=config)
    gap = (captured["frame0"] - captured["inversion"].reconstruction).abs().max().item()
    assert gap <= atol, gap


# ---------------------------------------------------------------------------------------------
# MGDM end to end: masks refresh between steps and reach DCAM
# ---------------------------------------------------------------------------------------------
def test_mgdm_masks_refresh_every_step_and_dcam_reads_the_fresh_ones(animator, example, monkeypatch):
    T = 3
    set_calls: list[torch.Tensor] = []
    reads: list[tuple[int, bool]] = []  # (masks set so far, cache agrees with the current masks)
    original_set = AttentionController.set_masks
    original_plan = AttentionController.region_plan

    def spy_set(self, masks):
        set_calls.append(None if masks is None else masks.clone())
        return original_set(self, masks)

    def spy_plan(self, grid, targets):
        # DCAM reads the masks as region index sets: the character region's sizes must be the
        # current masks' at this grid
        out = original_plan(self, grid, targets)
        fresh = (F.interpolate(self.masks[:, None].float(), size=grid, mode="area")[:, 0] >= 0.5).flatten(1)
        agrees = torch.equal(self._regions[grid].count[0], fresh.sum(1)) and torch.equal(
            self.masks, set_calls[-1]
        )
        reads.append((len(set_calls), agrees))
        return out

    monkeypatch.setattr(AttentionController, "set_masks", spy_set)
    monkeypatch.setattr(AttentionController, "region_plan", spy_plan)
    image, source, targets = example
    result = animator.animate(
        image, targets[:2], PROMPT, source_pose=source, config=FAST.replace(num_inference_steps=T)
    )
    assert result.mask_source == "cross_attention"
    assert len(set_calls) == T + 1  # the drawn masks, then a refresh after every step
    assert any(not torch.equal(set_calls[0], later) for later in set_calls[1:]), "masks never refreshed"
    assert {n for n, _ in reads} == set(range(1, T + 1)), "DCAM did not read the masks at every step"
    assert all(agrees for _, agrees in reads), "DCAM read stale masks"


# ---------------------------------------------------------------------------------------------
# DCAM with weights that tell the three references apart
# ---------------------------------------------------------------------------------------------
def _naive(q, k, v, allowed=None):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if allowed is not None:
        allowed = allowed if allowed.any() else torch.ones_like(allowed)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("with_masks", [False, True])
@torch.no_grad()
def test_dcam_weights_frame_0_previous_and_current_frame_in_that_order(with_masks):
    """Eq. 8 with asymmetric lambdas (the paper's 0.15/0.15 cannot tell the previous frame from the
    current one) and, with masks, Eq. 10's polarity: M_i selects the character branch."""
    torch.manual_seed(0)
    groups, frames, grid, dim, heads = 2, 4, 4, 32, 4
    attn = Attention(query_dim=dim, heads=heads, dim_head=dim // heads).eval()
    hidden = torch.randn(groups * frames, grid * grid, dim)
    lambdas = (0.5, 0.3, 0.2)
    ctl = AttentionController(latent_hw=(grid, grid), batch_size=groups)
    ctl.begin_batch(list(range(frames)))
    masks = torch.rand(frames, grid, grid, generator=torch.Generator().manual_seed(5)) > 0.5
    if with_masks:
        ctl.set_masks(masks.float())
    out = DualConsistencyAttnProcessor(lambdas, controller=ctl, name="x")(attn, hidden)

    d = dim // heads
    q, k, v = (
        f(hidden).view(-1, grid * grid, heads, d).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v)
    )
    expected = torch.empty_like(q)
    for g in range(groups):
        for i in range(frames):
            row = g * frames + i
            if i == 0:
                expected[row] = _naive(q[row], k[row], v[row])
                continue
            refs = [(g * frames, 0), (row - 1, i - 1), (row, i)]
            if not with_masks:
                expected[row] = sum(
                    w * _naive(q[row], k[j], v[j]) for w, (j, _) in zip(lambdas, refs, strict=True)
                )
                continue
            char = sum(
                w * _naive(q[row], k[j], v[j], masks[f].flatten())
                for w, (j, f) in zip(lambdas, refs, strict=True)
            )
            back = sum(
                w * _naive(q[row], k[j], v[j], ~masks[f].flatten())
                for w, (j, f) in zip(lambdas, refs, strict=True)
            )
            m = masks[i].flatten()[None, :, None].float()
            expected[row] = m * char + (1 - m) * back
    expected = attn.to_out[1](attn.to_out[0](expected.transpose(1, 2).reshape(groups * frames, -1, dim)))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_mgdm_frame_masks_start_from_the_pose_and_the_source_mask(animator, example):
    """Before any map exists M_i is the dilated-limb mask of p_i (ones on the body, zeros elsewhere)."""
    image, source, targets = example
    seq = animator.build_pose_sequence(source.to_canvas(*image.size).to_canvas(64, 64), targets, FAST)
    masks = animator.initial_masks(seq, None, (8, 8), FAST)
    from engine.method.masks import pose_mask

    drawn = np.stack([pose_mask(p, 64, 64) for p in seq])
    assert masks.shape == (len(seq), 8, 8)
    # polarity: the latent mask is 1 where the drawn body is (area >= 0.5)
    area = F.interpolate(torch.from_numpy(drawn.astype(np.float32))[:, None], size=(8, 8), mode="area")[:, 0]
    assert torch.equal(masks, (area >= 0.5).float())
    assert 0 < masks.mean() < 1
