"""A tiny, random-weight SD-1.5 + OpenPose-ControlNet model set for tests and smoke runs.

Everything here is built locally (no hub access): a UNet, a ControlNet derived from it, a VAE with
the 8x latent factor, a small CLIP text encoder and a byte-level BPE tokenizer with a hand-made
vocabulary. The weights are random: outputs are noise-like images, useful only to exercise the
code paths. The model directory is saved in the diffusers pipeline layout, so it loads through the
same ``from_pretrained`` code as real weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from engine.inputs.models import RANDOM_WEIGHTS_MARKER

# Words the tiny BPE vocabulary knows as whole tokens; anything else falls back to characters.
_WORDS = [
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "at",
    "with",
    "and",
    "person",
    "man",
    "woman",
    "astronaut",
    "boy",
    "girl",
    "character",
    "dancer",
    "iron",
    "firefighter",
    "smoke",
    "street",
    "road",
    "park",
    "beach",
    "space",
    "suit",
    "red",
    "blue",
    "white",
    "black",
    "standing",
    "walking",
    "raising",
    "arm",
    "arms",
    "photo",
    "portrait",
]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode map (the byte-level BPE alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_tiny_tokenizer_files(directory: Path) -> int:
    """Write ``vocab.json`` and ``merges.txt`` for a CLIP-style BPE tokenizer; returns vocab size."""
    alphabet = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for ch in alphabet:
        vocab[ch + "</w>"] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        # Merge left to right so every whole word becomes one "word</w>" token.
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            merged = parts[0] + parts[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in vocab:
                vocab[merged] = len(vocab)
            parts = [merged, *parts[2:]]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n")
    return len(vocab)


@torch.no_grad()
def _randomise_controlnet_outputs(controlnet: torch.nn.Module, generator: torch.Generator) -> None:
    """Give the pose a measurable effect on the noise prediction.

    ``from_unet`` zero-initialises the output ("zero") convolutions, so the pose would do nothing, and
    the default init of the conditioning embedding shrinks the pose image to ~0 on the way in. He-init
    the embedding (a gain on its last conv) and put small random weights on the output convolutions:
    the pose then moves eps by a few percent (text moves it ~13%).
    """
    for conv in controlnet.controlnet_cond_embedding.modules():
        if isinstance(conv, torch.nn.Conv2d):
            gain = 4.0 if conv is controlnet.controlnet_cond_embedding.conv_out else 1.0
            std = gain * math.sqrt(2.0 / conv.weight[0].numel())
            conv.weight.copy_(std * torch.randn(conv.weight.shape, generator=generator))
            conv.bias.zero_()
    for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
        block.weight.copy_(0.1 * torch.randn(block.weight.shape, generator=generator))
        block.bias.zero_()


def build_tiny_model(path: str | Path, seed: int = 0) -> Path:
    """Build and save the tiny random-weight model set under ``path``; returns the path.

    Layout: ``path`` is a diffusers StableDiffusionControlNetPipeline directory (``unet/``, ``vae/``,
    ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``controlnet/``, ``model_index.json``), so
    ``PoseAnimator.from_pretrained(base=path, controlnet=path / "controlnet")`` loads it.
    """
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    tok_dir = out / "tokenizer"
    vocab_size = build_tiny_tokenizer_files(tok_dir)
    tokenizer = CLIPTokenizer(
        vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"), model_max_length=77
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    # SD-1.5's shape in miniature: cross-attention in both down and both up levels.
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    _randomise_controlnet_outputs(controlnet, generator)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
    )
    # SD-1.5's scheduler settings.
    scheduler = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )
    pipe = StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out)
    (out / RANDOM_WEIGHTS_MARKER).write_text(
        json.dumps(
            {
                "random_weights": True,
                "seed": seed,
                "note": "Tiny random-weight model for tests and smoke runs; outputs are not meaningful.",
            },
            indent=2,
        )
    )
    return out
