"""Following a job: wait for it to finish (``Prefer: wait``) or stream its events (SSE).

Wakes on the job's Redis pub/sub channel and re-reads the record at least once a second, so a
missed message (pub/sub is fire-and-forget) costs at most a second.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from worker.store import JobRecord, JobStore

POLL_S = 1.0


async def follow(redis_url: str, store: JobStore, job_id: str, timeout_s: float) -> AsyncIterator[JobRecord]:
    """Yield the job record whenever it may have changed, until it is terminal, gone or time is up."""
    # Any: the installed redis stubs predate aclose().
    client: Any = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=3)
    pubsub: Any = client.pubsub()
    deadline = time.monotonic() + timeout_s
    try:
        await pubsub.subscribe(store.channel(job_id))  # subscribe first: no change slips between
        last: tuple[object, ...] | None = None
        while True:
            record = await run_in_threadpool(store.get, job_id)
            if record is None:
                return
            state = (record.status, record.stage, record.progress, record.cancel_requested)
            if state != last:
                last = state
                yield record
            remaining = deadline - time.monotonic()
            if record.status.is_terminal() or remaining <= 0:
                return
            await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(POLL_S, remaining))
            # drain a burst of progress messages: one re-read covers them all
            while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0) is not None:
                pass
    finally:
        await pubsub.aclose()
        await client.aclose()


async def wait_for_terminal(
    redis_url: str, store: JobStore, job_id: str, timeout_s: float
) -> JobRecord | None:
    last = None
    async for record in follow(redis_url, store, job_id, timeout_s):
        last = record
    return last
