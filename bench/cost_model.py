"""Cost model: U-Net/ControlNet evaluation counts -> FLOPs -> predicted seconds per job on a GPU.

FLOPs are counted, not guessed: the SD-1.5 U-Net, the OpenPose ControlNet and the VAE are built on
PyTorch's ``meta`` device (shapes only, no weights, no memory) and run under
``torch.utils.flop_counter.FlopCounterMode`` at the job's resolution; backward passes count input
gradients only (the method never needs weight gradients). Evaluation counts come from
``engine.method.cost.expected_evaluations`` — the same formula the pipeline is tested against.

    .venv/bin/python -m bench.cost_model                         # paper setting: 512², T=50, n=5, 16 frames
    .venv/bin/python -m bench.cost_model --frames 120 --json
    .venv/bin/python -m bench.cost_model --model /path/to/sd15    # read configs from a local model dir
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from engine.method.config import AnimateConfig
from engine.method.cost import expected_evaluations

ROOT = Path(__file__).resolve().parent.parent

# stable-diffusion-v1-5/stable-diffusion-v1-5: unet/config.json and vae/config.json (architecture keys).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
}
# Dense BF16/FP16 tensor-core peaks (no sparsity), from the vendors' datasheets.
GPUS = {"A100 (SXM, 312 TFLOP/s)": 312e12, "H100 (SXM, 989 TFLOP/s)": 989e12}
TEXT_TOKENS = 77


def _load_configs(model: str | None) -> tuple[dict, dict]:
    if not model:
        return SD15_UNET, SD15_VAE
    root = Path(model)
    unet = json.loads((root / "unet" / "config.json").read_text())
    vae = json.loads((root / "vae" / "config.json").read_text())
    return unet, vae


def count_flops(size: int, unet_config: dict, vae_config: dict) -> dict[str, float]:
    """FLOPs of one sample: U-Net+ControlNet forward and backward, VAE encode and decode."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
        controlnet = ControlNetModel.from_unet(unet)
        vae = AutoencoderKL.from_config(vae_config)
    for m in (unet, controlnet, vae):
        m.requires_grad_(False)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent = torch.empty(1, 4, size // factor, size // factor, device="meta")
    text = torch.empty(1, TEXT_TOKENS, unet.config.cross_attention_dim, device="meta", requires_grad=True)
    pose = torch.empty(1, 3, size, size, device="meta")
    image = torch.empty(1, 3, size, size, device="meta")

    with FlopCounterMode(display=False) as fwd:
        down, mid = controlnet(
            latent, 500, encoder_hidden_states=text, controlnet_cond=pose, return_dict=False
        )
        out = unet(
            latent,
            500,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample
    with FlopCounterMode(display=False) as bwd:
        out.sum().backward()  # gradient w.r.t. the text embedding only
    with FlopCounterMode(display=False) as enc:
        vae.encode(image)
    with FlopCounterMode(display=False) as dec:
        vae.decode(latent)
    return {
        "up_block_self_attention": up_block_self_attention_flops(size, dict(unet.config), factor),
        "unet_controlnet_forward": float(fwd.get_total_flops()),
        "unet_controlnet_backward": float(bwd.get_total_flops()),
        "vae_encode": float(enc.get_total_flops()),
        "vae_decode": float(dec.get_total_flops()),
    }


def up_block_self_attention_flops(size: int, unet_config: dict, vae_factor: int = 8) -> float:
    """FLOPs of the plain self-attention products (QK^T and AV: 4 * L^2 * C) in the U-Net's up-blocks,
    per sample — the part DCAM (3 references) multiplies for frames i >= 1 (MGDM splits each
    reference's keys between the query regions, adding nothing)."""
    channels = list(reversed(unet_config["block_out_channels"]))
    side = size // vae_factor // 2 ** (len(channels) - 1)
    total = 0.0
    for i, kind in enumerate(unet_config["up_block_types"]):
        if "CrossAttn" in kind:
            tokens = side * side
            total += (unet_config["layers_per_block"] + 1) * 4 * tokens * tokens * channels[i]
        side *= 2
    return total


def predict(flops: dict[str, float], evals: dict[str, int], frames_out: int) -> dict[str, float]:
    # Generation: frames i >= 1 run up to 3 attention products instead of 1: 3 references, each query
    # attending only the keys of its own MGDM region (a_i*c_j + (L-a_i)(L-c_j) pairs per reference,
    # L^2 when one region covers the frame; ~2 L^2 in all for a ~30 % character: python -m bench.mgdm).
    dcam_extra = (
        2 * flops["up_block_self_attention"] * evals["sampling_forward"] * (frames_out - 1) / frames_out
    )
    total = (
        evals["total_forward"] * flops["unet_controlnet_forward"]
        + evals["total_backward"] * flops["unet_controlnet_backward"]
        + dcam_extra
        + flops["vae_encode"]
        + frames_out * flops["vae_decode"]
    )
    return {"total_flops": total, "dcam_mgdm_extra_flops": dcam_extra}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50, help="T (paper: 50)")
    parser.add_argument("--inner", type=int, default=5, help="n inversion iterations per step (paper: 5)")
    parser.add_argument("--frames", type=int, default=16, help="generated frames N = M + t (paper: 16)")
    parser.add_argument(
        "--mfu", type=float, default=0.4, help="assumed model-FLOP utilisation for 'expected'"
    )
    parser.add_argument("--model", default=None, help="local SD-1.5 dir to read unet/vae configs from")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    unet_config, vae_config = _load_configs(args.model)
    flops = count_flops(args.size, unet_config, vae_config)
    config = AnimateConfig(
        num_inference_steps=args.steps,
        inversion_inner_steps=args.inner,
        height=args.size,
        width=args.size,
        transition_frames=0,
    )
    report = {
        "size": args.size,
        "steps": args.steps,
        "inner": args.inner,
        "frames": args.frames,
        "flops_per_sample": flops,
        "gpus": {},
    }
    for label, cache_hit in (("cache_miss", False), ("cache_hit", True)):
        evals = expected_evaluations(config, args.frames, cache_hit=cache_hit)
        report[label] = {"evals": evals, **predict(flops, evals, args.frames + 1)}
    for gpu, peak in GPUS.items():
        report["gpus"][gpu] = {
            label: {
                "peak_seconds": report[label]["total_flops"] / peak,
                "expected_seconds": report[label]["total_flops"] / (peak * args.mfu),
            }
            for label in ("cache_miss", "cache_hit")
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(
        f"# cost model — SD-1.5 + OpenPose ControlNet, {args.size}², T={args.steps}, n={args.inner}, "
        f"N={args.frames} generated frames (+ frame 0)"
    )
    print("\nper sample (GFLOP): " + ", ".join(f"{k} {v / 1e9:.0f}" for k, v in flops.items()))
    miss = report["cache_miss"]["evals"]
    print("\n| stage | forward | backward |\n|---|---:|---:|")
    for stage in ("inverting", "optimizing", "sampling"):
        print(f"| {stage} | {miss.get(stage + '_forward', 0)} | {miss.get(stage + '_backward', 0)} |")
    print(f"| total | {miss['total_forward']} | {miss['total_backward']} |")
    print(
        f"\nDCAM+MGDM extra attention in sampling: {report['cache_miss']['dcam_mgdm_extra_flops'] / 1e15:.2f} PFLOP"
    )
    print(
        f"job FLOPs: {report['cache_miss']['total_flops'] / 1e15:.2f} PFLOP "
        f"(inversion-cache hit: {report['cache_hit']['total_flops'] / 1e15:.2f} PFLOP)"
    )
    print(
        f"\n| GPU | peak-FLOP time | expected at {args.mfu:.0%} MFU | cache hit, expected |\n|---|---:|---:|---:|"
    )
    for gpu, rows in report["gpus"].items():
        print(
            f"| {gpu} | {rows['cache_miss']['peak_seconds']:.1f} s | {rows['cache_miss']['expected_seconds']:.1f} s "
            f"| {rows['cache_hit']['expected_seconds']:.1f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
