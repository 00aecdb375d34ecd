"""The outbox sweeper: sends the queue message of jobs whose submitting API process died.

A submission writes the job record and then sends its Celery message; a process killed between the
two leaves a queued job that no worker will ever receive (and that holds a quota slot). Every API
process runs this loop for the app's lifetime; the store leases each stranded job to one sweeper.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from worker.intake import send_unsent

log = logging.getLogger(__name__)


async def sweep_forever(app: FastAPI) -> None:
    services = app.state.services
    older_than_s = services.settings.interrupted_submission_s
    interval_s = min(max(older_than_s / 2, 0.2), 30.0)
    while True:
        await asyncio.sleep(interval_s)
        try:
            await run_in_threadpool(send_unsent, services.store, services.queue, older_than_s=older_than_s)
        except Exception as exc:  # Redis down: the next sweep tries again
            log.warning("outbox sweep failed", extra={"error": type(exc).__name__})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = asyncio.create_task(sweep_forever(app), name="outbox-sweeper")
    try:
        yield
    finally:
        task.cancel()
