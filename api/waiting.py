"""Following a job: wait for it to finish (``Prefer: wait``) or stream its events (SSE).

Subscribes to the job's Redis pub/sub channel first, then reads the record, so no change slips
between the two. Every published event is passed on (stage changes are always published); when the
channel is quiet the record is re-read once a second, so a lost message (pub/sub is
fire-and-forget, e.g. across a Redis restart) costs at most a second.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from jobs.contract import ProgressEvent, Stage
from jobs.store import JobRecord, JobStore

POLL_S = 1.0


def snapshot(record: JobRecord) -> ProgressEvent:
    stage = Stage(record.stage) if record.stage in {s.value for s in Stage} else None
    return ProgressEvent(id=record.id, status=record.status, stage=stage, progress=record.progress)


async def follow(
    redis_url: str, store: JobStore, job_id: str, timeout_s: float
) -> AsyncIterator[ProgressEvent]:
    """Yield the job's events until one is terminal, the job is gone, or time is up."""
    # Any: the installed redis stubs predate aclose().
    client: Any = aioredis.Redis.from_url(redis_url, decode_responses=True, socket_connect_timeout=3)
    pubsub: Any = client.pubsub()
    deadline = time.monotonic() + timeout_s
    try:
        await pubsub.subscribe(store.channel(job_id))
        last: ProgressEvent | None = None
        pending: ProgressEvent | None = None
        while True:
            if pending is None:
                record = await run_in_threadpool(store.get, job_id)
                if record is None:
                    return
                pending = snapshot(record)
            if pending != last:
                last = pending
                yield pending
            if pending.status.is_terminal():
                return
            pending = None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=min(POLL_S, remaining))
            if message is not None:
                try:
                    pending = ProgressEvent.model_validate_json(message["data"])
                except ValidationError:
                    pending = None
    finally:
        await pubsub.aclose()
        await client.aclose()


async def wait_for_terminal(redis_url: str, store: JobStore, job_id: str, timeout_s: float) -> None:
    async for _ in follow(redis_url, store, job_id, timeout_s):
        pass
