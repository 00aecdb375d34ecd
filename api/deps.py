"""The API's shared services and its ``Annotated`` dependencies (auth, rate limit)."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError, retry_after
from api.metrics import ApiMetrics
from jobs.intake.policy import Intake
from jobs.intake.ssrf import Resolver, system_resolver
from jobs.queue import QueueClient
from jobs.services import JobServices
from jobs.settings import Settings
from jobs.storage import Storage
from jobs.store import JobRecord, JobStore, RateDecision, key_digest
from jobs.store.ids import owner_for_digest

log = logging.getLogger(__name__)

LOCAL_OWNER = "local"


def key_hashes(api_keys: list[str]) -> dict[str, str]:
    """sha256 hex of each configured key -> owner id. A ``sha256:<hex>`` entry is taken as already
    hashed, so operators can keep only hashes in the environment."""
    out = {}
    for key in api_keys:
        digest = key.removeprefix("sha256:").lower() if key.startswith("sha256:") else key_digest(key)
        out[digest] = owner_for_digest(digest)
    return out


@dataclass
class Services:
    """The API process's services: its one ``JobServices`` (settings, store, storage, queue, and
    where a job ends), plus what only HTTP needs."""

    jobs: JobServices
    metrics: ApiMetrics
    keys: dict[str, str]
    resolver: Resolver = system_resolver
    # A redis.asyncio client to the job store's Redis, open while the app is served (its lifespan):
    # the status poll awaits it on the event loop. None without the lifespan (a bare TestClient).
    aredis: Any = None

    @property
    def settings(self) -> Settings:
        return self.jobs.settings

    @property
    def store(self) -> JobStore:
        return self.jobs.store

    @property
    def storage(self) -> Storage:
        return self.jobs.storage

    @property
    def queue(self) -> QueueClient:
        return self.jobs.queue

    def owner_for(self, presented: str) -> str | None:
        digest = key_digest(presented)
        for known, owner in self.keys.items():
            if hmac.compare_digest(known, digest):
                return owner
        return None


async def get_services(request: Request) -> Services:
    # async: a plain function dependency would cost every request a threadpool round trip.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer <key>`.")


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def identify(services: Services, credentials: HTTPAuthorizationCredentials | None) -> str:
    """The caller's owner id (a hash of its key, never the key), or 401. No Redis: the caller must
    still apply the per-key rate limit (``authenticate`` does; so does the status read)."""
    if not services.settings.auth_enabled:
        return LOCAL_OWNER
    owner = services.owner_for(credentials.credentials) if credentials else None
    if owner is None:
        raise ApiError(
            "unauthorized",
            "a valid API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


def enforce_rate_limit(decision: RateDecision, what: str = "requests") -> None:
    """The one 429 ``rate_limited`` of the per-key limits (``what``: requests or submissions)."""
    if not decision.allowed:
        raise ApiError(
            "rate_limited",
            f"too many {what} for this API key",
            headers=retry_after(decision.retry_after_s),
        )


def authenticate(services: ServicesDep, credentials: BearerCredentials) -> str:
    """The caller's owner id (a hash of its key, never the key), after the per-key rate limit."""
    owner = identify(services, credentials)
    settings = services.settings
    enforce_rate_limit(services.store.rate_limit("req", owner, settings.rate_limit_requests_per_minute))
    return owner


Owner = Annotated[str, Depends(authenticate)]


async def limit_submissions(services: Services, owner: str) -> None:
    """The per-key submission rate limit (``POST /animations``, ``POST /poses``), or 429."""
    per_minute = services.settings.rate_limit_submissions_per_minute
    enforce_rate_limit(
        await run_in_threadpool(services.store.rate_limit, "submit", owner, per_minute), "submissions"
    )


async def get_intake(request: Request) -> Intake:
    """The process's intake (settings, limits, URL fetching), built once by ``create_app``."""
    intake: Intake = request.app.state.intake
    return intake


IntakeDep = Annotated[Intake, Depends(get_intake)]

JOB_ID_PATTERN = r"^anim_[0-9A-Z]{26}$"
JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, examples=["anim_01JD8X3K4M5N6P7Q8R9S0T1V2W"])]


def owned_job(job_id: JobId, services: ServicesDep, owner: Owner) -> JobRecord:
    record = services.store.get_owned(job_id, owner)
    if record is None:  # another key's job is indistinguishable from a missing one
        raise ApiError("not_found", "no such animation")
    return record


OwnedJob = Annotated[JobRecord, Depends(owned_job)]
