"""Following a job: wait for it to finish (``Prefer: wait``) or stream its events (SSE).

One Redis pub/sub connection per API process (``EventBroker``: a pattern subscription to every
job's events channel) fans the events out to all the streams and waits of that process, so a
thousand followers cost one Redis client, not a thousand. A follower registers its queue first,
then reads the record, so no change slips between the two. Every published event is passed on
(stage changes are always published); when the channel is quiet the record is re-read once a
second, so a lost message (pub/sub is fire-and-forget, e.g. across a Redis restart, while the
broker reconnects) costs at most a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import Owner, ServicesDep
from api.errors import ApiError, retry_after
from jobs.contract import ProgressEvent, Stage
from jobs.store import JobRecord, JobStore

log = logging.getLogger(__name__)

MAX_PREFER_WAIT_S = 60
_WAIT = re.compile(r"(?:^|[\s,;])wait=(\d+)")
POLL_S = 1.0
QUEUE_SIZE = 64
READY_WAIT_S = 2.0


def snapshot(record: JobRecord) -> ProgressEvent:
    stage = Stage(record.stage) if record.stage in {s.value for s in Stage} else None
    return ProgressEvent(id=record.id, status=record.status, stage=stage, progress=record.progress)


class EventBroker:
    """One PubSub connection (``PSUBSCRIBE {prefix}:events:*``) dispatching to per-channel queues."""

    def __init__(self, redis_url: str, pattern: str) -> None:
        self.redis_url, self.pattern = redis_url, pattern
        self.loop = asyncio.get_running_loop()
        self.queues: dict[str, set[asyncio.Queue[str]]] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def subscribe(self, channel: str) -> asyncio.Queue[str]:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="sse-broker")
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.queues.setdefault(channel, set()).add(queue)
        return queue

    def unsubscribe(self, channel: str, queue: asyncio.Queue[str]) -> None:
        followers = self.queues.get(channel)
        if followers is not None:
            followers.discard(queue)
            if not followers:
                del self.queues[channel]

    def _dispatch(self, channel: str, data: str) -> None:
        for queue in self.queues.get(channel, ()):
            if queue.full():  # a slow follower loses its oldest event, not the newest
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(data)

    async def _run(self) -> None:
        while True:
            # Any: the installed redis stubs predate aclose().
            client: Any = aioredis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_connect_timeout=3
            )
            pubsub: Any = client.pubsub()
            try:
                await pubsub.psubscribe(self.pattern)
                while True:
                    message = await pubsub.get_message(timeout=POLL_S)
                    if message is None:
                        continue
                    if message["type"] == "psubscribe":
                        self.ready.set()
                    elif message["type"] == "pmessage":
                        self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: followers poll the record meanwhile
                self.ready.clear()
                log.warning("event broker lost Redis; reconnecting", extra={"error": type(exc).__name__})
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                    await client.aclose()

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
            self.task = None


_brokers: dict[tuple[str, str], EventBroker] = {}


def broker_for(redis_url: str, store: JobStore) -> EventBroker:
    """The broker for this Redis and key prefix on the running event loop (one per API process;
    a broker of a loop that is gone, e.g. between test clients, is replaced)."""
    key = (redis_url, store.p)
    broker = _brokers.get(key)
    if broker is None or broker.loop is not asyncio.get_running_loop():
        broker = _brokers[key] = EventBroker(redis_url, store.channel("*"))
    return broker


async def close_brokers() -> None:
    """At shutdown (the app lifespan): close the brokers of this event loop."""
    loop = asyncio.get_running_loop()
    for key in [k for k, b in _brokers.items() if b.loop is loop]:
        await _brokers.pop(key).close()


# Concurrent streams per key, across API processes: leases in a sorted set (score: lease end), so a
# stream whose process died frees its slot when the lease ends.
_ACQUIRE_STREAM = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return 1
"""


def _streams_key(store: JobStore, owner: str) -> str:
    return f"{store.p}:owner:{owner}:streams"


def stream_slot(services: ServicesDep, owner: Owner) -> tuple[str, str]:
    """One of the key's ``MAX_STREAMS_PER_KEY`` stream slots, or ``429`` + ``Retry-After``; given back
    by ``follow`` when the stream ends (else by its lease: twice the hard time limit).
    A plain function: FastAPI runs it in a thread, one short Redis script."""
    settings, store = services.settings, services.store
    token = uuid.uuid4().hex
    lease_s = settings.hard_time_limit_s * 2 + 60
    key = _streams_key(store, owner)
    ok = store.r.eval(_ACQUIRE_STREAM, 1, key, time.time(), settings.max_streams_per_key, lease_s, token)
    if not int(ok):
        raise ApiError(
            "too_many_streams",
            f"this API key already follows {settings.max_streams_per_key} event streams",
            headers=retry_after(5),
        )
    return owner, token


StreamSlot = Annotated[tuple[str, str], Depends(stream_slot)]


async def follow(
    redis_url: str, store: JobStore, job_id: str, timeout_s: float, slot: tuple[str, str] | None = None
) -> AsyncIterator[ProgressEvent]:
    """Yield the job's events until one is terminal, the job is gone, or time is up; then give back
    ``slot`` (from ``stream_slot``)."""
    broker = broker_for(redis_url, store)
    channel = store.channel(job_id)
    queue = broker.subscribe(channel)
    deadline = time.monotonic() + timeout_s
    try:
        with contextlib.suppress(TimeoutError):  # not subscribed yet: the poll covers the gap
            await asyncio.wait_for(broker.ready.wait(), READY_WAIT_S)
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
            try:
                data = await asyncio.wait_for(queue.get(), min(POLL_S, remaining))
            except TimeoutError:
                continue
            try:
                pending = ProgressEvent.model_validate_json(data)
            except ValidationError:
                pending = None
    finally:
        broker.unsubscribe(channel, queue)
        if slot is not None:
            # Synchronous on purpose: a stream ended by the client's disconnect is cancelled, and
            # anyio cancels every await in this finally too. One short command; the lease is the backstop.
            with contextlib.suppress(Exception):
                store.r.zrem(_streams_key(store, slot[0]), slot[1])


async def wait_for_terminal(redis_url: str, store: JobStore, job_id: str, timeout_s: float) -> None:
    async for _ in follow(redis_url, store, job_id, timeout_s):
        pass


def prefer_wait(prefer: str | None) -> int:
    """Seconds asked for by ``Prefer: wait=N``, at most :data:`MAX_PREFER_WAIT_S` (0: none). Read
    before the job is created; no ``int()`` of thousands of digits (a ValueError that was a 500 after
    the job existed): a long number means the cap."""
    match = _WAIT.search(prefer or "")
    digits = match.group(1).lstrip("0") if match else ""
    return MAX_PREFER_WAIT_S if len(digits) > 4 else min(int(digits or "0"), MAX_PREFER_WAIT_S)
