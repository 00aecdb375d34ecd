"""MGDM masks (Sec. 3.4): where the character is, in the source and in every generated frame.

- Source mask ``M_0``: the client's mask image, else the image's alpha channel, else a segmentation
  backend, else the subject's cross-attention map in the reconstruction of frame 0.
- Frame masks ``M_i``: the subject tokens' cross-attention (``attn2``) maps of the same frame at the
  previous denoising step, head- and layer-averaged, min-max normalised and thresholded; before any
  map exists, a mask drawn from the frame's pose.
- Subject tokens: given as words, else the prompt tokens whose frame-0 map best overlaps ``M_0``.

Masks are float {0, 1} tensors at latent resolution; the attention controller resizes them to each
layer's token grid.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from engine.errors import InvalidInput
from engine.rules import check_mask

# Function words never chosen as the subject automatically.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "at",
        "with",
        "and",
        "or",
        "is",
        "are",
        "to",
        "for",
        "by",
        "from",
        "into",
        "onto",
        "over",
        "under",
        "near",
        "his",
        "her",
        "their",
        "its",
    ]
)


def _mask_channel(mask: Image.Image) -> Image.Image:
    """The channel that marks the character: alpha when present, else luminance."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        return mask.convert("RGBA").getchannel("A")
    return mask.convert("L")


def mask_array(mask: Image.Image) -> np.ndarray:
    """A client mask image at its own size -> (H, W) uint8; >= 128 marks the character."""
    return np.asarray(_mask_channel(mask))


def fit_mask(mask: Image.Image, width: int, height: int) -> np.ndarray:
    """A client mask image (any mode; alpha wins when present) -> (height, width) bool, with the same
    cover-and-centre-crop geometry as the source image. Refused (``mask_empty``) when nothing is
    left marked after the crop."""
    gray = ImageOps.fit(
        _mask_channel(mask), (width, height), method=Image.Resampling.BILINEAR, centering=(0.5, 0.5)
    )
    out = np.asarray(gray) >= 128
    check_mask(out)
    return out


def alpha_mask(image: Image.Image, width: int, height: int) -> np.ndarray | None:
    """The image's alpha channel as a mask, when it separates something (not all opaque/transparent)."""
    if image.mode not in ("RGBA", "LA", "PA") and not (image.mode == "P" and "transparency" in image.info):
        return None
    alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    if alpha.min() >= 128 or alpha.max() < 128:
        return None
    return fit_mask(image, width, height)


def to_latent(mask: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) or (F, H, W) bool/float -> same leading dims at ``size``, float {0, 1} (area, >= 0.5)."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32) if isinstance(mask, np.ndarray) else mask).float()
    squeeze = m.ndim == 2
    m = m[None] if squeeze else m
    m = F.interpolate(m[:, None], size=size, mode="area")[:, 0]
    m = (m >= 0.5).float()
    return m[0] if squeeze else m


def subject_token_indices(tokenizer, prompt: str, words: list[str]) -> list[int]:
    """Positions (in the padded 77-token sequence) of each subject word's tokens in the prompt."""
    ids = tokenizer(prompt).input_ids
    positions: list[int] = []
    for word in words:
        piece = tokenizer(word, add_special_tokens=False).input_ids
        if not piece:
            raise InvalidInput(
                f"subject word {word!r} is empty after tokenisation", code="parameter_out_of_range"
            )
        hits = [i for i in range(len(ids) - len(piece) + 1) if ids[i : i + len(piece)] == piece]
        if not hits:
            raise InvalidInput(
                f"subject word {word!r} does not occur in the prompt", code="subject_not_in_prompt"
            )
        for start in hits:
            positions.extend(range(start, start + len(piece)))
    return sorted(set(positions))


def candidate_tokens(tokenizer, prompt: str) -> list[int]:
    """Prompt token positions that may name the subject (no BOS/EOS/padding, no function words)."""
    ids = tokenizer(prompt).input_ids[1:-1]
    words = tokenizer.convert_ids_to_tokens(ids)
    picks = [i + 1 for i, w in enumerate(words) if w.replace("</w>", "").lower() not in _STOPWORDS]
    return picks or list(range(1, len(ids) + 1))


def normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each map over its last two dims. (..., gh, gw) -> same shape in [0, 1]."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    hi = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo).clamp_min(1e-8)


def select_subject_tokens(
    maps: torch.Tensor, reference: torch.Tensor, candidates: list[int], threshold: float, ratio: float
) -> list[int]:
    """maps (S, gh, gw) of frame 0; reference (gh, gw) {0,1}. Tokens whose thresholded map has an IoU
    with the reference of at least ``ratio`` x the best token's."""
    if not candidates:
        return []
    ref = reference.bool()
    binary = normalise(maps[candidates]) >= threshold  # (c, gh, gw)
    inter = (binary & ref).flatten(1).sum(1).float()
    union = (binary | ref).flatten(1).sum(1).float().clamp_min(1)
    iou = inter / union
    best = float(iou.max())
    if best <= 0:
        return list(candidates)
    return [tok for tok, score in zip(candidates, iou.tolist(), strict=True) if score >= ratio * best]


def masks_from_maps(maps: torch.Tensor, tokens: list[int], threshold: float) -> torch.Tensor:
    """maps (F, S, gh, gw) -> (F, gh, gw) float {0,1}: subject tokens averaged, normalised, thresholded."""
    subject = maps[:, tokens].mean(1)
    return (normalise(subject) >= threshold).float()


class MaskTracker:
    """Holds every frame's mask between denoising steps and refreshes them from cross-attention maps.

    ``initial``: (num_frames, h, w) float {0,1} — frame 0 is the source mask (or the source pose's mask
    when no source mask exists), the others the masks drawn from their poses.
    """

    def __init__(
        self,
        initial: torch.Tensor,
        *,
        source_fixed: bool,
        subject_tokens: list[int] | None,
        candidates: list[int],
        threshold: float,
        ratio: float,
    ) -> None:
        self.masks = initial.clone()
        self.source_fixed = source_fixed
        self.subject_tokens = subject_tokens
        self._candidates = candidates
        self._threshold = threshold
        self._ratio = ratio
        self._reference = initial[0].clone()

    def update(self, maps: dict[int, torch.Tensor]) -> None:
        """maps {frame: (S, gh, gw)} from the step just finished -> masks for the next step."""
        if not maps:
            return
        frames = sorted(maps)
        stacked = torch.stack([maps[f] for f in frames])  # (F, S, gh, gw)
        grid = stacked.shape[-2:]
        if self.subject_tokens is None:
            if 0 not in maps:
                return
            reference = F.interpolate(self._reference[None, None], size=grid, mode="area")[0, 0] >= 0.5
            self.subject_tokens = select_subject_tokens(
                maps[0], reference, self._candidates, self._threshold, self._ratio
            )
        fresh = masks_from_maps(stacked, self.subject_tokens, self._threshold)  # (F, gh, gw)
        fresh = F.interpolate(fresh[:, None], size=self.masks.shape[-2:], mode="nearest")[:, 0]
        for row, frame in enumerate(frames):
            if frame == 0 and self.source_fixed:
                continue
            self.masks[frame] = fresh[row].to(self.masks.device)
