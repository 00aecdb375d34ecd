"""MGDM by regions (issue 23): each mask region's queries attend only the keys they may see, and the
output equals the boolean-masked reference (``mgdm="masked"``) to float rounding, for any masks;
per layer call there is no host<->device synchronisation."""

from __future__ import annotations

import pytest
import torch
from diffusers.models.attention_processor import Attention
from torch.utils._python_dispatch import TorchDispatchMode

from engine import AnimateConfig
from engine.method.attention import AttentionController, DualConsistencyAttnProcessor
from engine.method.batching import FrameBatcher
from engine.method.ddim import DDIMSchedule
from engine.method.denoiser import ControlledDenoiser
from engine.method.masks import MaskTracker
from engine.method.pacm import SourceInversion
from engine.method.progress import StageTracker
from tests.support.engine import FAST, tiny_animator

GROUPS, DIM, HEADS = 2, 32, 4
LAMBDAS = (0.5, 0.3, 0.2)  # asymmetric: a swapped reference shows


def _attn(dtype=torch.float32) -> Attention:
    torch.manual_seed(0)
    return Attention(query_dim=DIM, heads=HEADS, dim_head=DIM // HEADS).eval().to(dtype)


def _hidden(frames: int, tokens: int, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(GROUPS * frames, tokens, DIM, generator=g).to(dtype)


def _masks(kind: str, frames: int, grid: tuple[int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(frames, *grid, generator=g) > 0.5
    if kind == "blob":  # a character of a different size in every frame
        masks = torch.zeros(frames, *grid, dtype=torch.bool)
        for i in range(frames):
            masks[i, i % grid[0] :, : 1 + i % grid[1]] = True
    elif kind == "empty-frames":  # frame 1 has no character, frame 2 no background
        masks[1], masks[2] = False, True
    elif kind == "frame0-empty":  # frame 0 (every frame's first reference) has no character
        masks[0] = False
    elif kind == "all-empty":  # no frame has a character: one region is absent altogether
        masks[:] = False
    elif kind == "all-full":
        masks[:] = True
    return masks.float()


def _controller(masks: torch.Tensor, grid: tuple[int, int], frames: list[int]) -> AttentionController:
    ctl = AttentionController(latent_hw=grid, batch_size=GROUPS)
    ctl.begin_batch(frames)
    ctl.set_masks(masks)
    return ctl


def _run(mgdm: str, attn, hidden, masks, grid, chunks) -> torch.Tensor:
    """The processor over the frames in ``chunks`` (frame order), one controller across them."""
    frames = hidden.shape[0] // GROUPS
    ctl = _controller(masks, grid, list(range(frames)))
    proc = DualConsistencyAttnProcessor(LAMBDAS, controller=ctl, mgdm=mgdm)
    grouped = hidden.view(GROUPS, frames, *hidden.shape[1:])
    parts = []
    for chunk in chunks:
        ctl.begin_batch(chunk)
        out = proc(attn, grouped[:, chunk].reshape(-1, *hidden.shape[1:]))
        parts.append(out.view(GROUPS, len(chunk), *hidden.shape[1:]))
    return torch.cat(parts, dim=1).reshape(hidden.shape)


CASES = [
    ("random", 5, (4, 4), [[0, 1, 2, 3, 4]]),
    ("blob", 6, (4, 6), [[0, 1, 2, 3, 4, 5]]),
    ("blob", 6, (4, 6), [[0, 1], [2, 3, 4], [5]]),  # references carried across chunks
    ("empty-frames", 4, (4, 4), [[0, 1, 2, 3]]),
    ("empty-frames", 4, (4, 4), [[0], [1], [2], [3]]),
    ("frame0-empty", 4, (3, 5), [[0, 1, 2, 3]]),
    ("all-empty", 3, (4, 4), [[0, 1, 2]]),
    ("all-full", 3, (4, 4), [[0, 1, 2]]),
]


@torch.no_grad()
@pytest.mark.parametrize("kind,frames,grid,chunks", CASES, ids=[f"{c[0]}-{len(c[3])}chunks" for c in CASES])
def test_regions_equal_the_masked_reference(kind, frames, grid, chunks):
    attn = _attn()
    tokens = grid[0] * grid[1]
    for seed in range(3):
        hidden = _hidden(frames, tokens, seed)
        masks = _masks(kind, frames, grid, seed)
        new = _run("regions", attn, hidden, masks, grid, chunks)
        old = _run("masked", attn, hidden, masks, grid, chunks)
        assert (new - old).abs().max() < 1e-5, (kind, seed)


@torch.no_grad()
def test_regions_equal_the_reference_in_float64_and_differ_from_plain_dcam():
    attn = _attn(torch.float64)
    grid, frames = (4, 4), 5
    hidden = _hidden(frames, 16, 7, torch.float64)
    masks = _masks("random", frames, grid, 7)
    new = _run("regions", attn, hidden, masks, grid, [list(range(frames))])
    old = _run("masked", attn, hidden, masks, grid, [list(range(frames))])
    torch.testing.assert_close(new, old, rtol=0, atol=1e-12)
    ones = _run("regions", attn, hidden, torch.ones_like(masks), grid, [list(range(frames))])
    assert (new - ones).abs().max() > 1e-3  # the masks matter: not silently plain DCAM


@torch.no_grad()
def test_regions_equal_the_reference_in_float16_to_its_rounding():
    attn = _attn(torch.float16)
    grid, frames = (4, 4), 4
    hidden = _hidden(frames, 16, 3, torch.float16)
    masks = _masks("blob", frames, grid, 3)
    new = _run("regions", attn, hidden, masks, grid, [[0, 1], [2, 3]])
    old = _run("masked", attn, hidden, masks, grid, [[0, 1], [2, 3]])
    torch.testing.assert_close(new.float(), old.float(), rtol=0, atol=4e-3)


def test_each_region_attends_only_its_own_keys():
    """The work is the regions' own: character queries of frame i meet only the character keys of
    each reference (padded to the chunk's largest region), not all L keys twice."""
    grid, frames = (4, 6), 3
    masks = torch.zeros(frames, *grid)
    masks[:, :1] = 1  # the top row (6 of 24 tokens) is the character in every frame
    ctl = _controller(masks, grid, [0, 1, 2])
    character, background = ctl.region_plan(grid, [1, 2])
    assert character is not None and background is not None
    assert character.queries.shape == (2, 6) and background.queries.shape == (2, 18)
    for keys, valid in character.keys:
        assert keys.shape == (2, 6) and valid is None
        assert set(keys.flatten().tolist()) == set(range(6))
    for keys, valid in background.keys:
        assert keys.shape == (2, 18) and valid is None
        assert set(keys.flatten().tolist()) == set(range(6, 24))


class _SyncCounter(TorchDispatchMode):
    """Counts operators that read a tensor's values on the host or create one from host data."""

    SYNCING = ("_local_scalar_dense", "nonzero", "lift_fresh", "masked_select", "unique")

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if any(s in name for s in self.SYNCING):
            self.hits.append(name)
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def test_no_host_sync_per_layer_call(monkeypatch):
    grid, frames = (4, 4), 4
    attn = _attn()
    hidden = _hidden(frames, 16, 1)
    reads: list[str] = []
    original_tolist, original_item = torch.Tensor.tolist, torch.Tensor.item

    def tolist(self):
        reads.append("tolist")
        return original_tolist(self)

    def item(self):
        reads.append("item")
        return original_item(self)

    monkeypatch.setattr(torch.Tensor, "tolist", tolist)
    monkeypatch.setattr(torch.Tensor, "item", item)
    ctl = _controller(_masks("blob", frames, grid, 0), grid, [0, 1, 2, 3])
    assert reads == ["tolist"]  # set_masks: the region sizes of every grid in one transfer
    proc = DualConsistencyAttnProcessor(LAMBDAS, controller=ctl)
    proc(attn, hidden)  # builds the chunk's index sets (device ops on the masks' device)
    counter = _SyncCounter()
    with counter:
        for _ in range(3):
            proc(attn, hidden)
    assert reads == ["tolist"] and counter.hits == []
    # a fresh plan (new masks, same step structure) needs no host read beyond set_masks' one
    ctl.set_masks(_masks("random", frames, grid, 5))
    with counter:
        proc(attn, hidden)
    assert reads == ["tolist", "tolist"] and counter.hits == []


@torch.no_grad()
def test_a_layer_call_runs_on_the_meta_device():
    """No value of q/k/v is read on the host: the whole call runs with shape-only tensors."""
    grid, frames = (4, 4), 4
    ctl = _controller(_masks("blob", frames, grid, 2), grid, [0, 1, 2, 3])
    proc = DualConsistencyAttnProcessor(LAMBDAS, controller=ctl)
    q, k, v = (torch.empty(GROUPS * frames, HEADS, 16, 8, device="meta") for _ in range(3))
    out = proc._dual_consistency(q, k, v, 16)
    assert out.shape == q.shape and out.device.type == "meta"


@torch.no_grad()
def test_tiny_model_sampling_is_unchanged(tiny_model_dir, monkeypatch):
    """The whole sampling stage of the tiny model (masks refreshed from cross-attention every step,
    frames in chunks of 2 with references carried across) gives the same latents with the regions
    as with the masked reference."""
    animator = tiny_animator(tiny_model_dir)
    config = AnimateConfig(**{**FAST, "num_inference_steps": 2}, use_pacm=False, inversion_early_stop=0.0)
    steps, frames = config.num_inference_steps, 4
    cond, uncond = animator.encode_prompt("an astronaut on the road")
    g = torch.Generator().manual_seed(3)
    z_T = torch.randn(1, 4, 8, 8, generator=g)
    pixels = (torch.rand(frames, 3, 64, 64, generator=g) * 255).to(torch.uint8)
    initial = _masks("blob", frames, (8, 8), 0)
    schedule = DDIMSchedule.from_scheduler(animator.scheduler, steps)

    def sample() -> torch.Tensor:
        denoiser = ControlledDenoiser(animator.unet, animator.controlnet, schedule)
        source = SourceInversion(z_T.expand(steps + 1, -1, -1, -1).clone(), None, None, [])
        masks = MaskTracker(
            initial, source_fixed=True, subject_tokens=[2], candidates=[2], threshold=0.4, ratio=0.8
        )
        z = animator.sample(
            denoiser,
            source,
            None,
            cond,
            uncond,
            pixels,
            masks,
            FrameBatcher(2),
            config,
            StageTracker(None, None),
        )
        assert not torch.equal(masks.masks[1:], initial[1:])  # the masks were refreshed
        return z

    new = sample()
    original_init = DualConsistencyAttnProcessor.__init__

    def masked_init(self, *args, **kwargs):
        original_init(self, *args, **{**kwargs, "mgdm": "masked"})

    monkeypatch.setattr(DualConsistencyAttnProcessor, "__init__", masked_init)
    old = sample()
    assert (new - old).abs().max() < 1e-4
    assert (new[1:] - new[:1]).abs().max() > 1e-3  # DCAM/MGDM did act on frames >= 1


def test_region_index_sets_stand_for_the_masks_at_every_grid():
    masks = _masks("random", 4, (8, 8), 9)
    ctl = _controller(masks, (8, 8), [0, 1, 2, 3])
    for grid in [(8, 8), (4, 4), (2, 2), (1, 1)]:
        regions = ctl._regions[grid]
        assert torch.equal(regions.inside(), ctl.grid_masks(grid))
        assert regions.host == regions.count.tolist()


@torch.no_grad()
def test_meta_masks_take_every_region_at_full_width():
    """Shape-only runs (the memory model on the meta device) cannot read region sizes: every region
    is taken at full width, the regions' upper bound, and the call still runs."""
    grid, frames = (4, 4), 3
    ctl = AttentionController(latent_hw=grid, batch_size=GROUPS)
    ctl.begin_batch([0, 1, 2])
    ctl.set_masks(torch.ones(frames, *grid, device="meta"))
    character, background = ctl.region_plan(grid, [1, 2])
    assert character is not None and background is not None
    assert character.queries.shape == background.queries.shape == (2, 16)
    proc = DualConsistencyAttnProcessor(LAMBDAS, controller=ctl)
    q, k, v = (torch.empty(GROUPS * frames, HEADS, 16, 8, device="meta") for _ in range(3))
    assert proc._dual_consistency(q, k, v, 16).shape == q.shape
