"""The job record: one Redis hash per job, and its (de)serialisation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from jobs.contract import JobStatus, Stage


@dataclass
class JobRecord:
    id: str
    owner: str
    status: JobStatus
    params: dict[str, Any]
    num_frames: int
    created_at: float
    stage: str | None = Stage.QUEUED.value
    progress: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    inputs: list[str] = field(default_factory=list)
    request_hash: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    unet_evals: dict[str, int] = field(default_factory=dict)
    memory_plan: dict[str, Any] | None = None  # jobs.contract.MemoryPlan, as the worker recorded it
    model_name: str | None = None
    worker: str | None = None  # host:pid of the process running the current attempt (ops only)
    random_weights: bool = False
    error_code: str | None = None
    error_message: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook_events: list[str] = field(default_factory=list)
    api: str | None = None  # "openai": submitted through /v1/videos (its webhooks take OpenAI's shape)
    remixed_from: str | None = None  # the job a /v1/videos remix was made from
    timeline: list[dict[str, Any]] | None = None  # a clip's jobs: each output frame's role and clip time
    notes: list[str] = field(default_factory=list)

    _JSON = (
        "params",
        "inputs",
        "timings",
        "unet_evals",
        "memory_plan",
        "outputs",
        "webhook_events",
        "timeline",
        "notes",
    )
    _FLOAT = ("progress", "created_at", "started_at", "finished_at", "updated_at")
    _INT = ("attempts", "num_frames")
    _BOOL = ("cancel_requested", "random_weights")

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            if name in self._JSON:
                out[name] = json.dumps(value, separators=(",", ":"))
            elif name in self._BOOL:
                out[name] = "1" if value else "0"
            else:
                out[name] = str(value.value if isinstance(value, JobStatus) else value)
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in data:
                continue
            raw = data[name]
            if name in cls._JSON:
                kwargs[name] = json.loads(raw)
            elif name in cls._FLOAT:
                kwargs[name] = float(raw)
            elif name in cls._INT:
                kwargs[name] = int(raw)
            elif name in cls._BOOL:
                kwargs[name] = raw == "1"
            elif name == "status":
                kwargs[name] = JobStatus(raw)
            else:
                kwargs[name] = raw
        return cls(**kwargs)


@dataclass(frozen=True)
class JobSnapshot:
    """A job record read together with its queue position and webhook delivery attempts."""

    record: JobRecord
    queue_position: int | None
    deliveries: list[dict[str, Any]]
