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

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageOps

from engine.inputs.errors import InvalidInput
from engine.inputs.rules import check_mask
from engine.poses.pose import LIMBS, Pose, PoseError

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


# --------------------------------------------------------------------------------------------------
# Drawn body mask (the frame masks before any cross-attention map exists)

_NECK, _R_SHOULDER, _L_SHOULDER, _R_HIP, _L_HIP = 1, 2, 5, 8, 11
_FACE = (0, 14, 15, 16, 17)
# Typical ratios of a segment to the neck-to-hip (torso) length, used to estimate the body size
# from whichever segments are visible.
_TORSO_EQUIVALENTS = (
    ((_NECK, _R_HIP), 1.0),
    ((_NECK, _L_HIP), 1.0),
    ((_R_SHOULDER, _L_SHOULDER), 1.0 / 0.75),
    ((_R_HIP, _L_HIP), 1.0 / 0.45),
    ((0, _NECK), 1.0 / 0.35),
)
# Limb thickness and head radius as fractions of the torso length.
_LIMB_WIDTH = 0.3
_HEAD_RADIUS = 0.3
_AUTO_DILATION = 0.1


def _torso_length(kp: np.ndarray, visible: np.ndarray, width: int, height: int) -> float:
    estimates = [
        ratio * float(np.hypot(*(kp[a, :2] - kp[b, :2])))
        for (a, b), ratio in _TORSO_EQUIVALENTS
        if visible[a] and visible[b]
    ]
    estimates = [e for e in estimates if e > 0]
    if estimates:
        return float(np.median(estimates))
    pts = kp[visible, :2]
    if len(pts) >= 2:
        extent = float(np.hypot(*(pts.max(axis=0) - pts.min(axis=0))))
        if extent > 0:
            return 0.5 * extent
    return 0.1 * min(width, height)


def _disc(draw: ImageDraw.ImageDraw, center: np.ndarray, radius: float) -> None:
    x, y = float(center[0]), float(center[1])
    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)


def _capsule(draw: ImageDraw.ImageDraw, a: np.ndarray, b: np.ndarray, radius: float) -> None:
    """A segment thickened by ``radius`` on every side (round caps)."""
    _disc(draw, a, radius)
    _disc(draw, b, radius)
    d = b - a
    norm = float(np.hypot(*d))
    if norm == 0:
        return
    n = np.array([-d[1], d[0]]) / norm * radius
    corners = [a + n, b + n, b - n, a - n]
    draw.polygon([(float(p[0]), float(p[1])) for p in corners], fill=255)


def pose_mask(pose: Pose, width: int, height: int, *, dilation: float | None = None) -> np.ndarray:
    """A rough body mask drawn from the pose, (height, width) bool.

    Thick limbs (0.3 x the torso length), the shoulder-hip torso polygon (extended one torso length
    below the shoulders when both hips are missing) and a head disc around the visible face keypoints, all grown by ``dilation`` pixels (default 0.1 x the torso length). The
    torso length is estimated from whichever torso segments are visible. Used by MGDM as the frame
    mask before cross-attention maps exist. Non-empty whenever a visible keypoint lies on the canvas.
    """
    if dilation is not None and (not math.isfinite(dilation) or dilation < 0):
        raise PoseError(
            "pose_malformed", f"dilation must be a non-negative number of pixels, got {dilation!r}"
        )
    pose = pose.to_canvas(width, height)
    kp, visible = pose.keypoints, pose.visible
    canvas = Image.new("L", (width, height), 0)
    if not visible.any():
        return np.zeros((height, width), dtype=bool)
    draw = ImageDraw.Draw(canvas)
    torso = _torso_length(kp, visible, width, height)
    grow = _AUTO_DILATION * torso if dilation is None else float(dilation)
    radius = max(1.0, 0.5 * _LIMB_WIDTH * torso) + grow

    for i in np.flatnonzero(visible):
        _disc(draw, kp[i, :2], radius)
    for a, b in LIMBS:
        if visible[a] and visible[b]:
            _capsule(draw, kp[a, :2], kp[b, :2], radius)

    face = [i for i in _FACE if visible[i]]
    corners = [kp[i, :2] for i in (_R_SHOULDER, _L_SHOULDER, _L_HIP, _R_HIP) if visible[i]]
    if visible[_R_SHOULDER] and visible[_L_SHOULDER] and not (visible[_R_HIP] or visible[_L_HIP]):
        # Hips hidden or cropped (portraits): the torso still hangs below the shoulders, away from
        # the head, about one torso length.
        r_sh, l_sh = kp[_R_SHOULDER, :2], kp[_L_SHOULDER, :2]
        across = l_sh - r_sh
        down = np.array([-across[1], across[0]]) / max(float(np.hypot(*across)), 1e-6)
        up_hint = kp[face, :2].mean(axis=0) - (r_sh + l_sh) / 2 if face else np.array([0.0, -1.0])
        if float(down @ up_hint) > 0:
            down = -down
        corners = [r_sh, l_sh, l_sh + torso * down, r_sh + torso * down]
    elif visible[_NECK] and len(corners) == 2:
        corners.insert(0, kp[_NECK, :2])
    if len(corners) >= 3:
        draw.polygon([(float(p[0]), float(p[1])) for p in corners], fill=255)
        for a, b in zip(corners, corners[1:] + corners[:1], strict=True):
            _capsule(draw, a, b, radius)

    if face:
        pts = kp[face, :2]
        center = pts.mean(axis=0)
        spread = float(np.hypot(*(pts - center).T).max())
        _disc(draw, center, max(_HEAD_RADIUS * torso + grow, spread + radius))
    return np.asarray(canvas) > 0
