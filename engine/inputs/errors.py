"""Exceptions the engine raises on purpose."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input (image, prompt, poses, settings), raised before any model call.

    ``code`` is a stable machine-readable reason (``engine.inputs.rules`` documents the codes it uses);
    ``message`` is the human-readable one (also ``str(exc)``).
    """

    def __init__(self, message: str, *, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AnimationCancelled(Exception):
    """``should_cancel()`` turned true; raised at the next step boundary."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"animation cancelled during {stage}")
        self.stage = stage


class NumericalError(RuntimeError):
    """A stage produced inf/NaN (an fp16 overflow, say): the job fails with ``code`` rather than
    returning black frames as a success."""

    code = "non_finite_values"

    def __init__(self, stage: str, what: str) -> None:
        super().__init__(
            f"{what} became non-finite (inf/NaN) during {stage}; try bfloat16 or float32, or fewer steps"
        )
        self.stage = stage
        self.message = str(self)
