"""engine/inputs/rules.py and engine/inputs/models.py: the engine's torch-free input rules, limits and defaults."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.inputs.errors import InvalidInput
from engine.inputs.models import DEFAULT_BASE, DEFAULT_CONTROLNET, RANDOM_WEIGHTS_MARKER, is_random_weights
from engine.inputs.rules import (
    DEFAULTS,
    LIMITS,
    RULE_CODES,
    check_fps,
    check_generation_size,
    check_image_size,
    check_mask,
    check_output_frames,
    check_poses_not_degenerate,
    check_prompt,
    check_subject_words,
)
from engine.method.config import AnimateConfig

STANDING = [[256 + 10 * (i % 3), 96 + 20 * i, 1.0] for i in range(18)]


def code_of(call, *args):
    with pytest.raises(InvalidInput) as info:
        call(*args)
    assert info.value.code in RULE_CODES and info.value.message == str(info.value)
    return info.value.code


def test_the_limits_table_holds_the_methods_bounds():
    assert (LIMITS.min_steps, LIMITS.max_steps) == (1, 1000)
    assert (LIMITS.min_guidance, LIMITS.max_guidance) == (1.0, 30.0)
    assert (LIMITS.min_size, LIMITS.max_size, LIMITS.size_multiple) == (64, 2048, 8)
    assert (LIMITS.min_transition_frames, LIMITS.max_transition_frames) == (0, 120)
    assert LIMITS.max_output_frames == 300 and (LIMITS.min_fps, LIMITS.max_fps) == (1, 60)
    assert (LIMITS.max_subject_words, LIMITS.max_subject_word_chars) == (8, 64)
    assert (LIMITS.min_image_side, LIMITS.max_image_pixels) == (32, 64_000_000)
    assert (DEFAULTS.steps, DEFAULTS.guidance, DEFAULTS.size, DEFAULTS.transition_frames, DEFAULTS.fps) == (
        50,
        7.5,
        512,
        4,
        8,
    )


def test_animate_config_defaults_and_bounds_are_the_tables():
    config = AnimateConfig()
    assert (config.num_inference_steps, config.guidance_scale, config.width, config.height) == (
        DEFAULTS.steps,
        DEFAULTS.guidance,
        DEFAULTS.size,
        DEFAULTS.size,
    )
    assert config.transition_frames == DEFAULTS.transition_frames
    assert config.max_frames == LIMITS.max_output_frames
    # each bound accepted at the limit, refused one past it, with the same code
    AnimateConfig(num_inference_steps=LIMITS.max_steps, transition_frames=LIMITS.max_transition_frames)
    AnimateConfig(guidance_scale=LIMITS.max_guidance, width=LIMITS.max_size, height=LIMITS.min_size)
    for change in (
        {"num_inference_steps": LIMITS.max_steps + 1},
        {"num_inference_steps": 0},
        {"guidance_scale": LIMITS.max_guidance + 0.5},
        {"width": LIMITS.max_size + 8},
        {"height": LIMITS.min_size - 8},
        {"height": 100},
        {"transition_frames": LIMITS.max_transition_frames + 1},
        {"transition_frames": -1},
    ):
        with pytest.raises(InvalidInput) as info:
            AnimateConfig(**change)
        assert info.value.code == "parameter_out_of_range", change


@pytest.mark.parametrize(
    ("size", "code"),
    [
        ((31, 512), "image_too_small"),
        ((8, 8), "image_too_small"),
        ((1, 4000), "image_too_small"),
        ((8001, 8000), "image_too_many_pixels"),
    ],
)
def test_image_size(size, code):
    assert code_of(check_image_size, *size) == code


def test_image_size_accepts_the_limits():
    check_image_size(32, 32)
    check_image_size(8000, 8000)


def test_mask_must_mark_something():
    check_mask(None)
    full = np.ones((8, 8), dtype=bool)
    check_mask(full)  # a full mask is allowed: the whole frame is the character
    one = np.zeros((8, 8), dtype=np.uint8)
    one[3, 3] = 128
    check_mask(one)
    assert code_of(check_mask, np.zeros((8, 8), dtype=bool)) == "mask_empty"
    assert (
        code_of(check_mask, np.full((8, 8), 127, dtype=np.uint8)) == "mask_empty"
    )  # dark grey is not marked


def test_prompt():
    check_prompt("a person")
    check_prompt("x" * LIMITS.max_prompt_chars)
    for blank in ("", "   ", "\n\t", None, 3):
        assert code_of(check_prompt, blank) == "prompt_blank"
    assert code_of(check_prompt, "x" * (LIMITS.max_prompt_chars + 1)) == "prompt_too_long"


@pytest.mark.parametrize(
    "words", [None, [], ["astronaut"], ["Astronaut"], ["iron man"], ["road"], ["astronaut", "road"]]
)
def test_subject_words_that_are_words_of_the_prompt_pass(words):
    check_subject_words("An astronaut, like Iron Man, on the road.", words)


@pytest.mark.parametrize(
    ("words", "code"),
    [
        (["dragon"], "subject_not_in_prompt"),
        (["astro"], "subject_not_in_prompt"),  # a prefix is not a word
        (["stronaut"], "subject_not_in_prompt"),
        (["on the"], "subject_not_in_prompt"),  # "on the" is not there in that order
        ([" "], "parameter_out_of_range"),
        ([""], "parameter_out_of_range"),
        (["x" * 65], "parameter_out_of_range"),
        (["road"] * 9, "parameter_out_of_range"),
        ("road", "parameter_out_of_range"),  # a bare string, not a list of words
    ],
)
def test_subject_words_are_refused(words, code):
    assert code_of(check_subject_words, "An astronaut, on a road the", words) == code


def test_generation_size():
    check_generation_size(72, 88)
    for size in ((72, 100), (56, 64), (2056, 64), (64.0, 64), (True, 64)):
        assert code_of(check_generation_size, *size) == "parameter_out_of_range"


def test_fps_and_output_frames():
    check_fps(1)
    check_fps(60)
    assert code_of(check_fps, 0) == "parameter_out_of_range"
    assert code_of(check_fps, 61) == "parameter_out_of_range"
    check_output_frames(300)
    assert code_of(check_output_frames, 301) == "too_many_frames"
    assert code_of(check_output_frames, 6, 5) == "too_many_frames"


def test_poses_not_degenerate():
    check_poses_not_degenerate({"width": 512, "height": 512, "frames": [STANDING]})
    one_point = {"width": 512, "height": 512, "frames": [STANDING, [[256, 256, 1.0]] * 18]}
    assert code_of(check_poses_not_degenerate, one_point) == "pose_degenerate"
    empty = {"width": 512, "height": 512, "frames": [[[0, 0, 0]] * 18]}
    assert code_of(check_poses_not_degenerate, empty) == "pose_empty_frame"


def test_invalid_input_has_a_default_code():
    assert InvalidInput("x").code == "invalid_input" and InvalidInput("x", code="c").code == "c"


def test_model_defaults_and_the_random_weights_marker(tmp_path):
    assert DEFAULT_BASE == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert DEFAULT_CONTROLNET == "lllyasviel/control_v11p_sd15_openpose"
    assert not is_random_weights(tmp_path) and not is_random_weights(tmp_path / "missing")
    (tmp_path / RANDOM_WEIGHTS_MARKER).write_text("{}")
    assert is_random_weights(tmp_path) and is_random_weights(str(tmp_path))
    import engine

    assert engine.DEFAULT_BASE == DEFAULT_BASE and engine.DEFAULT_CONTROLNET == DEFAULT_CONTROLNET


def test_rules_models_and_errors_are_torch_free_leaves():
    code = (
        "import sys, engine, engine.inputs.rules, engine.inputs.models, engine.inputs.errors, engine.inputs.poseformat; "
        "engine.DEFAULT_BASE; "
        "assert 'torch' not in sys.modules and 'PIL' not in sys.modules, 'torch/PIL loaded'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
