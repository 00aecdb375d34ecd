"""The recovery sweeper: every API process runs ``jobs.recovery``'s sweeps for the app's lifetime.

It sends the queue message of jobs whose submitting API process died between creating the job and
sending it, and of running jobs whose worker vanished (job lock expired). The store hands each such
job to one sweeper only. Less often (half ``INTERRUPTED_SUBMISSION_S``, 2..60 s) it also applies the data lifecycle
(``jobs.deletion.sweep_storage``: inputs of finished jobs, outputs past ``OUTPUT_RETENTION_S``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from jobs.deletion import sweep_storage
from jobs.recovery import resend_orphaned, send_unsent

log = logging.getLogger(__name__)


async def sweep_forever(app: FastAPI) -> None:
    services = app.state.services
    settings = services.settings
    interval_s = min(max(min(settings.interrupted_submission_s, settings.lock_ttl_s) / 2, 0.2), 30.0)
    # A storage listing per pass: not every recovery tick (every 60 s by default, 2 s at least).
    retention_every_s = min(60.0, max(2.0, settings.interrupted_submission_s / 2))
    last_retention = 0.0
    while True:
        await asyncio.sleep(interval_s)
        if time.monotonic() - last_retention >= retention_every_s:
            last_retention = time.monotonic()
            try:  # the data lifecycle: inputs of finished jobs, expired or orphaned outputs
                await run_in_threadpool(sweep_storage, services.store, services.storage, settings)
            except Exception as exc:  # storage or Redis down: the next pass tries again
                log.warning("retention sweep failed", extra={"error": type(exc).__name__})
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
