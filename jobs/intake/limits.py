"""The service's limits table: what ``POST /animations`` and ``POST /poses`` accept, in one place.

Each bound is the engine's own (``engine.inputs.rules.LIMITS``: what the method can run) narrowed by the
operator's settings where there is one (``POSEANIMATE_MAX_STEPS``, ``_MAX_SIZE``, ``_MAX_FRAMES``,
``_MAX_PROMPT_CHARS``, ``_MAX_IMAGE_PIXELS``). The API enforces exactly these numbers and publishes
them in its OpenAPI schema (``minimum``/``maximum``/``multipleOf`` of each parameter), so a client
reads what the server enforces; every violation of a parameter bound is ``parameter_out_of_range``.
Defaults are the engine's (``engine.inputs.rules.DEFAULTS``): a job records the values it runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.inputs.errors import InvalidInput, echo
from engine.inputs.rules import DEFAULTS, LIMITS, check_prompt, check_subject_words
from jobs.settings import Settings


@dataclass(frozen=True)
class Bound:
    minimum: float
    maximum: float
    multiple_of: int | None = None
    integer: bool = True

    def admits(self, value: float) -> bool:
        if self.integer and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        if self.multiple_of and int(value) % self.multiple_of:
            return False
        return self.minimum <= value <= self.maximum

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        low, high = (int(self.minimum), int(self.maximum)) if self.integer else (self.minimum, self.maximum)
        step = f", a multiple of {self.multiple_of}" if self.multiple_of else ""
        return f"{kind} in {low}..{high}{step}"

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"minimum": self.minimum, "maximum": self.maximum}
        if self.integer:
            out = {k: int(v) for k, v in out.items()}
        if self.multiple_of:
            out["multipleOf"] = self.multiple_of
        return out


@dataclass(frozen=True)
class ServiceLimits:
    """Bounds of every job parameter (name -> Bound) and of the inputs."""

    params: dict[str, Bound]
    max_frames: int
    """Target pose frames per job."""
    max_output_frames: int
    """1 + transition + target frames."""
    max_prompt_chars: int
    max_image_pixels: int
    min_image_side: int
    max_subject_words: int
    max_video_seconds: float
    """Driving video duration decoded (seconds)."""
    max_video_pixels: int
    """Driving video frame resolution (width x height)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServiceLimits:
        size = Bound(LIMITS.min_size, min(settings.max_size, LIMITS.max_size), LIMITS.size_multiple)
        return cls(
            params={
                "steps": Bound(LIMITS.min_steps, min(settings.max_steps, LIMITS.max_steps)),
                "guidance": Bound(LIMITS.min_guidance, LIMITS.max_guidance, integer=False),
                "transition_frames": Bound(LIMITS.min_transition_frames, LIMITS.max_transition_frames),
                "fps": Bound(LIMITS.min_fps, LIMITS.max_fps),
                "size": size,
                "width": size,
                "height": size,
            },
            max_frames=min(settings.max_frames, LIMITS.max_output_frames - 1),
            max_output_frames=LIMITS.max_output_frames,
            max_prompt_chars=min(settings.max_prompt_chars, LIMITS.max_prompt_chars),
            max_image_pixels=min(settings.max_image_pixels, LIMITS.max_image_pixels),
            min_image_side=LIMITS.min_image_side,
            max_subject_words=LIMITS.max_subject_words,
            max_video_seconds=settings.max_video_seconds,
            max_video_pixels=settings.max_video_pixels,
        )


def defaults() -> dict[str, Any]:
    """The value each optional parameter takes when a client leaves it out."""
    return {
        "steps": DEFAULTS.steps,
        "guidance": DEFAULTS.guidance,
        "transition_frames": DEFAULTS.transition_frames,
        "fps": DEFAULTS.fps,
        "size": DEFAULTS.size,
        "retarget": DEFAULTS.retarget,
        "parts": DEFAULTS.parts,
        "audio": True,
    }


def effective_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every optional knob set to the value the job runs with: left-out knobs take
    the engine's defaults, and ``width``/``height`` default to ``size``. Idempotent."""
    out = {**params}
    for name, value in defaults().items():
        if out.get(name) is None:
            out[name] = value
    for side in ("width", "height"):
        if out.get(side) is None:
            out[side] = out["size"]
    return out


def check_params(params: dict[str, Any], limits: ServiceLimits) -> dict[str, Any]:
    """The effective parameters, or ``InvalidInput(code="parameter_out_of_range")`` naming the first
    knob outside its bound (or ``prompt_too_long``/``subject_not_in_prompt``/... from the engine's
    rules, which the prompt and the subject words are checked with)."""
    check_prompt(params.get("prompt"), limits.max_prompt_chars)
    check_subject_words(params["prompt"], params.get("subject_words"))
    for name, bound in limits.params.items():
        value = params.get(name)
        if value is not None and not bound.admits(value):
            raise InvalidInput(
                f"{name} must be {bound.describe()}, got {echo(value)}", code="parameter_out_of_range"
            )
    return effective_params(params)
