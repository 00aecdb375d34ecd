"""Typed results of store operations (the strings the Lua scripts return, as enums)."""

from __future__ import annotations

from enum import StrEnum


class TransitionOutcome(StrEnum):
    """``JobStore.transition``: applied, refused by the state machine, or no such job."""

    OK = "ok"
    REFUSED = "refused"
    MISSING = "missing"


class StartOutcome(StrEnum):
    """``JobStore.start_attempt``."""

    STARTED = "started"
    FINISHED = "finished"  # terminal already: never run again
    CANCEL = "cancel"  # a cancel was requested while it waited
    EXHAUSTED = "exhausted"  # the attempt cap is reached (its workers kept dying)
    MISSING = "missing"


class CancelOutcome(StrEnum):
    """``JobStore.request_cancel``."""

    CANCELED = "canceled"  # was queued: canceled now, never reaches a GPU
    REQUESTED = "requested"  # running: the worker stops it between engine steps
    TERMINAL = "terminal"  # already finished
    MISSING = "missing"
