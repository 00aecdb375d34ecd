import json

import torch

from engine.inputs.models import RANDOM_WEIGHTS_MARKER, is_random_weights


def test_tiny_model_is_saved_in_diffusers_layout_and_labelled(tiny_model_dir):
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "controlnet"):
        assert (tiny_model_dir / sub).is_dir(), sub
    assert json.loads((tiny_model_dir / RANDOM_WEIGHTS_MARKER).read_text())["random_weights"] is True
    assert is_random_weights(tiny_model_dir) and not is_random_weights(tiny_model_dir / "unet")


def test_tiny_tokenizer_keeps_prompt_words_whole(tiny_model_dir):
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(tiny_model_dir, subfolder="tokenizer")
    tokens = tok.convert_ids_to_tokens(tok("an astronaut on the road").input_ids)
    assert tokens == [
        "<|startoftext|>",
        "an</w>",
        "astronaut</w>",
        "on</w>",
        "the</w>",
        "road</w>",
        "<|endoftext|>",
    ]
    assert tok.model_max_length == 77


@torch.no_grad()
def test_tiny_controlnet_pose_moves_the_noise_prediction(tiny_model_dir):
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    controlnet = ControlNetModel.from_pretrained(tiny_model_dir / "controlnet")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=gen)
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=gen)
    blank = torch.zeros(1, 3, 64, 64)
    drawn = blank.clone()
    drawn[:, :, 10:40, 20:30] = 1.0
    eps = []
    for cond in (blank, drawn):
        down, mid = controlnet(x, 500, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
        eps.append(
            unet(
                x,
                500,
                encoder_hidden_states=text,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
        )
    # from_unet zero-initialises the ControlNet outputs; the tiny model must undo that.
    assert ((eps[0] - eps[1]).norm() / eps[0].norm()) > 0.01
