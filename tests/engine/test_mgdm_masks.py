"""MGDM's masks as DCAM receives them (DESIGN 2.5, issue 25), on the tiny random model.

Every assertion reads the masks through a spy on ``AttentionController.grid_masks`` (what each DCAM
layer gets to split its keys and queries) while ``DualConsistencyAttnProcessor.__call__`` tags the
layer, and steers the cross-attention maps MGDM reads through a spy on
``AttentionController.pop_maps``: the maps of a known region are injected, so what the masks
*would* be if recomputed from cross-attention is known for any weights, without re-deriving the
engine's own computation.

Pinned here:
- the client's source mask is frame 0's mask in every step and every DCAM layer, never replaced by
  one computed from cross-attention;
- frame masks come from the subject tokens' maps only: changing another noun's map changes nothing,
  changing the subject word changes the masks;
- the precedence client mask > image alpha > segmenter > frame 0's cross-attention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from engine import AnimateConfig
from engine.method.attention import (
    AttentionController,
    DualConsistencyAttnProcessor,
    up_block_self_attention,
)
from engine.method.masks import MaskTracker, masks_from_maps
from tests.support.engine import FAST as ENGINE_FAST
from tests.support.engine import astronaut_example, tiny_animator

PROMPT = "an astronaut on the road"
SUBJECT, OTHER = 2, 5  # token positions of "astronaut" and "road" (BOS is 0)
SIZE = 64
T = 2
CONFIG = AnimateConfig(**{**ENGINE_FAST, "num_inference_steps": T, "transition_frames": 0, "use_pacm": False})


def _region(rows: slice = slice(None), cols: slice = slice(None), size: int = SIZE) -> np.ndarray:
    out = np.zeros((size, size), dtype=bool)
    out[rows, cols] = True
    return out


# Regions that differ from each other and from what random weights attend to; halves and quadrants
# of the canvas stay exact on every token grid (8x8, 4x4, 2x2).
CLIENT = _region(rows=slice(0, SIZE // 2))  # top half
ALPHA = _region(cols=slice(0, SIZE // 2))  # left half
SEGMENTED = _region(cols=slice(SIZE // 2, None))  # right half
INJECTED = _region(rows=slice(SIZE // 2, None), cols=slice(SIZE // 4, None))  # a bottom block


def _on_grid(region: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """The region as a (gh, gw) bool token mask (area >= 0.5, the controller's rule)."""
    area = F.interpolate(torch.from_numpy(region.astype(np.float32))[None, None], size=grid, mode="area")
    return area[0, 0] >= 0.5


@pytest.fixture(scope="module")
def animator(tiny_model_dir):
    return tiny_animator(tiny_model_dir)


@pytest.fixture(scope="module")
def example():
    """A square copy of the astronaut (no crop: regions mean the same on the image and the canvas)."""
    image, source, targets = astronaut_example(2)
    return ImageOps.fit(image, (SIZE, SIZE)), source.to_canvas(*image.size).to_canvas(SIZE, SIZE), targets


class FakeSegmenter:
    name = "fake"

    def segment(self, image: Image.Image) -> np.ndarray:
        return SEGMENTED.astype(np.float32)


@dataclass
class Reads:
    """What DCAM received: one row per (step, layer) read."""

    rows: list[dict] = field(default_factory=list)
    dcam_layers: set[str] = field(default_factory=set)
    result: object = None

    def frame(self, frame: int, step: int | None = None) -> list[tuple[tuple[int, int], torch.Tensor]]:
        return [(r["grid"], r["masks"][frame]) for r in self.rows if step is None or r["step"] == step]


def _inject(region: np.ndarray, tokens: list[int] | None = None, frames: set[int] | None = None):
    """A pop_maps filter: the given tokens' maps (default: all) of the given frames (default: all)
    become the region (plus the old map x 1e-3, so maps stay distinct and non-constant)."""

    def apply(maps: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        out = {}
        for f, m in maps.items():
            m = m.clone()
            if frames is None or f in frames:
                picked = tokens if tokens is not None else list(range(m.shape[0]))
                blob = _on_grid(region, tuple(m.shape[-2:])).float()
                m[picked] = blob + 1e-3 * m[picked]
            out[f] = m
        return out

    return apply


def _run(
    animator,
    example,
    monkeypatch,
    *,
    image: Image.Image | None = None,
    maps_filter: Callable[[dict], dict] | None = None,
    **kwargs,
) -> Reads:
    reads = Reads()
    steps = {"set": 0}
    current = {"layer": None}
    original_call = DualConsistencyAttnProcessor.__call__
    original_plan = AttentionController.region_plan
    original_set = AttentionController.set_masks
    original_pop = AttentionController.pop_maps

    def spy_call(self, attn, hidden_states, *args, **kw):
        current["layer"] = self.name
        reads.dcam_layers.add(self.name)
        try:
            return original_call(self, attn, hidden_states, *args, **kw)
        finally:
            current["layer"] = None

    def spy_plan(self, grid, targets):
        out = original_plan(self, grid, targets)
        seen = self._regions[grid].inside()  # the masks as DCAM's region index sets hold them
        reads.rows.append(
            {
                "step": steps["set"],
                "layer": current["layer"],
                "grid": tuple(grid),
                "masks": seen.view(seen.shape[0], *grid).clone(),
            }
        )
        return out

    def spy_set(self, masks):
        steps["set"] += 1
        return original_set(self, masks)

    def spy_pop(self):
        maps = original_pop(self)
        return maps_filter(maps) if maps_filter is not None and maps else maps

    with monkeypatch.context() as mp:
        mp.setattr(DualConsistencyAttnProcessor, "__call__", spy_call)
        mp.setattr(AttentionController, "region_plan", spy_plan)
        mp.setattr(AttentionController, "set_masks", spy_set)
        mp.setattr(AttentionController, "pop_maps", spy_pop)
        default_image, source, targets = example
        reads.result = animator.animate(
            image if image is not None else default_image,
            targets,
            PROMPT,
            source_pose=source,
            config=CONFIG,
            **kwargs,
        )
    assert reads.rows, "DCAM never read a mask"
    return reads


def _assert_frame0_is(reads: Reads, region: np.ndarray, steps=range(1, T + 1)) -> None:
    for step in steps:
        seen = reads.frame(0, step)
        assert seen, f"no DCAM read at step {step}"
        for grid, mask in seen:
            assert torch.equal(mask, _on_grid(region, grid)), (step, grid)


# ---------------------------------------------------------------------------------------------
# (a) a client mask is frame 0's mask in every step and layer, never recomputed
# ---------------------------------------------------------------------------------------------
def test_the_client_mask_is_frame_0s_mask_in_every_step_and_layer(animator, example, monkeypatch):
    mask = Image.fromarray(CLIENT.astype(np.uint8) * 255)
    # cross-attention says the character is elsewhere (INJECTED): a recomputed M_0 would follow it
    reads = _run(animator, example, monkeypatch, mask=mask, maps_filter=_inject(INJECTED))
    assert reads.result.mask_source == "client"
    # every DCAM layer of the up-blocks reads the masks at every denoising step
    layers = {r["layer"] for r in reads.rows}
    assert None not in layers and layers == reads.dcam_layers
    assert all(up_block_self_attention(name) for name in layers)
    for step in range(1, T + 1):
        assert {r["layer"] for r in reads.rows if r["step"] == step} == layers, step
    _assert_frame0_is(reads, CLIENT)
    # the injection does reach the frame masks, so a recomputed M_0 would have shown here
    for grid, mask1 in reads.frame(1, step=T):
        assert torch.equal(mask1, _on_grid(INJECTED, grid))


# ---------------------------------------------------------------------------------------------
# (b) frame masks come from the subject tokens' maps only
# ---------------------------------------------------------------------------------------------
def test_tracker_masks_follow_the_subject_tokens_maps_only():
    gen = torch.Generator().manual_seed(0)
    frames, tokens, grid = 2, 8, (8, 8)
    maps = torch.rand(frames, tokens, *grid, generator=gen) * 0.1
    maps[:, SUBJECT, :4] += 1.0  # the subject: top half
    maps[:, OTHER, :, :3] += 2.0  # another noun, stronger: left columns
    other = maps.clone()
    other[:, OTHER] = torch.rand(frames, *grid, generator=gen) * 3.0  # only the other noun changes

    def tracked(m: torch.Tensor, subject: list[int]) -> torch.Tensor:
        tracker = MaskTracker(
            torch.ones(frames, *grid),
            source_fixed=False,
            subject_tokens=subject,
            candidates=[SUBJECT, OTHER],
            threshold=0.4,
            ratio=0.8,
        )
        tracker.update({f: m[f] for f in range(frames)})
        return tracker.masks.clone()

    base = tracked(maps, [SUBJECT])
    assert torch.equal(
        base.bool(), torch.zeros(frames, *grid, dtype=torch.bool).index_fill_(1, torch.arange(4), True)
    )
    assert torch.equal(tracked(other, [SUBJECT]), base)  # the other noun's map does not matter
    assert not torch.equal(tracked(maps, [OTHER]), base)  # the subject word does
    assert torch.equal(masks_from_maps(other, [SUBJECT], 0.4), masks_from_maps(maps, [SUBJECT], 0.4))


def test_frame_masks_ignore_the_other_nouns_map_and_follow_the_subject_word(animator, example, monkeypatch):
    base = _run(animator, example, monkeypatch, subject_words=["astronaut"])
    assert base.result.subject_tokens == ["astronaut</w>"]
    # the other noun's maps replaced by a strong block, in every frame: nothing changes
    perturbed = _run(
        animator,
        example,
        monkeypatch,
        subject_words=["astronaut"],
        maps_filter=_inject(INJECTED, tokens=[OTHER]),
    )
    assert len(perturbed.rows) == len(base.rows)
    for a, b in zip(base.rows, perturbed.rows, strict=True):
        assert (a["step"], a["layer"], a["grid"]) == (b["step"], b["layer"], b["grid"])
        assert torch.equal(a["masks"], b["masks"]), (a["step"], a["layer"])
    # the subject's maps replaced by the same block: the frame masks follow it
    steered = _run(
        animator,
        example,
        monkeypatch,
        subject_words=["astronaut"],
        maps_filter=_inject(INJECTED, tokens=[SUBJECT]),
    )
    for frame in (0, 1, 2):
        for grid, mask in steered.frame(frame, step=T):
            assert torch.equal(mask, _on_grid(INJECTED, grid)), frame
    # another subject word gives other masks (the maps of "road" differ from those of "astronaut")
    road = _run(animator, example, monkeypatch, subject_words=["road"])
    assert road.result.subject_tokens == ["road</w>"]
    later = [r["masks"] for r in road.rows if r["step"] == T]
    assert any(
        not torch.equal(m, r["masks"])
        for m, r in zip(later, [r for r in base.rows if r["step"] == T], strict=True)
    ), "changing the subject word left every mask unchanged"


# ---------------------------------------------------------------------------------------------
# (c) precedence: client mask > image alpha > segmenter > frame 0's cross-attention
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmenting(tiny_model_dir):
    return tiny_animator(tiny_model_dir, segmenter=FakeSegmenter())


def _with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(ALPHA.astype(np.uint8) * 255))
    return rgba


@pytest.mark.parametrize("case", ["client", "alpha", "segmenter", "cross_attention"])
def test_source_mask_precedence_as_dcam_receives_it(segmenting, animator, example, monkeypatch, case):
    image = example[0]
    kwargs: dict = {"maps_filter": _inject(INJECTED)}  # cross-attention always points at INJECTED
    runner = segmenting  # a segmenter is available unless the case is the last resort
    if case == "client":
        kwargs |= {"image": _with_alpha(image), "mask": Image.fromarray(CLIENT.astype(np.uint8) * 255)}
        expected, source = CLIENT, "client"
    elif case == "alpha":
        kwargs |= {"image": _with_alpha(image)}
        expected, source = ALPHA, "alpha"
    elif case == "segmenter":
        expected, source = SEGMENTED, "segmenter:fake"
    else:
        runner = animator
        expected, source = INJECTED, "cross_attention"
    reads = _run(runner, example, monkeypatch, **kwargs)
    assert reads.result.mask_source == source
    if case == "cross_attention":
        # step 1 has no maps yet (the source pose's drawn mask); from step 2, frame 0's own maps
        first = reads.frame(0, step=1)
        assert all(not torch.equal(m, _on_grid(INJECTED, g)) for g, m in first)
        _assert_frame0_is(reads, INJECTED, steps=range(2, T + 1))
    else:
        _assert_frame0_is(reads, expected)
