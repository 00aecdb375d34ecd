"""The one refusal type, the table of refusal codes, and the engine's other deliberate exceptions.

Every exception raised to refuse input (a rule of the engine, a pose, a video, an image, a URL, an
HTTP request) is a :class:`Refusal`: a stable machine-readable ``code``, a human-readable
``message`` (also ``str(exc)``) and the HTTP ``status`` that code answers with. The status is never
chosen where a refusal is raised: each code is declared once, with its status, in a code table
(:func:`declare_codes`), and :func:`status_of` reads it. The tables are declared next to the refusals
they name: the engine's input rules here (:data:`INPUT_CODES`), the pose format's and the video
probe's in their modules, the job intake's in the ``jobs.intake`` modules, the HTTP layer's in
``api.errors``; declaring a code a second time is an error at import.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from types import MappingProxyType

ECHO_MAX_CHARS = 80
"""A refusal message shows at most this much of a value the user sent (:func:`echo`)."""


def echo(value: object, limit: int = ECHO_MAX_CHARS) -> str:
    """``value`` (user-provided) as a refusal message may show it: its ``repr`` (quotes, control and
    other unprintable characters escaped: no terminal escapes, NULs or line breaks reach a log or a
    screen), cut to about ``limit`` characters, with the full length when a string was cut. A refusal
    never echoes a user's text any other way (issue 24: some echoed it whole, raw)."""
    if isinstance(value, str):
        shown = repr(value[:limit])
        return shown if len(value) <= limit else f"{shown}... ({len(value)} characters)"
    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother, short.maxlong = 2, limit, limit, 40
    short.maxlist = short.maxtuple = short.maxdict = short.maxset = 4
    shown = short.repr(value)
    return shown if len(shown) <= limit else shown[:limit] + "..."


DEFAULT_STATUS = 422
"""A code no table declares (never one of ours: ``tests/api/test_refusal_codes.py`` checks)."""

_STATUS: dict[str, int] = {}
_DECLARED_BY: dict[str, str] = {}
CODES: Mapping[str, int] = MappingProxyType(_STATUS)
"""Every declared code -> its HTTP status (read-only view of the registry)."""


def declare_codes(table: Mapping[str, int], *, owner: str) -> Mapping[str, int]:
    """Declare ``table`` (code -> HTTP status) as ``owner``'s codes; returns it. A code declared by
    another owner already is a ``ValueError`` at import, so each code has exactly one status."""
    for code, status in table.items():
        if _DECLARED_BY.get(code, owner) != owner:
            raise ValueError(f"refusal code {code!r} is declared twice: by {_DECLARED_BY[code]} and {owner}")
        if not 400 <= status <= 599:
            raise ValueError(f"refusal code {code!r}: {status} is not an HTTP error status")
        _STATUS[code], _DECLARED_BY[code] = status, owner
    return MappingProxyType(dict(table))


def status_of(code: str) -> int:
    """The HTTP status of ``code`` (:data:`DEFAULT_STATUS` for one no table declares)."""
    return _STATUS.get(code, DEFAULT_STATUS)


def declared_by(code: str) -> str | None:
    """Which table declared ``code`` (None: none)."""
    return _DECLARED_BY.get(code)


class Refusal(ValueError):
    """A refused input: ``code`` (stable, declared in a code table), ``message`` (``str(exc)``) and
    ``status`` (the code's HTTP status, from the table). Subclasses name where the refusal comes from."""

    code: str = "invalid_input"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return status_of(self.code)


class CodedRefusal(Refusal):
    """A refusal built code first, ``Cls(code, message)`` (the pose format's, the intake's)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class InvalidInput(Refusal):
    """Bad input (image, prompt, poses, settings), raised before any model call.

    ``code`` is a stable machine-readable reason (``engine.inputs.rules`` documents the codes it uses);
    ``message`` is the human-readable one (also ``str(exc)``).
    """


INPUT_CODES = declare_codes(
    {
        "invalid_input": 422,
        "image_too_small": 422,
        "image_too_many_pixels": 413,
        "mask_empty": 422,
        "prompt_blank": 422,
        "prompt_too_long": 422,
        "subject_not_in_prompt": 422,
        "parameter_out_of_range": 422,
        "too_many_frames": 422,
    },
    owner="engine.inputs.errors",
)
"""The engine's input rules (``engine.inputs.rules``); the pose codes are the pose format's."""


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
