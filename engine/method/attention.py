"""DCAM and MGDM as diffusers attention processors (Sec. 3.3-3.4, Eq. 7-10).

Processors compute; the ``AttentionController`` holds the per-job state (which frames are in the
batch, their masks, reference keys/values carried across frame chunks, recorded cross-attention
maps). They are installed for one job with ``unet.set_attn_processor`` and restored afterwards
(``install_processors`` is a context manager).

Batch layout: ``batch_size`` groups (2 with CFG: unconditional then conditional) of ``n`` frames each;
cross-frame references never leave their group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0


def downsampled_grid(latent_hw: tuple[int, int], factor: int) -> tuple[int, int]:
    """The token grid of a U-Net level ``factor`` (a power of two) below the latent.

    Each stride-2 convolution (kernel 3, padding 1) maps ``n`` to ``ceil(n / 2)``, so a 9x9 latent
    (72 px) has 5x5, 3x3 and 2x2 levels, not 4x4, 2x2, 1x1.
    """
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"downsampling factor must be a power of two, got {factor}")
    h, w = latent_hw
    while factor > 1:
        h, w, factor = -(-h // 2), -(-w // 2), factor // 2
    return h, w


def token_grids(latent_hw: tuple[int, int]) -> dict[int, tuple[int, int]]:
    """{tokens: (gh, gw)} of every level the U-Net reaches from ``latent_hw`` (ceil halving down to 1x1)."""
    grids: dict[int, tuple[int, int]] = {}
    factor = 1
    while True:
        grid = downsampled_grid(latent_hw, factor)
        grids.setdefault(grid[0] * grid[1], grid)
        if grid == (1, 1):
            return grids
        factor *= 2


def cached_index(cache: dict, values, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.tensor(values)`` on ``device``, built once per cache (a job): the chunks repeat every
    denoising step, so no host-to-device copy happens per layer call."""
    key = (repr(values), device, dtype)
    tensor = cache.get(key)
    if tensor is None:
        tensor = cache[key] = torch.tensor(values, device=device, dtype=dtype)
    return tensor


@dataclass(frozen=True)
class MaskRegions:
    """MGDM's two regions (0 = character, 1 = background) of every frame at one token grid."""

    order: torch.Tensor
    """(2, num_frames, L) long: per region, each frame's tokens in that region (ascending), then the
    others. The first ``size`` entries are the region's keys, or all L keys when the region is empty."""
    count: torch.Tensor
    """(2, num_frames) long, on the masks' device: tokens in each region."""
    host: list[list[int]]
    """``count`` on the host (fetched once per mask update, for every grid together)."""

    def inside(self) -> torch.Tensor:
        """(num_frames, L) bool: the character masks these index sets stand for."""
        order = self.order[0]
        first = torch.arange(order.shape[1], device=order.device) < self.count[0][:, None]
        return torch.zeros_like(first).scatter_(1, order, first)


@dataclass(frozen=True)
class RegionSide:
    """One region's queries and keys for one chunk's target frames (s of them) at one grid."""

    queries: torch.Tensor
    """(s, A) long: each target frame's query tokens in the region, padded to the chunk's largest
    count A with other tokens (computed, then dropped)."""
    scatter: torch.Tensor
    """(s, A) long: ``queries`` with the padding sent to token L, a dump row of the output."""
    keys: tuple[tuple[torch.Tensor, torch.Tensor | None], ...]
    """Per reference (frame 0, previous, current): (s, C) key tokens (the region's, or all keys when
    it has none), padded to the largest count C; and a (G*s, 1, 1, C) bool mask of the real keys,
    None when no frame needs padding."""


@dataclass
class AttentionController:
    """Shared state of one job's processors.

    ``frame_ids``: global frame index of each batch entry within a group (frame 0 = the source).
    ``masks``: (num_frames, h, w) float {0, 1} MGDM masks at latent resolution, or None for plain DCAM.
    """

    latent_hw: tuple[int, int]
    batch_size: int = 2
    frame_ids: list[int] = field(default_factory=list)
    masks: torch.Tensor | None = None
    record_grids: set[tuple[int, int]] = field(default_factory=set)
    """Token grids whose cross-attention maps are recorded; empty = every cross-attention layer."""
    map_grid: tuple[int, int] | None = None
    """Grid the recorded maps are resampled to before averaging (default: the latent's 2x level)."""
    recording: bool = False
    _kv: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor]]] = field(default_factory=dict)
    _grid_masks: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    _maps: dict[int, torch.Tensor] = field(default_factory=dict)
    _map_counts: dict[int, int] = field(default_factory=dict)
    _token_grids: dict[tuple[int, int], dict[int, tuple[int, int]]] = field(default_factory=dict)
    _regions: dict[tuple[int, int], MaskRegions] = field(default_factory=dict)
    _region_plans: dict[tuple, tuple[RegionSide | None, ...]] = field(default_factory=dict)
    _indices: dict[tuple, torch.Tensor] = field(default_factory=dict)

    # -- step / chunk bookkeeping --------------------------------------------------------------
    def begin_batch(self, frame_ids: Sequence[int]) -> None:
        """Frames of the next U-Net call, in order. A step's chunks must come in frame order.

        References the new chunk cannot need are dropped here: only frame 0's and the frame just
        before the chunk's first frame are kept, so what is held never grows with the frame count.
        Dropping at the start of a chunk (not when storing) keeps a chunk retried after an
        out-of-memory back-off correct: the frame it needs was stored by the last chunk that finished.
        """
        self.frame_ids = list(frame_ids)
        if self.frame_ids:
            keep = {0, min(self.frame_ids) - 1}
            for refs in self._kv.values():
                for frame in [f for f in refs if f not in keep]:
                    del refs[frame]

    def end_step(self) -> None:
        """Forget the reference keys/values of this denoising step."""
        self._kv.clear()

    def set_masks(self, masks: torch.Tensor | None) -> None:
        """New masks (every denoising step with MGDM). Their region index sets are built here for
        every token grid; the region sizes cross to the host in one transfer, never per layer call."""
        self.masks = masks
        self._grid_masks.clear()
        self._regions.clear()
        self._region_plans.clear()
        if masks is not None:
            self._index_regions()

    def _index_regions(self) -> None:
        grids = list(dict.fromkeys(token_grids(self.latent_hw).values()))
        orders, counts = [], []
        for grid in grids:
            inside = self.grid_masks(grid)  # (F, L) bool
            outside = (~inside).to(torch.uint8)
            character_first = torch.argsort(outside, dim=1, stable=True)
            background_first = torch.argsort(inside.to(torch.uint8), dim=1, stable=True)
            orders.append(torch.stack([character_first, background_first]))
            count = inside.sum(1)
            counts.append(torch.stack([count, inside.shape[1] - count]))
        frames = counts[0].shape[1]
        if self.masks is not None and self.masks.is_meta:
            # shape-only runs (memory measurement): sizes unknown, every region at full width (the bound)
            full = [grid[0] * grid[1] for grid in grids for _ in range(frames)]
            host = [full, list(full)]
        else:
            host = torch.cat(counts, dim=1).tolist()  # the one device-to-host transfer
        for i, grid in enumerate(grids):
            rows = [h[i * frames : (i + 1) * frames] for h in host]
            self._regions[grid] = MaskRegions(orders[i], counts[i], rows)

    def region_plan(self, grid: tuple[int, int], targets: Sequence[int]) -> tuple[RegionSide | None, ...]:
        """(character, background) query/key index sets of the target frames ``targets`` (global
        ids >= 1) at ``grid``; None for a region no target frame has. Built once per mask update and
        chunk, shared by every layer of the grid."""
        key = (grid, tuple(targets))
        plan = self._region_plans.get(key)
        if plan is None:
            plan = self._region_plans[key] = self._build_region_plan(grid, list(targets))
        return plan

    def _build_region_plan(self, grid: tuple[int, int], cur: list[int]) -> tuple[RegionSide | None, ...]:
        regions = self._regions[grid]
        tokens = regions.order.shape[-1]
        device = regions.order.device
        ref_frames = [[0, f - 1, f] for f in cur]  # frame 0, previous frame, current frame
        ref_t = cached_index(self._indices, ref_frames, device)  # (s, 3)
        cur_t = cached_index(self._indices, cur, device)
        sides: list[RegionSide | None] = []
        for region in (0, 1):
            query_region, key_region = region, region  # queries attend the keys of their own region
            width = max(regions.host[query_region][f] for f in cur)
            if width == 0:
                sides.append(None)
                continue
            queries = regions.order[query_region][cur_t, :width]
            real = torch.arange(width, device=device) < regions.count[query_region][cur_t, None]
            scatter = torch.where(real, queries, tokens)
            keys = []
            for r in range(3):
                ref = ref_t[:, r]
                sizes = [regions.host[key_region][row[r]] or tokens for row in ref_frames]  # empty: all
                span = max(sizes)
                valid = None
                if min(sizes) < span:
                    size = regions.count[key_region][ref]
                    size = torch.where(size == 0, tokens, size)
                    valid = torch.arange(span, device=device) < size[:, None]
                    valid = valid[:, None, None, :].repeat(self.batch_size, 1, 1, 1)
                keys.append((regions.order[key_region][ref, :span], valid))
            sides.append(RegionSide(queries, scatter, tuple(keys)))
        return tuple(sides)

    # -- geometry --------------------------------------------------------------------------------
    def grid(self, tokens: int) -> tuple[int, int]:
        """Token grid (gh, gw) of a layer with ``tokens`` spatial tokens, from the U-Net's real
        (ceil) down-sampling of the latent, so every size that is a multiple of 8 works."""
        grids = self._token_grids.get(self.latent_hw)
        if grids is None:
            grids = self._token_grids[self.latent_hw] = token_grids(self.latent_hw)
        try:
            return grids[tokens]
        except KeyError:
            h, w = self.latent_hw
            raise ValueError(f"cannot place {tokens} tokens on a {h}x{w} latent") from None

    def grid_masks(self, grid: tuple[int, int]) -> torch.Tensor:
        """(num_frames, gh*gw) bool: the masks resized to a layer's token grid (area, >= 0.5)."""
        if self.masks is None:
            raise RuntimeError("no masks set")
        if grid not in self._grid_masks:
            resized = F.interpolate(self.masks[:, None].float(), size=grid, mode="area")[:, 0]
            self._grid_masks[grid] = (resized >= 0.5).flatten(1)
        return self._grid_masks[grid]

    # -- reference keys/values across chunks -----------------------------------------------------
    def store_kv(self, layer: str, frame: int, key: torch.Tensor, value: torch.Tensor) -> None:
        """Keep one frame's keys/values (G, heads, L, d) as a copy: a view would keep the whole
        chunk's keys alive."""
        self._kv.setdefault(layer, {})[frame] = (key.clone(), value.clone())

    def reference_bytes(self) -> int:
        """Bytes of storage the cached references hold (each storage counted once)."""
        seen: dict[object, int] = {}
        for refs in self._kv.values():
            for pair in refs.values():
                for t in pair:
                    storage = t.untyped_storage()
                    ptr = storage.data_ptr()
                    seen[(t.device, ptr) if ptr else id(t)] = storage.nbytes()
        return sum(seen.values())

    def cached_kv(self, layer: str, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return self._kv[layer][frame]
        except KeyError:
            raise RuntimeError(
                f"{layer}: keys of frame {frame} are not available; chunks must run in frame order"
            ) from None

    # -- cross-attention maps ---------------------------------------------------------------------
    def wants_maps(self, tokens: int) -> bool:
        return self.recording and (not self.record_grids or self.grid(tokens) in self.record_grids)

    def record_maps(self, tokens: int, probs: torch.Tensor) -> None:
        """probs (n, L, S): head-averaged attention of each batch frame's pixels over the S text tokens."""
        grid = self.grid(tokens)
        target = self.map_grid or downsampled_grid(self.latent_hw, 2)
        maps = probs.detach().float().transpose(1, 2).reshape(probs.shape[0], probs.shape[2], *grid)
        if grid != target:
            maps = F.interpolate(maps, size=target, mode="bilinear", align_corners=False)
        for local, frame in enumerate(self.frame_ids):
            if frame in self._maps:
                self._maps[frame] += maps[local]
                self._map_counts[frame] += 1
            else:
                self._maps[frame] = maps[local].clone()
                self._map_counts[frame] = 1

    def pop_maps(self) -> dict[int, torch.Tensor]:
        """{frame: (S, gh, gw)} maps averaged over the recorded layers since the last call."""
        maps = {f: m / self._map_counts[f] for f, m in self._maps.items()}
        self._maps, self._map_counts = {}, {}
        return maps


class DualConsistencyAttnProcessor:
    """Dual consistency attention (DCAM), optionally mask-guided (MGDM). Self-attention only.

    For frame ``i >= 1``: ``DCA_i = l1*Attn(Q_i,K_0,V_0) + l2*Attn(Q_i,K_{i-1},V_{i-1}) + l3*Attn(Q_i,K_i,V_i)``.
    With masks (Eq. 9-10): ``DCA_i = M_i*DCA^c + (1-M_i)*DCA^b``, where DCA^c attends each reference's
    character keys and DCA^b its background keys (the other keys excluded, never zeroed); a region
    with no keys falls back to all keys. By default (``mgdm="regions"``) only what Eq. 10 keeps is
    computed: the queries inside M_i attend the character keys, the others the background keys.
    Frame 0 keeps plain self-attention so it reconstructs the source.

    Without a controller the batch holds ``batch_size`` groups of frames ``0..n-1`` and no masks,
    like diffusers' ``CrossFrameAttnProcessor2_0(batch_size)``.
    """

    def __init__(
        self,
        lambdas: Sequence[float] = (0.7, 0.15, 0.15),
        batch_size: int = 2,
        controller: AttentionController | None = None,
        name: str = "",
        mgdm: str = "regions",
    ) -> None:
        if mgdm not in ("regions", "masked"):
            raise ValueError("mgdm must be 'regions' or 'masked'")
        self.mgdm = mgdm
        """``regions`` (default): each mask region's queries attend only the keys they may see;
        ``masked``: every query attends both regions under a boolean key mask (the reference)."""
        if len(lambdas) != 3:
            raise ValueError("lambdas must have three weights")
        self.lambdas = tuple(float(x) for x in lambdas)
        self.batch_size = controller.batch_size if controller is not None else batch_size
        self.controller = controller
        self.name = name
        self._stock = AttnProcessor2_0()
        self._indices: dict[tuple, torch.Tensor] = {}

    def _index(self, values, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``torch.tensor(values)`` on ``device``, built once per job and layer."""
        return cached_index(self._indices, values, device, dtype)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            # Cross-attention, or a masked call DCAM does not define: stock behaviour.
            return self._stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)  # (B, L, C)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        batch, tokens, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        # (B, heads, L, d)
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        out = self._dual_consistency(query, key, value, tokens)  # (B, heads, L, d)

        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    @torch.compiler.disable
    def _dual_consistency(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, tokens: int
    ) -> torch.Tensor:
        groups = self.batch_size
        n = query.shape[0] // groups
        heads, d = query.shape[1], query.shape[3]
        ctl = self.controller
        frame_ids = ctl.frame_ids if ctl is not None else list(range(n))
        if len(frame_ids) != n:
            raise RuntimeError(
                f"{self.name}: batch holds {n} frames per group, controller says {len(frame_ids)}"
            )
        # (G, n, heads, L, d)
        q, k, v = (x.reshape(groups, n, heads, tokens, d) for x in (query, key, value))

        # Reference keys/values: this batch's frames, then frames cached from earlier chunks.
        position = {frame: local for local, frame in enumerate(frame_ids)}
        ext_k, ext_v = [k], [v]
        needed = {0} | {f - 1 for f in frame_ids if f >= 1}
        for frame in sorted(needed - position.keys()):
            if ctl is None:
                raise RuntimeError("frame references outside the batch need a controller")
            ck, cv = ctl.cached_kv(self.name, frame)
            position[frame] = n + len(ext_k) - 1
            ext_k.append(ck[:, None])
            ext_v.append(cv[:, None])
        all_k = ext_k[0] if len(ext_k) == 1 else torch.cat(ext_k, dim=1)
        all_v = ext_v[0] if len(ext_v) == 1 else torch.cat(ext_v, dim=1)

        targets = [local for local, f in enumerate(frame_ids) if f >= 1]
        regions = bool(targets) and ctl is not None and ctl.masks is not None and self.mgdm == "regions"
        if regions:  # one spare token row: padded queries of a region write their output there
            buf = q.new_empty(groups, n, heads, tokens + 1, d)
            out = buf[:, :, :, :tokens]
        else:
            out = torch.empty_like(q)
        source = [local for local, f in enumerate(frame_ids) if f == 0]
        if source:  # frame 0: plain self-attention
            s = self._index(source, q.device)
            plain = F.scaled_dot_product_attention(
                q[:, s].flatten(0, 1), k[:, s].flatten(0, 1), v[:, s].flatten(0, 1)
            )
            out[:, s] = plain.view(groups, len(source), heads, tokens, d)

        if targets:
            refs = self._index(
                [[position[0], position[frame_ids[i] - 1], i] for i in targets], q.device
            )  # (s, 3): frame 0, previous frame, current frame
            sel = self._index(targets, q.device)
            if regions:
                cur = [frame_ids[i] for i in targets]
                self._region_references(buf, q, all_k, all_v, sel, refs, cur, tokens)
            else:
                out[:, sel] = self._fused_references(
                    q[:, sel], all_k[:, refs], all_v[:, refs], frame_ids, targets, tokens
                )

        if ctl is not None:
            for local, frame in enumerate(frame_ids):
                if frame == 0 or local == n - 1:
                    ctl.store_kv(self.name, frame, k[:, local], v[:, local])
        return out.reshape(groups * n, heads, tokens, d)

    def _region_references(
        self,
        buf: torch.Tensor,
        q: torch.Tensor,
        all_k: torch.Tensor,
        all_v: torch.Tensor,
        sel: torch.Tensor,
        refs: torch.Tensor,
        cur: list[int],
        tokens: int,
    ) -> None:
        """MGDM by regions (Eq. 9-10): writes DCA of the target frames into ``buf`` (G, n, heads, L+1, d).

        The queries of frame i inside M_i attend, for each reference j, only the keys inside M_j, and
        those outside M_i only the keys outside M_j (all keys when the region has none): the output
        Eq. 10 keeps, without the half Eq. 10 discards. q (G, n, heads, L, d); all_k, all_v
        (G, E, heads, L, d); sel (s,) the target frames' batch positions; refs (s, 3) their
        references' positions in all_k. Index sets come from the controller (built once per mask
        update and chunk); per call: gathers, 3 SDPA calls per region, one scatter, no host sync.
        """
        ctl = self.controller
        assert ctl is not None
        groups, heads, d = q.shape[0], q.shape[2], q.shape[4]
        s = len(cur)
        weights = self._index(list(self.lambdas), q.device, q.dtype)
        g = self._index(list(range(groups)), q.device).view(groups, 1, 1)
        rows = sel.view(s, 1)
        for side in ctl.region_plan(ctl.grid(tokens), cur):
            if side is None:
                continue
            queries = side.queries.to(q.device)
            # (G, s, A, heads, d) -> (G*s, heads, A, d): the layout SDPA reads, no copy
            q_side = q[g, rows, :, queries].transpose(2, 3).flatten(0, 1)
            dca = None
            for r, (keys, valid) in enumerate(side.keys):
                keys = keys.to(q.device)
                ref = refs[:, r : r + 1]
                k_side = all_k[g, ref, :, keys].transpose(2, 3).flatten(0, 1)
                v_side = all_v[g, ref, :, keys].transpose(2, 3).flatten(0, 1)
                mask = None if valid is None else valid.to(q.device)
                o = F.scaled_dot_product_attention(q_side, k_side, v_side, attn_mask=mask)
                dca = o.mul_(weights[r]) if dca is None else dca.addcmul_(o, weights[r])
                del k_side, v_side, o  # before the next reference's gathers: one set alive at a time
            assert dca is not None
            buf[g, rows, :, side.scatter.to(q.device)] = dca.view(groups, s, heads, -1, d).transpose(2, 3)
            del q_side, dca

    def _fused_references(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        frame_ids: list[int],
        targets: list[int],
        tokens: int,
    ) -> torch.Tensor:
        """q (G, s, heads, L, d); k, v (G, s, 3, heads, L, d) -> DCA (G, s, heads, L, d).

        All references (and both mask regions) go through one batched SDPA call. With masks this is
        the ``mgdm="masked"`` reference: every query attends both regions under a boolean key mask
        (6 products of L x L per frame, half of them discarded by Eq. 10).
        """
        groups, s, heads, _, d = q.shape
        weights = self._index(list(self.lambdas), q.device, q.dtype)
        ctl = self.controller
        if ctl is None or ctl.masks is None:
            q3 = q[:, :, None].expand(-1, -1, 3, -1, -1, -1)
            o = F.scaled_dot_product_attention(q3.flatten(0, 2), k.flatten(0, 2), v.flatten(0, 2))
            o = o.view(groups, s, 3, heads, tokens, d)
            return (weights.view(1, 1, 3, 1, 1, 1) * o).sum(2)

        grid_masks = ctl.grid_masks(ctl.grid(tokens))  # (num_frames, L) bool
        cur = [frame_ids[i] for i in targets]
        ref_frames = self._index([[0, f - 1, f] for f in cur], grid_masks.device)
        inside = grid_masks[ref_frames]  # (s, 3, L): keys of each reference inside its mask
        allowed = torch.stack([inside, ~inside], dim=2)  # (s, 3, 2, L): character, background
        empty = ~allowed.any(-1, keepdim=True)
        allowed = (allowed | empty).to(q.device)  # a region without keys attends to all keys
        q6 = q[:, :, None, None].expand(-1, -1, 3, 2, -1, -1, -1)
        k6 = k[:, :, :, None].expand(-1, -1, -1, 2, -1, -1, -1)
        v6 = v[:, :, :, None].expand(-1, -1, -1, 2, -1, -1, -1)
        mask = allowed[None, :, :, :, None, None, :].expand(groups, -1, -1, -1, 1, 1, -1)
        o = F.scaled_dot_product_attention(
            q6.flatten(0, 3), k6.flatten(0, 3), v6.flatten(0, 3), attn_mask=mask.flatten(0, 3)
        ).view(groups, s, 3, 2, heads, tokens, d)
        dca = (weights.view(1, 1, 3, 1, 1, 1, 1) * o).sum(2)  # (G, s, 2, heads, L, d)
        m = grid_masks[self._index(cur, grid_masks.device)].to(q.dtype).to(q.device)
        m = m.view(1, s, 1, tokens, 1)  # query positions of frame i inside M_i
        return m * dca[:, :, 0] + (1 - m) * dca[:, :, 1]


class CrossAttentionMapProcessor:
    """Stock cross-attention that also records, for MGDM, the conditional group's token maps."""

    def __init__(self, controller: AttentionController, name: str = "") -> None:
        self.controller = controller
        self.name = name
        self._stock = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        out = self._stock(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        ctl = self.controller
        if encoder_hidden_states is not None and hidden_states.ndim == 3 and ctl.recording:
            self._record(attn, hidden_states, encoder_hidden_states)
        return out

    @torch.compiler.disable
    def _record(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor
    ) -> None:
        """Outside ``torch.compile``: the controller's map dicts change every chunk (guards would)."""
        ctl = self.controller
        if ctl.wants_maps(hidden_states.shape[1]):
            with torch.no_grad():
                n = hidden_states.shape[0] // ctl.batch_size
                cond_hidden = hidden_states[-n:]  # the conditional group is the last
                cond_text = encoder_hidden_states[-n:]
                query = attn.head_to_batch_dim(attn.to_q(cond_hidden))
                key = attn.head_to_batch_dim(attn.to_k(cond_text))
                probs = attn.get_attention_scores(query, key)  # (n*heads, L, S)
                probs = probs.view(n, attn.heads, *probs.shape[1:]).mean(1)  # (n, L, S)
                ctl.record_maps(hidden_states.shape[1], probs)


def up_block_self_attention(name: str) -> bool:
    """DCAM goes into the U-Net's up-blocks only (Sec. 3.3, last paragraph)."""
    return name.startswith("up_blocks.") and ".attn1." in name


@contextlib.contextmanager
def install_processors(
    unet,
    controller: AttentionController,
    lambdas: Sequence[float],
    *,
    use_dcam: bool,
    record_maps: bool,
) -> Iterator[None]:
    """Install DCAM(+MGDM) processors on up-block self-attention and map recorders on cross-attention
    for the duration of a ``with`` block; the previous processors are restored even on error."""
    original = dict(unet.attn_processors)
    processors = {}
    for name, proc in original.items():
        if use_dcam and up_block_self_attention(name):
            processors[name] = DualConsistencyAttnProcessor(lambdas, controller=controller, name=name)
        elif record_maps and name.endswith("attn2.processor"):
            processors[name] = CrossAttentionMapProcessor(controller, name=name)
        else:
            processors[name] = proc
    unet.set_attn_processor(processors)
    try:
        yield
    finally:
        unet.set_attn_processor(original)
