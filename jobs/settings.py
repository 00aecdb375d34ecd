"""One settings object per process, read from ``POSEANIMATE_*`` environment variables (and ``.env``).

The variable names are part of the operator contract: docs, compose files and Kubernetes manifests
use them. ``.env.example`` lists every one with its default; keep the two in step.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.inputs.models import DEFAULT_BASE, DEFAULT_CONTROLNET


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the API and the workers. Field names map to ``POSEANIMATE_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="POSEANIMATE_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
    )

    # --- Deployment mode ---
    env: Literal["development", "production"] = Field(
        default="production",
        description="production refuses to start without a link-signing secret (local storage);"
        " development (make up, tests) generates one and shares it through Redis.",
    )

    # --- Redis (job store, rate limits, pub/sub) and the Celery broker ---
    redis_url: str = "redis://localhost:6379/0"
    broker_url: str | None = Field(default=None, description="Celery broker; defaults to redis_url.")
    key_prefix: str = Field(default="pa", description="Namespace of every Redis key this service writes.")

    # --- Storage ---
    storage_url: str = Field(
        default="file:.run/storage", description="s3://bucket/prefix, file:///abs or file:rel"
    )
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = Field(
        default=None, description="Endpoint put in presigned links, when clients reach S3 by another name."
    )
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] | None = None
    output_url_ttl_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    public_base_url: str | None = Field(
        default=None, description="Base of signed local-file links in webhooks."
    )
    link_signing_secret: SecretStr | None = Field(default=None, repr=False)
    keep_inputs: bool = Field(
        default=False, description="Keep a job's input files after it ends (default: deleted then)."
    )
    output_retention_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="Outputs are deleted this long after their job ended."
    )

    # --- Auth and quotas ---
    auth_enabled: bool = True
    # repr=False: a settings object in a log line or a traceback must not show the keys.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, repr=False)
    rate_limit_requests_per_minute: int = Field(default=600, ge=1)
    rate_limit_submissions_per_minute: int = Field(default=30, ge=1)
    max_active_jobs: int = Field(default=20, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_streams_per_key: int = Field(
        default=10, ge=1, description="Concurrent SSE streams / Prefer: wait requests per key (429 beyond)."
    )

    # --- Input limits ---
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=4096 * 4096, ge=64 * 64)
    max_pose_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # A driving video (POST /animations driving_video, POST /poses), upload or fetched URL; an
    # upload is also bound by max_body_bytes.
    max_video_bytes: int = Field(default=50 * 1000 * 1000, ge=1024)
    # Checked from the clip's header and packets at submission (engine.inputs.videoprobe), again while the
    # io worker decodes: 413 video_too_large (pixels per frame) / video_too_long (seconds).
    max_video_seconds: float = Field(default=120.0, gt=0, le=3600)
    max_video_pixels: int = Field(default=3840 * 2160, ge=64 * 64)
    max_frames: int = Field(default=64, ge=1, le=1024)
    max_prompt_chars: int = Field(default=500, ge=1)
    max_steps: int = Field(default=100, ge=1)
    max_size: int = Field(default=1024, ge=64)
    url_fetch_timeout_s: float = Field(default=10.0, gt=0)
    url_max_redirects: int = Field(default=3, ge=0)
    allow_private_urls: bool = Field(
        default=False, description="Tests/dev only: lets URLs reach loopback/LAN."
    )

    # --- Webhooks ---
    webhook_secret: SecretStr | None = None
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_backoff_base_s: float = Field(default=2.0, ge=0)
    webhook_backoff_max_s: float = Field(default=900.0, ge=0)

    # --- Jobs and workers ---
    job_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)
    interrupted_submission_s: float = Field(
        default=120.0,
        gt=0,
        description="A submission unfinished after this long died with its API process: the API's sweeper"
        " sends its job's queue message; its quota slot and Idempotency-Key are freed.",
    )
    storage_retry_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a job waits out unavailable object storage (reading inputs, uploading"
        " outputs) before failing as storage_unavailable.",
    )
    max_attempts: int = Field(default=3, ge=1)
    soft_time_limit_s: int = Field(default=3300, ge=1)
    hard_time_limit_s: int = Field(default=3600, ge=2)
    visibility_timeout_s: int = Field(default=4 * 3600, ge=60)
    lock_ttl_s: float = Field(default=30.0, ge=1)
    progress_interval_s: float = Field(default=0.5, ge=0)
    cancel_poll_interval_s: float = Field(default=0.25, ge=0)
    worker_metrics_port: int = Field(default=9101, ge=0, le=65535)
    worker_metrics_host: str = Field(
        default="127.0.0.1", description="Address the worker's /metrics listens on (0.0.0.0 in containers)."
    )
    worker_tmp_dir: Path | None = None
    worker_gpu_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="Memory of the workers' GPUs (GB, as cards are sold): the API refuses a job the memory"
        " plan predicts no such card can run (413 job_too_large_for_workers); unset: no check.",
    )
    # Per-key fairness of driving-video extractions on io (jobs.fairness; issue 24, M1).
    extraction_slots_per_key: int = Field(
        default=1,
        ge=1,
        description="Extractions (POST /poses, driving-video jobs) of one API key running at once across"
        " every io worker; the key's others wait in line (FIFO) while other keys' run.",
    )
    extraction_slot_ttl_s: float = Field(
        default=60.0,
        ge=5,
        description="Lease of a running extraction's slot, renewed while it runs: a killed worker's slot"
        " frees after this long.",
    )
    extraction_defer_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="An extraction whose key has no free slot is retried after this long (its thread freed).",
    )

    # --- Model ---
    animator: Literal["engine", "noop"] = Field(
        default="engine", description="'noop' paints solid frames with no model: for tests and load tests."
    )
    model: str = Field(default=DEFAULT_BASE, description="Hub id, local pipeline dir, or 'tiny'.")
    controlnet: str = DEFAULT_CONTROLNET
    device: Literal["auto", "cuda", "cpu"] = "auto"
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    cpu_allocator_tuning: bool = Field(
        default=True,
        description="On a CPU device, tune glibc's malloc for large tensors (engine.weights.runtime; 1.31x "
        "on the full-size job, bench/allocator.py).",
    )
    model_cache_dir: Path = Path.home() / ".cache" / "poseanimate"
    noop_step_seconds: float = Field(default=0.02, ge=0)
    inversion_cache: Literal["off", "memory", "storage"] = Field(
        default="memory",
        description="Reuse of an avatar's source inversion across jobs: per worker process, or shared "
        "through object storage (cache/inversions/, ~10 MB each: give it a lifecycle rule).",
    )
    inversion_cache_entries: int = Field(
        default=16, ge=1, description="In-memory entries per worker process."
    )
    preload_model: bool = Field(
        default=False,
        description="Load the model when a job process starts (set by `poseanimate worker` for gpu).",
    )

    # --- Logging ---
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("model_cache_dir", "worker_tmp_dir")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str) -> str:
        if not value.startswith(("s3://", "file:")):
            raise ValueError("storage_url must be s3://bucket/prefix or file:///dir")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if (
            value is not None
            and value.get_secret_value()
            and not value.get_secret_value().startswith("whsec_")
        ):
            raise ValueError("webhook_secret must look like whsec_<base64>")
        return value or None

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.soft_time_limit_s >= self.hard_time_limit_s:
            raise ValueError("soft_time_limit_s must be below hard_time_limit_s")
        # Redis redelivers an unacknowledged message after the visibility timeout (celery#5935):
        # it must outlast the longest job and the longest webhook retry delay.
        longest = max(self.hard_time_limit_s, self.webhook_backoff_max_s)
        if self.visibility_timeout_s < longest + 60:
            raise ValueError("visibility_timeout_s must exceed hard_time_limit_s by at least a minute")
        if self.max_body_bytes < self.max_image_bytes:
            raise ValueError("max_body_bytes must be at least max_image_bytes")
        link, webhook = self.link_signing_secret, self.webhook_secret
        if link is not None and webhook is not None and link.get_secret_value() == webhook.get_secret_value():
            raise ValueError("link_signing_secret must not be the webhook secret (receivers hold that one)")
        return self

    @property
    def celery_broker_url(self) -> str:
        return self.broker_url or self.redis_url


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
