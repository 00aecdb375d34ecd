"""The full-size random-weight model (``engine.weights.random_model``, which the GPU benchmark runs),
checked cheaply: architecture sizes on the meta device, the CLIP-sized tokenizer, the written layout
(with small stand-in modules). Its command is checked in tests/cli/test_random_model_commands.py, the
benchmark's plan in tests/bench/test_gpu_bench.py. No full-size run here: that is bench/gpu.py's job."""

from __future__ import annotations

import json

import pytest
import torch

from engine.weights import random_model
from engine.weights.random_model import build_clip_sized_tokenizer_files, parameter_counts, sd15_modules


def test_sd15_architecture_has_the_real_parameter_counts():
    counts = parameter_counts(sd15_modules("meta"))
    # SD-1.5 U-Net 859.52 M, OpenPose ControlNet 361.28 M, CLIP ViT-L/14 text 123.06 M, VAE 83.65 M
    assert counts == {
        "unet": 859_520_964,
        "controlnet": 361_279_120,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
    }


def test_tokenizer_has_clips_vocabulary_size_and_keeps_prompt_words_whole(tmp_path):
    from transformers import CLIPTokenizer

    assert build_clip_sized_tokenizer_files(tmp_path) == 49408
    tok = CLIPTokenizer(vocab=str(tmp_path / "vocab.json"), merges=str(tmp_path / "merges.txt"))
    assert len(tok) == 49408
    ids = tok("an astronaut").input_ids
    assert ids[0] == 49406 and ids[-1] == 49407 and len(ids) == 4  # <bos> an astronaut <eos>
    assert tok.convert_ids_to_tokens(ids[1:3]) == ["an</w>", "astronaut</w>"]


def _small_modules(device="cpu", generator=None):
    """Stand-ins with the real vocabulary (the layout and marker are what is tested, not the size)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=8,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_hidden_layers=1,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 32))
    return {"unet": unet, "controlnet": controlnet, "vae": vae, "text_encoder": text}


def test_written_model_loads_and_is_reported_as_random(tmp_path, monkeypatch):
    from engine import PoseAnimator

    monkeypatch.setattr(random_model, "sd15_modules", _small_modules)
    path = random_model.build_random_model(tmp_path / "sd15", seed=1)
    marker = json.loads((path / random_model.RANDOM_WEIGHTS_MARKER).read_text())
    assert marker["random_weights"] is True and marker["arch"] == "sd15"
    assert json.loads((path / "scheduler" / "scheduler_config.json").read_text())["beta_end"] == 0.012
    animator = PoseAnimator.from_pretrained(path, None, pose_detector="none", segmenter="none")
    assert animator.model_info["random_weights"] is True
    assert animator.controlnet.dtype == torch.float32  # float16 on disk, cast on load
    assert len(animator.tokenizer) == 49408
    assert animator.vae.config.scaling_factor == pytest.approx(0.18215)


def test_unknown_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown architecture"):
        random_model.build_random_model(tmp_path, arch="sdxl")
