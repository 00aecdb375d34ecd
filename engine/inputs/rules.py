"""The engine's input rules and the ONE limits table of the method, torch-free.

A leaf (stdlib + numpy, plus the leaves ``engine.inputs.poseformat`` and ``engine.inputs.errors``), so the API,
the job core and the CLI refuse exactly what the engine would refuse, before anything is queued.
``AnimateConfig`` takes its bounds from :data:`LIMITS` and ``PoseAnimator.check_inputs`` calls these
functions. Every refusal is an :class:`~engine.inputs.errors.InvalidInput` with a stable ``code``:

========================  ===================================================================
``image_too_small``       an image side below ``LIMITS.min_image_side``
``image_too_many_pixels`` more than ``LIMITS.max_image_pixels`` pixels
``mask_empty``            a mask that marks no pixel (all black / fully transparent)
``prompt_blank``          an empty or whitespace-only prompt
``prompt_too_long``       more than ``LIMITS.max_prompt_chars`` characters
``subject_not_in_prompt`` a subject word that is not a word of the prompt
``parameter_out_of_range`` a number outside its bound (steps, guidance, size, fps, ...)
``too_many_frames``       more than ``LIMITS.max_output_frames`` output frames
``pose_degenerate``       a pose whose confident keypoints span less than 2 px
``pose_empty_frame``      a pose with no confident keypoint
========================  ===================================================================
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine.inputs.errors import InvalidInput, echo
from engine.inputs.poseformat import POSE_LIMITS, frame_span

__all__ = [
    "DEFAULTS",
    "LIMITS",
    "RULE_CODES",
    "Defaults",
    "Limits",
    "check_fps",
    "check_generation_size",
    "check_guidance",
    "check_image_size",
    "check_mask",
    "check_output_frames",
    "check_poses_not_degenerate",
    "check_prompt",
    "check_range",
    "check_steps",
    "check_subject_words",
    "check_transition_frames",
    "check_trim",
]


@dataclass(frozen=True)
class Limits:
    """Bounds of every input of the method (the service may be stricter, never looser)."""

    min_steps: int = 1
    max_steps: int = 1000
    """DDIM steps; the scheduler's own ``num_train_timesteps`` is checked by the pipeline."""
    min_guidance: float = 1.0
    max_guidance: float = 30.0
    min_size: int = 64
    max_size: int = 2048
    size_multiple: int = 8
    """Generation width/height: a multiple of 8 (the VAE factor) in 64..2048."""
    min_transition_frames: int = 0
    max_transition_frames: int = 120
    max_output_frames: int = 300
    """1 + transition + target frames."""
    min_fps: int = 1
    max_fps: int = 60
    max_subject_words: int = 8
    min_subject_word_chars: int = 1
    max_subject_word_chars: int = 64
    max_prompt_chars: int = 500
    min_image_side: int = 32
    max_image_pixels: int = 64_000_000
    min_pose_span: float = POSE_LIMITS.min_span


PoseParts = Literal["body", "body+hands", "body+face", "full"]
POSE_PARTS: tuple[str, ...] = ("body", "body+hands", "body+face", "full")
"""What of a whole-body pose conditions the ControlNet (and is drawn in the previews): the body alone,
with the hands, with the face, or all of it (``full``, the default: the OpenPose ControlNet was trained
on the annotator's "openpose_full" images; parts a pose does not have are simply not drawn)."""


def part_flags(parts: str) -> tuple[bool, bool]:
    """``(hands, face)`` kept by a :data:`POSE_PARTS` value."""
    if parts not in POSE_PARTS:
        raise InvalidInput(
            f"parts must be one of {', '.join(POSE_PARTS)}, got {echo(parts)}", code="parameter_out_of_range"
        )
    return parts in ("body+hands", "full"), parts in ("body+face", "full")


@dataclass(frozen=True)
class Defaults:
    steps: int = 50
    guidance: float = 7.5
    size: int = 512
    transition_frames: int = 4
    fps: int = 8
    retarget: Literal["scale", "bones"] = "scale"
    parts: PoseParts = "full"


LIMITS = Limits()
DEFAULTS = Defaults()

RULE_CODES = frozenset(
    {
        "image_too_small",
        "image_too_many_pixels",
        "mask_empty",
        "prompt_blank",
        "prompt_too_long",
        "subject_not_in_prompt",
        "parameter_out_of_range",
        "too_many_frames",
        "pose_degenerate",
        "pose_empty_frame",
    }
)


def check_range(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    """``low <= value <= high`` (an int when ``integer``), else ``parameter_out_of_range``."""
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
        shown_low, shown_high = (f"{low:g}", f"{high:g}") if not integer else (str(low), str(high))
        what = "an integer" if integer else "a number"
        raise InvalidInput(
            f"{name} must be {what} in {shown_low}..{shown_high}, got {echo(value)}",
            code="parameter_out_of_range",
        )


def check_steps(steps: int, name: str = "num_inference_steps") -> None:
    check_range(name, steps, LIMITS.min_steps, LIMITS.max_steps, integer=True)


def check_guidance(guidance: float, name: str = "guidance_scale") -> None:
    check_range(name, guidance, LIMITS.min_guidance, LIMITS.max_guidance)


def check_transition_frames(count: int, name: str = "transition_frames") -> None:
    check_range(name, count, LIMITS.min_transition_frames, LIMITS.max_transition_frames, integer=True)


def check_fps(fps: int, name: str = "fps") -> None:
    check_range(name, fps, LIMITS.min_fps, LIMITS.max_fps, integer=True)


def check_generation_size(width: int, height: int) -> None:
    """Each of width/height a multiple of 8 in 64..2048 (``parameter_out_of_range``)."""
    for name, value in (("width", width), ("height", height)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value % LIMITS.size_multiple
            or not LIMITS.min_size <= value <= LIMITS.max_size
        ):
            raise InvalidInput(
                f"{name} must be a multiple of {LIMITS.size_multiple} in {LIMITS.min_size}..{LIMITS.max_size}, "
                f"got {echo(value)}",
                code="parameter_out_of_range",
            )


def check_output_frames(count: int, max_frames: int = LIMITS.max_output_frames) -> None:
    """``1 + transition + targets`` output frames, at most ``max_frames`` (``too_many_frames``)."""
    if count > max_frames:
        raise InvalidInput(
            f"{count} output frames requested; at most {max_frames} are allowed", code="too_many_frames"
        )


def check_image_size(width: int, height: int) -> None:
    """Each side >= 32 px (``image_too_small``), at most 64e6 pixels (``image_too_many_pixels``)."""
    if min(width, height) < LIMITS.min_image_side:
        raise InvalidInput(
            f"image is {width}x{height}; each side must be at least {LIMITS.min_image_side} px",
            code="image_too_small",
        )
    if width * height > LIMITS.max_image_pixels:
        raise InvalidInput(
            f"image is {width}x{height}; at most {LIMITS.max_image_pixels} pixels are accepted",
            code="image_too_many_pixels",
        )


def check_mask(mask: np.ndarray | None) -> None:
    """A 2-D mask (bool, or uint8 where >= 128 marks the character) must mark some pixel
    (``mask_empty``); None (no mask) passes. A full mask is allowed (the whole frame is the character)."""
    if mask is None:
        return
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InvalidInput(f"mask must be 2-D, got shape {array.shape}", code="mask_empty")
    marked = array if array.dtype == bool else array >= 128
    if not marked.any():
        raise InvalidInput(
            "mask is empty: no pixel marks the character (all black or fully transparent)", code="mask_empty"
        )


def check_prompt(prompt: Any, max_chars: int = LIMITS.max_prompt_chars) -> None:
    """A non-blank string (``prompt_blank``) of at most ``max_chars`` characters (the method's 500
    unless a service is stricter; ``prompt_too_long``)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("prompt must be a non-empty string", code="prompt_blank")
    if len(prompt) > max_chars:
        raise InvalidInput(
            f"prompt is {len(prompt)} characters; at most {max_chars} are allowed", code="prompt_too_long"
        )


def check_trim(start: float | None, end: float | None, *, names: tuple[str, str] = ("start", "end")) -> None:
    """A clip's ``end`` second after its ``start`` (0 when left out), else ``parameter_out_of_range``."""
    start = start or 0.0
    if end is not None and end <= start:
        raise InvalidInput(
            f"{names[1]} ({end:g} s) must be after {names[0]} ({start:g} s)", code="parameter_out_of_range"
        )


def check_subject_words(prompt: str, words: Sequence[str] | None) -> None:
    """At most 8 words of 1..64 non-blank characters (``parameter_out_of_range``), each a word (or
    run of words) of the prompt, case-insensitively, on word boundaries (``subject_not_in_prompt``)."""
    if not words:
        return
    if isinstance(words, str) or len(words) > LIMITS.max_subject_words:
        raise InvalidInput(
            f"give at most {LIMITS.max_subject_words} subject words as a list", code="parameter_out_of_range"
        )
    lowered = prompt.lower() if isinstance(prompt, str) else ""
    for word in words:
        if (
            not isinstance(word, str)
            or not word.strip()
            or not LIMITS.min_subject_word_chars <= len(word) <= LIMITS.max_subject_word_chars
        ):
            raise InvalidInput(
                f"subject words must be {LIMITS.min_subject_word_chars}..{LIMITS.max_subject_word_chars} "
                f"non-blank characters, got {echo(word)}",
                code="parameter_out_of_range",
            )
        pattern = r"(?<!\w)" + re.escape(word.strip().lower()) + r"(?!\w)"
        if not re.search(pattern, lowered):
            raise InvalidInput(
                f"subject word {echo(word)} does not occur in the prompt", code="subject_not_in_prompt"
            )


def check_poses_not_degenerate(compact: Mapping[str, Any]) -> None:
    """Every frame of a compact pixel pose has a confident keypoint (``pose_empty_frame``) and spans
    at least 2 px (``pose_degenerate``).

    ``engine.inputs.poseformat.normalize_poses`` already refuses such input; this checks poses built some
    other way (a detector, code) with the same rule.
    """
    for i, frame in enumerate(compact["frames"]):
        if not any(point[2] > 0 for point in frame):
            raise InvalidInput(f"frame {i} has no confident keypoint", code="pose_empty_frame")
        if frame_span(frame) < LIMITS.min_pose_span:
            raise InvalidInput(
                f"frame {i}: the confident keypoints span less than {LIMITS.min_pose_span:g} px",
                code="pose_degenerate",
            )
