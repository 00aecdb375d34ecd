"""The full-size SD-1.5 + OpenPose-ControlNet architecture with RANDOM weights, for benchmarks.

A network's speed and memory do not depend on its weight values, so the exact architecture with
random weights measures both faithfully without the real weights (the one exception: inversion
early stopping depends on the loss). Outputs are noise. For benchmarks, never for tests (too big)
and never for users.

Configs are those of ``stable-diffusion-v1-5/stable-diffusion-v1-5`` (``unet/``, ``vae/``,
``text_encoder/``, ``scheduler/``) and ``lllyasviel/control_v11p_sd15_openpose``, written out here
because nothing may be downloaded. The tokenizer is a self-built byte-level BPE (as in
``engine.weights.tiny``) padded with filler merges to CLIP's 49,408 tokens, so the embedding table has the
real size. The directory is a diffusers pipeline layout with a ``controlnet/`` subfolder and the
random-weights marker file, so ``PoseAnimator.from_pretrained(dir)`` loads it and reports
``model_info["random_weights"] = True``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import torch

from engine.inputs.models import RANDOM_WEIGHTS_MARKER
from engine.weights.tiny import _bytes_to_unicode, build_tiny_tokenizer_files

ARCHES = ("sd15",)

# stable-diffusion-v1-5/stable-diffusion-v1-5 unet/config.json
SD15_UNET_CONFIG: dict[str, object] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
# vae/config.json
SD15_VAE_CONFIG: dict[str, object] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
# text_encoder/config.json (CLIP ViT-L/14 text tower). Token ids follow the tokenizer built here.
SD15_TEXT_CONFIG: dict[str, object] = {
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "projection_dim": 768,
    "vocab_size": 49408,
}
# scheduler/scheduler_config.json (the pipeline builds its DDIM schedule from these values)
SD15_SCHEDULER_CONFIG: dict[str, object] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
# lllyasviel/control_v11p_sd15_openpose config.json: the U-Net's encoder plus these.
OPENPOSE_CONTROLNET_EMBEDDING = (16, 32, 96, 256)
CLIP_VOCAB_SIZE = 49408


def build_clip_sized_tokenizer_files(directory: Path, vocab_size: int = CLIP_VOCAB_SIZE) -> int:
    """The tiny model's BPE vocabulary (bytes, bytes + ``</w>``, whole prompt words) padded with
    filler merges of two byte symbols to exactly ``vocab_size`` tokens, special tokens last (ids
    49406/49407 as in CLIP). Returns the vocabulary size written."""
    build_tiny_tokenizer_files(directory)
    vocab: dict[str, int] = json.loads((directory / "vocab.json").read_text())
    merges = (directory / "merges.txt").read_text().splitlines()
    specials = ["<|startoftext|>", "<|endoftext|>"]
    for token in specials:
        vocab.pop(token)
    symbols = list(_bytes_to_unicode().values())
    needed = vocab_size - len(specials) - len(vocab)
    for first in symbols:  # filler merges rank after the word merges, so prompt words stay whole
        for second in [*symbols, *(s + "</w>" for s in symbols)]:
            if needed <= 0:
                break
            merged = first + second
            if merged in vocab:
                continue
            vocab[merged] = len(vocab)
            merges.append(f"{first} {second}")
            needed -= 1
    for token in specials:
        vocab[token] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("\n".join(merges) + "\n")
    return len(vocab)


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "xavier_uniform_",
    "xavier_normal_",
    "constant_",
    "zeros_",
    "ones_",
)


@contextlib.contextmanager
def _skip_default_init() -> Iterator[None]:
    """Construct modules without their default initialisation (it takes ~36 s for these 1.4 B
    parameters on 2 cores); ``_fast_init`` fills every parameter afterwards."""
    saved = {name: getattr(torch.nn.init, name) for name in _INIT_FUNCTIONS}
    for name in _INIT_FUNCTIONS:
        setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


@torch.no_grad()
def _fast_init(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Every parameter set, with PyTorch's default variances: linear/conv weights N(0, 1/(3 fan_in))
    (the variance of the default Kaiming-uniform init), biases 0, norms 1/0, embeddings N(0, 0.02)."""
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            if isinstance(sub, torch.nn.GroupNorm | torch.nn.LayerNorm) and name == "weight":
                param.fill_(1.0)
            elif name == "bias":
                param.zero_()
            elif isinstance(sub, torch.nn.Linear | torch.nn.Conv2d) and name == "weight":
                param.normal_(0.0, 1.0 / math.sqrt(3 * param[0].numel()), generator=generator)
            else:
                param.normal_(0.0, 0.02, generator=generator)


def sd15_modules(
    device: str | torch.device = "cpu", generator: torch.Generator | None = None
) -> dict[str, torch.nn.Module]:
    """UNet, ControlNet (a copy of the UNet's encoder, as a real ControlNet starts), VAE and text
    encoder of SD-1.5 + OpenPose ControlNet, with random weights.

    On ``device="meta"`` nothing is allocated: parameter counts and FLOPs only.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text_config = CLIPTextConfig(
        **SD15_TEXT_CONFIG,
        bos_token_id=CLIP_VOCAB_SIZE - 2,
        eos_token_id=CLIP_VOCAB_SIZE - 1,
        pad_token_id=CLIP_VOCAB_SIZE - 1,
    )
    meta = torch.device(device).type == "meta"
    generator = generator or torch.Generator().manual_seed(0)
    with torch.device(device), _skip_default_init():
        unet = UNet2DConditionModel.from_config(SD15_UNET_CONFIG)
        vae = AutoencoderKL.from_config(SD15_VAE_CONFIG)
        text_encoder = CLIPTextModel(text_config)
        if not meta:
            for module in (unet, vae, text_encoder):
                _fast_init(module, generator)
        controlnet = ControlNetModel.from_unet(
            unet, conditioning_embedding_out_channels=OPENPOSE_CONTROLNET_EMBEDDING
        )
    if not meta:
        _randomise_controlnet_outputs(controlnet, generator)  # the parts from_unet does not copy
    return {"unet": unet, "controlnet": controlnet, "vae": vae, "text_encoder": text_encoder}


def parameter_counts(modules: dict[str, torch.nn.Module]) -> dict[str, int]:
    return {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}


@torch.no_grad()
def _randomise_controlnet_outputs(controlnet: torch.nn.Module, generator: torch.Generator) -> None:
    """``from_unet`` zero-initialises the ControlNet's output convolutions (the pose would do
    nothing); give them, and the conditioning embedding, small He-scaled random weights so the pose
    reaches the noise prediction as a real ControlNet's does."""
    for conv in controlnet.controlnet_cond_embedding.modules():
        if isinstance(conv, torch.nn.Conv2d):
            std = math.sqrt(2.0 / conv.weight[0].numel())
            conv.weight.copy_(std * torch.randn(conv.weight.shape, generator=generator))
            conv.bias.zero_()
    for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        std = 0.5 / math.sqrt(block.weight[0].numel())
        block.weight.copy_(std * torch.randn(block.weight.shape, generator=generator))
        block.bias.zero_()


def build_random_model(
    directory: str | Path, arch: str = "sd15", seed: int = 0, dtype: torch.dtype = torch.float16
) -> Path:
    """Write the full-size random-weight model set under ``directory``; returns the path.

    Weights are stored in ``dtype`` (float16 by default: ~2.8 GB on disk; ``from_pretrained`` casts
    to the dtype it is asked for). Peak memory while building: ~5 GB (float32 init, one component
    cast at a time).
    """
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHES)}")
    from diffusers import PNDMScheduler, StableDiffusionControlNetPipeline
    from transformers import CLIPTokenizer

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    tok_dir = out / "tokenizer"
    vocab_size = build_clip_sized_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(
        vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"), model_max_length=77
    )
    modules = sd15_modules("cpu", generator)
    counts = parameter_counts(modules)
    for module in modules.values():
        module.to(dtype)
    pipe = StableDiffusionControlNetPipeline(
        vae=modules["vae"],
        text_encoder=modules["text_encoder"],
        tokenizer=tokenizer,
        unet=modules["unet"],
        controlnet=modules["controlnet"],
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    (out / RANDOM_WEIGHTS_MARKER).write_text(
        json.dumps(
            {
                "random_weights": True,
                "arch": arch,
                "seed": seed,
                "dtype": str(dtype).removeprefix("torch."),
                "vocab_size": vocab_size,
                "parameters": counts,
                "note": "Full-size RANDOM-WEIGHT SD-1.5 + OpenPose ControlNet for benchmarks: speed and "
                "memory are the real architecture's; outputs are noise.",
            },
            indent=2,
        )
    )
    return out
