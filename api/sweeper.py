"""The recovery sweeper: every API process runs ``jobs.recovery``'s sweeps for the app's lifetime.

It sends the queue message of jobs whose submitting API process died between creating the job and
sending it, and of running jobs whose worker vanished (job lock expired). The store hands each such
job to one sweeper only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from jobs.recovery import resend_orphaned, send_unsent

log = logging.getLogger(__name__)


async def sweep_forever(app: FastAPI) -> None:
    services = app.state.services
    settings = services.settings
    interval_s = min(max(min(settings.interrupted_submission_s, settings.lock_ttl_s) / 2, 0.2), 30.0)
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(
                send_unsent, services.store, services.queue, older_than_s=settings.interrupted_submission_s
            )
            await run_in_threadpool(
                resend_orphaned, services.store, services.queue, lock_ttl_s=settings.lock_ttl_s
            )
        except Exception as exc:  # Redis down: the next sweep tries again
            log.warning("recovery sweep failed", extra={"error": type(exc).__name__})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = asyncio.create_task(sweep_forever(app), name="outbox-sweeper")
    try:
        yield
    finally:
        task.cancel()
