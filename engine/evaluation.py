"""The paper's quality metrics (Table 1, Table 2a) for a generated animation: docs/evaluation.md.

``evaluate(frames, source, reference_frames=None, ...)`` returns one dict:

- ``lpips``: VGG LPIPS (Zhang et al. 2018) of every frame against the source image, averaged
  (DisCo's protocol). Inputs in [-1, 1] as LPIPS was trained; ``disco_compat=True`` feeds [0, 1]
  images instead, which is what DisCo's evaluation script does.
- ``clip_i``: mean cosine similarity of each frame's CLIP image embedding to the source's.
- ``fc``: mean cosine similarity of consecutive frames' CLIP image embeddings x 100 (EvalCrafter's
  CLIP-Temp).
- ``we``: warping error (Lai et al. 2018, as EvalCrafter computes it): forward and backward optical
  flow between consecutive frames, a forward-backward consistency occlusion mask, and the mean
  squared error (images in [0, 1]) between a frame and its successor warped back onto it, over the
  non-occluded pixels. ``flow_method`` names the flow used (RAFT, OpenCV DIS or Farneback).
- ``ssim``, ``psnr`` (float64) and ``l1`` (mean absolute error in [0, 1]) against a ground-truth
  video, frame by frame, when one is given.

A metric is ``None`` when its weights are not given (nothing is ever downloaded here). Torch, numpy,
PIL and PyAV only; OpenCV (``cv2``) for the offline flow, torchvision only for RAFT.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

Frame = Image.Image | np.ndarray
FLOW_METHODS = ("dis", "farneback", "raft")


# ---------------------------------------------------------------------------------------------
# Input helpers
# ---------------------------------------------------------------------------------------------
def to_array(frame: Frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """PIL image or (H, W, 3) uint8 array -> (H, W, 3) uint8, optionally resized to ``size`` (w, h)."""
    image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
    image = image.convert("RGB")
    if size is not None and image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def read_video(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file as (H, W, 3) uint8 arrays (PyAV)."""
    import av

    try:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"cannot read video {path}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# LPIPS (VGG), the network of Zhang et al. 2018 / the `lpips` package, written out
# ---------------------------------------------------------------------------------------------
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = (3, 8, 15, 22, 29)  # ReLU outputs relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`
_CHANNELS = (64, 128, 256, 512, 512)


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` layer for layer (same indices, so its state dict loads)."""
    layers: list[nn.Module] = []
    channels = 3
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            channels = int(item)
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS with the VGG16 trunk: scaling layer, unit-normalised features of five ReLU taps, squared
    differences weighted by the learned 1x1 ``lin`` layers, spatially averaged and summed.

    ``LPIPS.from_pretrained(lin_weights, vgg_weights)``: ``lin_weights`` is the ``lpips`` package's
    ``weights/v0.1/vgg.pth``; ``vgg_weights`` torchvision's ``vgg16-397923af.pth`` (ImageNet).
    ``LPIPS()`` is random-initialised (tests only).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    @classmethod
    def from_pretrained(cls, lin_weights: str | Path, vgg_weights: str | Path | None = None) -> LPIPS:
        net = cls()
        lin = torch.load(str(lin_weights), map_location="cpu", weights_only=True)
        net.lins.load_state_dict({f"{i}.weight": lin[f"lin{i}.model.1.weight"] for i in range(5)})
        if vgg_weights is None:
            cached = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
            if not cached.is_file():
                raise ValueError(
                    "LPIPS needs the VGG16 ImageNet weights: pass vgg_weights (torchvision's "
                    f"vgg16-397923af.pth) or place it at {cached}"
                )
            vgg_weights = cached
        vgg = torch.load(str(vgg_weights), map_location="cpu", weights_only=True)
        net.features.load_state_dict(
            {k.removeprefix("features."): v for k, v in vgg.items() if k.startswith("features.")}
        )
        return net

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y (B, 3, H, W) in [-1, 1] -> (B,) distances."""
        x, y = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        tap = 0
        for index, layer in enumerate(self.features):
            x, y = layer(x), layer(y)
            if index == _TAPS[tap]:
                nx = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                ny = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + self.lins[tap]((nx - ny) ** 2).mean((1, 2, 3))
                tap += 1
                if tap == len(_TAPS):
                    break
        return total


def lpips_distance(
    net: LPIPS, frames: Sequence[np.ndarray], source: np.ndarray, *, disco_compat: bool
) -> float:
    def tensor(a: np.ndarray) -> torch.Tensor:
        # a float copy: torch warns on (and must not write through) read-only arrays
        t = torch.as_tensor(np.array(a, dtype=np.float32)).permute(2, 0, 1) / 255.0
        return t if disco_compat else t * 2 - 1

    x = torch.stack([tensor(f) for f in frames])
    y = tensor(source)[None].expand_as(x)
    with torch.no_grad():
        return float(net(x, y).mean())


# ---------------------------------------------------------------------------------------------
# CLIP-I and FC
# ---------------------------------------------------------------------------------------------
def load_clip(name_or_path: str | Path, device: str | torch.device = "cpu"):
    """(model, processor) from a hub id or a local dir (``CLIPVisionModelWithProjection``)."""
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(name_or_path)).to(device).eval()
        processor = CLIPImageProcessor.from_pretrained(str(name_or_path))
    except OSError as exc:
        raise ValueError(f"cannot load CLIP model {name_or_path}: {exc}".splitlines()[0]) from None
    return model, processor


def clip_embeddings(clip, images: Sequence[np.ndarray]) -> torch.Tensor:
    """(N, D) unit-norm image embeddings."""
    model, processor = clip
    batch = processor(images=[Image.fromarray(a) for a in images], return_tensors="pt")
    with torch.no_grad():
        pixels = batch["pixel_values"].to(model.device, model.dtype)
        emb = model(pixel_values=pixels).image_embeds.float()
    return F.normalize(emb, dim=-1)


# ---------------------------------------------------------------------------------------------
# Warping error
# ---------------------------------------------------------------------------------------------
def optical_flow(a: np.ndarray, b: np.ndarray, method: str, raft=None) -> np.ndarray:
    """Flow from a to b: (H, W, 2) float32 with ``a(x) ~ b(x + flow(x))``."""
    if method == "raft":
        if raft is None:
            raise ValueError("RAFT flow needs its model (torchvision raft_large weights)")
        t = torch.stack([torch.from_numpy(a), torch.from_numpy(b)]).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.no_grad():
            flow = raft(t[:1], t[1:])[-1][0]
        return flow.permute(1, 2, 0).numpy()
    import cv2

    ga, gb = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
    if method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return dis.calc(ga, gb, None)
    if method == "farneback":
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    raise ValueError(f"unknown flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}")


def warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward warp: ``out(x) = image(x + flow(x))`` (bilinear) and the in-bounds mask."""
    h, w = flow.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    grid = torch.from_numpy(np.stack([x / max(w - 1, 1) * 2 - 1, y / max(h - 1, 1) * 2 - 1], -1))[None]
    src = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    src = src[None, None] if src.ndim == 2 else src.permute(2, 0, 1)[None]
    out = F.grid_sample(src.float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=True)
    out = out[0].permute(1, 2, 0).numpy()
    return (out[..., 0] if image.ndim == 2 else out), inside


def warping_error(frames: Sequence[np.ndarray], method: str = "dis", raft=None) -> float:
    """Mean over consecutive pairs of the occlusion-masked MSE (images in [0, 1], per pixel summed
    over channels, as Lai et al.'s reference code) between frame t and frame t+1 warped onto it."""
    errors = []
    for a, b in itertools.pairwise(frames):
        fwd = optical_flow(a, b, method, raft)  # a(x) ~ b(x + fwd(x))
        bwd = optical_flow(b, a, method, raft)
        bwd_at_fwd, inside = warp(bwd, fwd)
        # forward-backward consistency (Sundaram et al. 2010, as in Lai et al. 2018)
        lhs = ((fwd + bwd_at_fwd) ** 2).sum(-1)
        rhs = 0.01 * ((fwd**2).sum(-1) + (bwd_at_fwd**2).sum(-1)) + 0.5
        valid = inside & (lhs <= rhs)
        if not valid.any():
            continue
        b_warped, _ = warp(b.astype(np.float64) / 255.0, fwd)
        diff = ((a.astype(np.float64) / 255.0 - b_warped) ** 2).sum(-1)
        errors.append(float(diff[valid].sum() / valid.sum()))
    return float(np.mean(errors)) if errors else 0.0


# ---------------------------------------------------------------------------------------------
# Reference-video metrics (float64)
# ---------------------------------------------------------------------------------------------
def _gaussian_filter(x: torch.Tensor, sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-(k**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004; Gaussian window sigma 1.5, 11 taps, valid region) in float64 on [0, 1],
    averaged over RGB channels."""
    x = torch.from_numpy(a.astype(np.float64) / 255.0).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float64) / 255.0).permute(2, 0, 1)[None]
    c1, c2 = 0.01**2, 0.03**2
    mx, my = _gaussian_filter(x), _gaussian_filter(y)
    vx = _gaussian_filter(x * x) - mx**2
    vy = _gaussian_filter(y * y) - my**2
    cxy = _gaussian_filter(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(255.0**2 / mse))


# ---------------------------------------------------------------------------------------------
# All together
# ---------------------------------------------------------------------------------------------
def evaluate(
    video_frames: Sequence[Frame],
    source_image: Frame,
    reference_frames: Sequence[Frame] | None = None,
    *,
    clip=None,
    lpips: LPIPS | None = None,
    disco_compat: bool = False,
    flow: str = "dis",
    raft=None,
) -> dict[str, object]:
    """Metrics of ``video_frames`` (see the module docstring). ``clip``: (model, processor) from
    ``load_clip`` or a hub id / local dir; ``lpips``: an ``LPIPS`` network; ``raft``: a torchvision
    RAFT model for ``flow="raft"``. Frames and the source are compared at the video's size."""
    if len(video_frames) < 2:
        raise ValueError("a video needs at least 2 frames to evaluate")
    if flow not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {flow!r}; choose one of {', '.join(FLOW_METHODS)}")
    frames = [to_array(f) for f in video_frames]
    size = (frames[0].shape[1], frames[0].shape[0])
    frames = [to_array(f, size) for f in frames]
    source = to_array(source_image, size)
    out: dict[str, object] = dict.fromkeys(("lpips", "clip_i", "fc", "we", "ssim", "psnr", "l1"))
    out["frames"] = len(frames)
    out["flow_method"] = flow
    if lpips is not None:
        out["lpips"] = lpips_distance(lpips, frames, source, disco_compat=disco_compat)
    out["lpips_input_range"] = None if lpips is None else ("[0,1] (DisCo)" if disco_compat else "[-1,1]")
    if clip is not None:
        if isinstance(clip, str | Path):
            clip = load_clip(clip)
        emb = clip_embeddings(clip, [*frames, source])
        frame_emb, source_emb = emb[:-1], emb[-1]
        out["clip_i"] = float((frame_emb @ source_emb).mean())
        out["fc"] = float((frame_emb[:-1] * frame_emb[1:]).sum(-1).mean() * 100)
    out["we"] = warping_error(frames, flow, raft)
    if reference_frames is not None:
        refs = [to_array(f, size) for f in reference_frames]
        n = min(len(refs), len(frames))
        if n == 0:
            raise ValueError("the reference video has no frames")
        pairs = list(zip(frames[:n], refs[:n], strict=True))
        out["ssim"] = float(np.mean([ssim(a, b) for a, b in pairs]))
        out["psnr"] = float(np.mean([psnr(a, b) for a, b in pairs]))
        out["l1"] = float(np.mean([np.abs(a.astype(np.float64) - b) / 255.0 for a, b in pairs]))
        out["reference_frames"] = n
    return out
