"""Exceptions the engine raises on purpose."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input (image, prompt, poses, settings), raised before any model call."""


class AnimationCancelled(Exception):
    """``should_cancel()`` turned true; raised at the next step boundary."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"animation cancelled during {stage}")
        self.stage = stage
