"""Builds the FastAPI app: services, error handlers, middleware, routers.

``uvicorn api.main:app`` works (the app is built on first access, from the environment);
``poseanimate serve`` uses ``create_app`` as a factory.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.deps import Services, key_hashes
from api.errors import install_error_handlers
from api.metrics import ApiMetrics
from api.middleware import RequestContextMiddleware
from api.openai_compat import install_openai_errors
from api.openapi import install_openapi, served_model
from api.routes import animations, deletion, files, playground, poses, system, videos_v1
from api.sweeper import lifespan as sweeper_lifespan
from api.waiting import close_brokers
from jobs.intake.policy import Intake
from jobs.intake.ssrf import Resolver, system_resolver
from jobs.queue import QueueClient, create_celery
from jobs.services import JobServices, not_counted
from jobs.settings import Settings, get_settings
from jobs.store import async_redis

log = logging.getLogger(__name__)

DESCRIPTION = """
Animate a character image along a pose sequence (PoseAnimate, IJCAI 2024).

Submit with `POST /animations`, then poll `GET /animations/{id}`, follow `GET /animations/{id}/events`
(Server-Sent Events) or receive a signed webhook. Outputs are an H.264 MP4 and a PNG poster behind
expiring links. Errors are `application/problem+json` with a stable `code`.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """While served: the recovery sweeper, and the asyncio Redis client of the status poll (bound to
    this event loop, closed at shutdown)."""
    services: Services = app.state.services
    services.aredis = async_redis(services.settings.redis_url)
    try:
        async with sweeper_lifespan(app):
            yield
    finally:
        client, services.aredis = services.aredis, None
        await client.aclose()
        await close_brokers()


def create_app(settings: Settings | None = None, *, resolver: Resolver = system_resolver) -> FastAPI:
    settings = settings or get_settings()
    # Redis down at start: local links fall back to a per-process key (a production deployment
    # without a link-signing secret still refuses to start).
    jobs = JobServices.build(
        settings, QueueClient(create_celery(settings)), not_counted, local_key_fallback=True
    )
    metrics = ApiMetrics(jobs.store, jobs.queue)
    if settings.auth_enabled and not settings.api_keys:
        log.warning("auth is on but POSEANIMATE_API_KEYS is empty: every request will be refused")

    app = FastAPI(
        title="PoseAnimate",
        docs_url=None,  # /docs comes from api.routes.playground, with vendored (offline) assets
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[
            {"name": "animations", "description": "Submit and follow animation jobs"},
            {"name": "files", "description": "Signed links (local storage backend)"},
            {"name": "system", "description": "Health, readiness, metrics"},
            {"name": "openai", "description": "OpenAI-compatible video API (`/v1/videos`): the same jobs"},
        ],
    )
    app.state.services = Services(
        jobs=jobs,
        metrics=metrics,
        keys=key_hashes(settings.api_keys),
        resolver=resolver,
    )
    app.state.intake = intake = Intake.from_settings(settings, resolver)  # limits built once
    install_error_handlers(app)
    install_openai_errors(app)  # on /v1 only: OpenAI's error shape
    app.include_router(animations.router)
    app.include_router(poses.router)
    app.include_router(deletion.router)
    app.include_router(files.router)
    app.include_router(system.router)
    app.include_router(playground.router)
    app.include_router(videos_v1.router)  # OpenAI-compatible /v1/videos, /v1/models
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Prefer"],
        )
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    install_openapi(app, intake.limits, served_model(settings))
    return app


def create_served_app() -> FastAPI:
    """The app as ``poseanimate serve`` runs it: built, then its start-up heap (modules, routes,
    schemas: ~100k objects) frozen out of the garbage collector's reach. Otherwise every full
    collection walks all of them and stops the event loop for ~40 ms, several times a minute under
    load: the status poll's p99. Objects created later are collected as usual."""
    app = create_app()
    gc.collect()
    gc.freeze()
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # `uvicorn api.main:app`: build the app on first access, not at import.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
