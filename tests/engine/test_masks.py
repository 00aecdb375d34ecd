"""MGDM mask sources and the cross-attention -> mask logic (DESIGN 2.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.inputs.errors import InvalidInput
from engine.method.masks import (
    MaskTracker,
    alpha_mask,
    candidate_tokens,
    fit_mask,
    masks_from_maps,
    select_subject_tokens,
    subject_token_indices,
    to_latent,
)

S = 8  # text tokens in these synthetic maps


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(tiny_model_dir, subfolder="tokenizer")


def _maps_with_token_on(region: torch.Tensor, token: int, frames: int = 1) -> torch.Tensor:
    """(F, S, gh, gw): noise everywhere, and ``token`` strong inside ``region``."""
    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(frames, S, *region.shape, generator=gen) * 0.1
    maps[:, token] += region.float()
    return maps


def test_fit_mask_uses_alpha_when_present_else_luminance():
    lum = Image.new("L", (100, 50), 0)
    lum.paste(255, (0, 0, 50, 50))
    out = fit_mask(lum, 64, 32)
    assert out.shape == (32, 64) and out[:, :30].all() and not out[:, 34:].any()
    rgba = Image.new("RGBA", (100, 50), (255, 255, 255, 0))  # white but transparent: alpha wins
    rgba.paste((0, 0, 0, 255), (50, 0, 100, 50))
    out = fit_mask(rgba, 64, 32)
    assert out[:, 34:].all() and not out[:, :30].any()
    with pytest.raises(InvalidInput, match="empty"):
        fit_mask(Image.new("L", (10, 10), 0), 8, 8)


def test_fit_mask_uses_the_image_crop_geometry():
    # a wide mask is centre-cropped like the image: columns 100..200 of 300 remain
    wide = Image.new("L", (300, 100), 0)
    wide.paste(255, (0, 0, 150, 100))
    out = fit_mask(wide, 64, 64)
    assert out[:, :30].all() and not out[:, 34:].any()


def test_alpha_mask_only_when_alpha_separates_something():
    opaque = Image.new("RGBA", (20, 20), (10, 20, 30, 255))
    assert alpha_mask(opaque, 16, 16) is None
    assert alpha_mask(Image.new("RGB", (20, 20)), 16, 16) is None
    cut = opaque.copy()
    cut.putalpha(Image.fromarray(np.tile((np.arange(20) >= 10).astype(np.uint8) * 255, (20, 1))))
    mask = alpha_mask(cut, 16, 16)
    assert mask is not None and mask[:, 10:].all() and not mask[:, :6].any()


def test_to_latent_area_downsamples_and_binarises():
    full = np.zeros((64, 64), dtype=bool)
    full[:, :40] = True
    small = to_latent(full, (8, 8))
    assert small.shape == (8, 8) and set(small.unique().tolist()) <= {0.0, 1.0}
    assert small[:, :5].all() and not small[:, 5:].any()
    assert to_latent(np.stack([full, ~full]), (8, 8)).shape == (2, 8, 8)


def test_subject_words_map_to_their_token_positions(tokenizer):
    prompt = "an astronaut on the road"
    assert subject_token_indices(tokenizer, prompt, ["astronaut"]) == [2]
    assert subject_token_indices(tokenizer, prompt, ["astronaut", "road"]) == [2, 5]
    # a word the tiny vocabulary splits into several pieces maps to all of them
    pieces = subject_token_indices(tokenizer, "a zebra standing", ["zebra"])
    assert len(pieces) == len(tokenizer("zebra", add_special_tokens=False).input_ids) > 1
    with pytest.raises(InvalidInput, match="does not occur"):
        subject_token_indices(tokenizer, prompt, ["dragon"])


def test_candidate_tokens_skip_special_tokens_and_function_words(tokenizer):
    ids = tokenizer("an astronaut on the road").input_ids
    assert candidate_tokens(tokenizer, "an astronaut on the road") == [2, 5]
    assert 0 not in candidate_tokens(tokenizer, "the") and len(ids) - 1 not in candidate_tokens(
        tokenizer, "the"
    )


def test_automatic_subject_is_the_token_whose_map_overlaps_the_source_mask():
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[2:7, 3:6] = True
    maps = _maps_with_token_on(region, token=3)[0]
    maps[5] += torch.roll(region, shifts=4, dims=1).float()  # another token, elsewhere
    assert select_subject_tokens(maps, region, [1, 3, 5], threshold=0.4, ratio=0.8) == [3]
    # no overlap at all: keep every candidate rather than choose at random
    empty = torch.zeros(8, 8, dtype=torch.bool)
    assert select_subject_tokens(maps, empty, [1, 3, 5], threshold=0.4, ratio=0.8) == [1, 3, 5]


def test_masks_from_maps_threshold_the_normalised_subject_map():
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[1:4, 1:4] = True
    masks = masks_from_maps(_maps_with_token_on(region, token=2, frames=3), [2], threshold=0.5)
    assert masks.shape == (3, 8, 8)
    assert torch.equal(masks.bool(), region.expand(3, -1, -1))


def test_tracker_updates_frame_masks_from_the_previous_step_and_keeps_a_client_source_mask():
    source = torch.zeros(16, 16)
    source[:8] = 1.0
    initial = torch.stack([source, torch.ones(16, 16), torch.ones(16, 16)])
    tracker = MaskTracker(
        initial, source_fixed=True, subject_tokens=None, candidates=[1, 2], threshold=0.5, ratio=0.8
    )
    assert torch.equal(tracker.masks, initial)  # before any maps: the pose-drawn masks
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:4] = True  # token 2 covers the top half, like the source mask
    frame_region = torch.zeros(8, 8, dtype=torch.bool)
    frame_region[:, :2] = True
    maps = {0: _maps_with_token_on(region, 2)[0], 1: _maps_with_token_on(frame_region, 2)[0]}
    tracker.update(maps)
    assert tracker.subject_tokens == [2]
    assert torch.equal(tracker.masks[0], source)  # a client mask is never replaced
    assert tracker.masks[1][:, :4].all() and not tracker.masks[1][:, 4:].any()  # upsampled 8 -> 16
    assert torch.equal(tracker.masks[2], initial[2])  # no maps for frame 2 yet: unchanged


def test_tracker_derives_the_source_mask_from_cross_attention_when_none_was_given():
    initial = torch.ones(2, 8, 8)
    tracker = MaskTracker(
        initial, source_fixed=False, subject_tokens=[1], candidates=[1], threshold=0.5, ratio=0.8
    )
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[4:] = True
    tracker.update({0: _maps_with_token_on(region, 1)[0]})
    assert torch.equal(tracker.masks[0].bool(), region)
