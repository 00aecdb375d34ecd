"""Subject-token selection for MGDM (DESIGN 2.5), written for mutants of ``bench/mutants.py`` that the
other engine tests let through (issue 25)."""

from __future__ import annotations

import pytest
import torch

from engine.method.masks import select_subject_tokens, subject_token_indices


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(tiny_model_dir, subfolder="tokenizer")


def test_a_subject_word_maps_to_every_occurrence(tokenizer):
    prompt = "an astronaut waves to another astronaut"
    ids = tokenizer(prompt).input_ids
    piece = tokenizer("astronaut", add_special_tokens=False).input_ids
    starts = [i for i in range(len(ids)) if ids[i : i + len(piece)] == piece]
    assert len(starts) == 2
    expected = sorted(p for s in starts for p in range(s, s + len(piece)))
    assert subject_token_indices(tokenizer, prompt, ["astronaut"]) == expected


def test_automatic_subject_keeps_every_token_within_the_ratio_of_the_best():
    """Two words naming the character ("young astronaut") both overlap M_0; a ratio of 0.8 keeps the
    one at 0.9 x the best IoU, and drops the background word."""
    grid = 10
    reference = torch.zeros(grid, grid, dtype=torch.bool)
    reference[:, :5] = True  # 50 cells
    maps = torch.zeros(4, grid, grid)
    maps[1, :, :5] = 1.0  # IoU 1
    maps[2, :9, :5] = 1.0  # 45 cells inside: IoU 0.9
    maps[3, :, 5:] = 1.0  # the background: IoU 0
    assert select_subject_tokens(maps, reference, [1, 2, 3], threshold=0.5, ratio=0.8) == [1, 2]
    assert select_subject_tokens(maps, reference, [1, 2, 3], threshold=0.5, ratio=0.95) == [1]
