"""The job state machine: which status may follow which.

::

    queued ──▶ running ──▶ succeeded
      │  │       │  ▲ └───▶ failed
      │  │       └──┘ (a redelivered copy re-runs a job whose worker died; attempts + 1)
      │  └────────────────▶ failed (attempt cap, queue unavailable)
      └───────▶ canceled ◀── running (cooperative: cancel_requested, seen between engine steps)

Terminal statuses (succeeded, failed, canceled) have no way out: a finished job is never run again.
The Redis scripts in ``jobs.store`` apply a transition only when the current status is one this
table allows, so two racing writers (a worker finishing, the API canceling) cannot both win.
"""

from __future__ import annotations

from jobs.contract import JobStatus

S = JobStatus

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELED, S.FAILED}),
    S.RUNNING: frozenset({S.RUNNING, S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}


def can_transition(current: JobStatus, to: JobStatus) -> bool:
    return to in TRANSITIONS[current]


def sources_of(to: JobStatus) -> frozenset[JobStatus]:
    """Statuses from which ``to`` may be entered."""
    return frozenset(s for s, targets in TRANSITIONS.items() if to in targets)


# Share of the overall progress bar per stage (the engine reports a 0..1 fraction within each).
# A job given poses skips extracting_poses (so it starts at 0.03); one given a driving video runs it
# on an io worker while still queued.
STAGE_WEIGHTS: dict[str, float] = {
    "extracting_poses": 0.03,
    "loading": 0.02,
    "inverting": 0.13,
    "optimizing": 0.32,
    "sampling": 0.40,
    "encoding": 0.05,
    "uploading": 0.05,
}
_ORDER = list(STAGE_WEIGHTS)


def overall_progress(stage: str, fraction: float) -> float:
    """Map (stage, fraction within stage) to one monotone 0..1 number."""
    if stage not in STAGE_WEIGHTS:
        return 0.0
    done = sum(STAGE_WEIGHTS[s] for s in _ORDER[: _ORDER.index(stage)])
    fraction = min(max(fraction, 0.0), 1.0)
    return round(min(done + STAGE_WEIGHTS[stage] * fraction, 1.0), 4)
