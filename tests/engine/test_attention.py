"""DCAM / MGDM processor invariants (DESIGN 2.4-2.5): they hold for any weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from engine.method.attention import (
    AttentionController,
    CrossAttentionMapProcessor,
    DualConsistencyAttnProcessor,
    install_processors,
)

try:
    from diffusers.pipelines.deprecated.text_to_video_synthesis.pipeline_text_to_video_zero import (
        CrossFrameAttnProcessor2_0,
    )
except ImportError:  # older diffusers layout
    from diffusers.pipelines.text_to_video_synthesis.pipeline_text_to_video_zero import (  # type: ignore
        CrossFrameAttnProcessor2_0,
    )

GROUPS, FRAMES, GRID, DIM = 2, 4, 4, 32
TOKENS = GRID * GRID


@pytest.fixture
def attn() -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=DIM, heads=4, dim_head=8).eval()


@pytest.fixture
def hidden() -> torch.Tensor:
    return torch.randn(GROUPS * FRAMES, TOKENS, DIM, generator=torch.Generator().manual_seed(1))


def _attend(q, k, v, allowed=None):
    """Naive attention of one frame: q (h, L, d), k/v (h, L, d), allowed (L,) bool or None."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if allowed is not None:
        if not allowed.any():
            allowed = torch.ones_like(allowed)  # empty region: fall back to all keys
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


def _reference(attn, hidden, lambdas, masks=None):
    """Eq. 8 / Eq. 9-10 written frame by frame with explicit loops."""
    b = hidden.shape[0]
    heads, d = attn.heads, DIM // attn.heads
    q, k, v = (f(hidden).view(b, -1, heads, d).transpose(1, 2) for f in (attn.to_q, attn.to_k, attn.to_v))
    out = torch.empty_like(q)
    for g in range(GROUPS):
        for i in range(FRAMES):
            row = g * FRAMES + i
            if i == 0:
                out[row] = _attend(q[row], k[row], v[row])
                continue
            refs = [g * FRAMES, g * FRAMES + i - 1, row]
            if masks is None:
                out[row] = sum(w * _attend(q[row], k[j], v[j]) for w, j in zip(lambdas, refs, strict=True))
                continue
            m_i = masks[i].flatten()[None, :, None].float()
            char = sum(
                w * _attend(q[row], k[j], v[j], masks[j - g * FRAMES].flatten())
                for w, j in zip(lambdas, refs, strict=True)
            )
            back = sum(
                w * _attend(q[row], k[j], v[j], ~masks[j - g * FRAMES].flatten())
                for w, j in zip(lambdas, refs, strict=True)
            )
            out[row] = m_i * char + (1 - m_i) * back
    out = out.transpose(1, 2).reshape(b, -1, heads * d)
    return attn.to_out[1](attn.to_out[0](out))


@torch.no_grad()
def test_lambdas_001_equal_the_stock_processor(attn, hidden):
    ours = DualConsistencyAttnProcessor((0.0, 0.0, 1.0), batch_size=GROUPS)(attn, hidden)
    stock = AttnProcessor2_0()(attn, hidden)
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_lambdas_100_equal_cross_frame_attention_to_frame_0(attn, hidden):
    ours = DualConsistencyAttnProcessor((1.0, 0.0, 0.0), batch_size=GROUPS)(attn, hidden)
    cross_frame = CrossFrameAttnProcessor2_0(batch_size=GROUPS)(attn, hidden)
    torch.testing.assert_close(ours, cross_frame, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_paper_lambdas_match_the_frame_by_frame_definition(attn, hidden):
    lambdas = (0.7, 0.15, 0.15)
    ours = DualConsistencyAttnProcessor(lambdas, batch_size=GROUPS)(attn, hidden)
    torch.testing.assert_close(ours, _reference(attn, hidden, lambdas), rtol=1e-5, atol=1e-6)
    # and it is not plain self-attention
    assert (ours - AttnProcessor2_0()(attn, hidden)).abs().max() > 1e-3


@torch.no_grad()
def test_frame_0_keeps_plain_self_attention_whatever_the_other_frames(attn, hidden):
    proc = DualConsistencyAttnProcessor((0.7, 0.15, 0.15), batch_size=GROUPS)
    first = proc(attn, hidden)
    changed = hidden.clone()
    for g in range(GROUPS):
        changed[g * FRAMES + 1 : (g + 1) * FRAMES] += 5.0
    second = proc(attn, changed)
    stock = AttnProcessor2_0()(attn, hidden)
    for g in range(GROUPS):
        assert torch.equal(first[g * FRAMES], second[g * FRAMES])
        torch.testing.assert_close(first[g * FRAMES], stock[g * FRAMES], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_cfg_groups_never_mix(attn, hidden):
    proc = DualConsistencyAttnProcessor((0.7, 0.15, 0.15), batch_size=GROUPS)
    base = proc(attn, hidden)
    perturbed = hidden.clone()
    perturbed[:FRAMES] = torch.randn_like(perturbed[:FRAMES])  # the unconditional group only
    out = proc(attn, perturbed)
    assert torch.equal(out[FRAMES:], base[FRAMES:])
    assert not torch.allclose(out[:FRAMES], base[:FRAMES])


def _random_masks(seed: int, empty_frame: int | None = None, full_frame: int | None = None) -> torch.Tensor:
    masks = torch.rand(FRAMES, GRID, GRID, generator=torch.Generator().manual_seed(seed)) > 0.5
    if empty_frame is not None:
        masks[empty_frame] = False
    if full_frame is not None:
        masks[full_frame] = True
    return masks


def _controller(masks: torch.Tensor | None) -> AttentionController:
    ctl = AttentionController(latent_hw=(GRID, GRID), batch_size=GROUPS)
    ctl.begin_batch(range(FRAMES))
    ctl.set_masks(None if masks is None else masks.float())
    return ctl


@torch.no_grad()
def test_mgdm_attends_character_and_background_separately(attn, hidden):
    masks = _random_masks(3, empty_frame=1, full_frame=2)  # empty and full regions fall back
    lambdas = (0.7, 0.15, 0.15)
    proc = DualConsistencyAttnProcessor(lambdas, controller=_controller(masks))
    torch.testing.assert_close(
        proc(attn, hidden), _reference(attn, hidden, lambdas, masks), rtol=1e-5, atol=1e-6
    )


@torch.no_grad()
def test_mgdm_excluded_keys_get_no_weight(attn, hidden):
    # Literal Eq. 9 (K * M) would still give zeroed keys softmax weight; exclusion must not.
    masks = _random_masks(4)
    masks[0] = False
    masks[0, :2] = True  # frame 0's character: the top two rows only
    proc = DualConsistencyAttnProcessor((1.0, 0.0, 0.0), controller=_controller(masks))
    base = proc(attn, hidden)
    poisoned = hidden.clone()
    for g in range(GROUPS):
        poisoned[g * FRAMES, 2 * GRID :] += 100.0  # frame 0's background tokens only
    out = proc(attn, poisoned)
    for g in range(GROUPS):
        for i in range(1, FRAMES):
            inside = masks[i].flatten()
            row = g * FRAMES + i
            # character queries of frame i read only frame 0's character keys: unchanged
            torch.testing.assert_close(out[row][inside], base[row][inside], rtol=1e-5, atol=1e-5)
            if (~inside).any():
                assert not torch.allclose(out[row][~inside], base[row][~inside])


@torch.no_grad()
def test_mgdm_with_all_ones_masks_equals_dcam(attn, hidden):
    lambdas = (0.7, 0.15, 0.15)
    ones = torch.ones(FRAMES, GRID, GRID, dtype=torch.bool)
    masked = DualConsistencyAttnProcessor(lambdas, controller=_controller(ones))(attn, hidden)
    plain = DualConsistencyAttnProcessor(lambdas, batch_size=GROUPS)(attn, hidden)
    torch.testing.assert_close(masked, plain, rtol=1e-5, atol=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("use_masks", [False, True])
def test_frame_chunks_give_the_same_result_as_one_batch(attn, hidden, use_masks):
    masks = _random_masks(5) if use_masks else None
    lambdas = (0.7, 0.15, 0.15)
    whole = DualConsistencyAttnProcessor(lambdas, controller=_controller(masks))(attn, hidden)
    ctl = _controller(masks)
    proc = DualConsistencyAttnProcessor(lambdas, controller=ctl)
    grouped = hidden.view(GROUPS, FRAMES, TOKENS, DIM)
    parts = []
    for chunk in ([0, 1], [2], [3]):
        ctl.begin_batch(chunk)
        parts.append(
            proc(attn, grouped[:, chunk].reshape(-1, TOKENS, DIM)).view(GROUPS, len(chunk), TOKENS, DIM)
        )
    chunked = torch.cat(parts, dim=1).reshape(-1, TOKENS, DIM)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_chunks_out_of_order_are_refused(attn, hidden):
    ctl = _controller(None)
    proc = DualConsistencyAttnProcessor(controller=ctl)
    ctl.begin_batch([2, 3])
    grouped = hidden.view(GROUPS, FRAMES, TOKENS, DIM)
    with pytest.raises(RuntimeError, match="frame order"):
        proc(attn, grouped[:, [2, 3]].reshape(-1, TOKENS, DIM))


@torch.no_grad()
def test_cross_attention_maps_are_recorded_for_the_conditional_group_only(attn):
    cross = Attention(query_dim=DIM, cross_attention_dim=16, heads=4, dim_head=8).eval()
    ctl = AttentionController(latent_hw=(GRID, GRID), batch_size=GROUPS, map_grid=(GRID, GRID))
    ctl.begin_batch(range(FRAMES))
    ctl.recording = True
    proc = CrossAttentionMapProcessor(ctl)
    hidden = torch.randn(GROUPS * FRAMES, TOKENS, DIM)
    text = torch.randn(GROUPS * FRAMES, 7, 16)
    out = proc(cross, hidden, text)
    torch.testing.assert_close(out, AttnProcessor2_0()(cross, hidden, text))
    maps = ctl.pop_maps()
    assert sorted(maps) == list(range(FRAMES))
    # the maps are the conditional group's softmax over text tokens (they sum to 1 per pixel)
    q = cross.to_q(hidden[FRAMES:]).view(FRAMES, TOKENS, 4, 8).transpose(1, 2)
    k = cross.to_k(text[FRAMES:]).view(FRAMES, 7, 4, 8).transpose(1, 2)
    expected = (q @ k.transpose(-1, -2) * cross.scale).softmax(-1).mean(1)  # (F, L, S)
    for f in range(FRAMES):
        torch.testing.assert_close(maps[f], expected[f].T.reshape(7, GRID, GRID), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(maps[f].sum(0), torch.ones(GRID, GRID), rtol=1e-5, atol=1e-5)


def test_dcam_goes_into_up_block_self_attention_only_and_is_restored(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    before = {name: type(p) for name, p in unet.attn_processors.items()}
    ctl = AttentionController(latent_hw=(8, 8))
    with install_processors(unet, ctl, (0.7, 0.15, 0.15), use_dcam=True, record_maps=True):
        inside = unet.attn_processors
        for name, proc in inside.items():
            if name.startswith("up_blocks.") and ".attn1." in name:
                assert isinstance(proc, DualConsistencyAttnProcessor), name
            elif ".attn2." in name:
                assert isinstance(proc, CrossAttentionMapProcessor), name
            else:
                assert type(proc) is before[name], name
        assert any(isinstance(p, DualConsistencyAttnProcessor) for p in inside.values())
    assert {name: type(p) for name, p in unet.attn_processors.items()} == before

    with (
        pytest.raises(KeyError),
        install_processors(unet, ctl, (0.7, 0.15, 0.15), use_dcam=True, record_maps=False),
    ):
        raise KeyError("boom")
    assert {name: type(p) for name, p in unet.attn_processors.items()} == before


def test_attention_mask_is_excluded_not_zeroed_reference_helper():
    # Guard the reference itself: a fully excluded row falls back to all keys.
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    allowed = torch.zeros(5, dtype=torch.bool)
    torch.testing.assert_close(_attend(q, k, v, allowed), F.scaled_dot_product_attention(q, k, v))


# --- token grids from the U-Net's real (ceil) down-sampling (issue 9) ------------------------------


def test_token_grids_follow_the_unets_ceil_down_sampling():
    from engine.method.attention import downsampled_grid, token_grids

    assert token_grids((64, 64))[32 * 32] == (32, 32)
    # 72 px -> 9x9 latent -> 5x5, 3x3, 2x2, 1x1 (a whole-factor division would give 4x4 and fail)
    assert token_grids((9, 9)) == {81: (9, 9), 25: (5, 5), 9: (3, 3), 4: (2, 2), 1: (1, 1)}
    # non-square: 72x88 px -> 9x11 latent
    assert token_grids((9, 11)) == {99: (9, 11), 30: (5, 6), 9: (3, 3), 4: (2, 2), 1: (1, 1)}
    assert downsampled_grid((9, 11), 4) == (3, 3) and downsampled_grid((64, 40), 2) == (32, 20)
    ctl = AttentionController(latent_hw=(9, 11))
    assert ctl.grid(30) == (5, 6)
    with pytest.raises(ValueError, match="cannot place 20 tokens"):
        ctl.grid(20)
    with pytest.raises(ValueError, match="power of two"):
        downsampled_grid((9, 9), 3)
