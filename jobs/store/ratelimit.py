"""Per-key rate limits (GCRA in one Lua script) and the status poll's one-round-trip read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from jobs.store import scripts
from jobs.store.records import JobRecord, JobSnapshot


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float


class RateLimits:
    """Mixin of ``JobStore``: needs ``self.r``, ``self.p``, the key helpers and ``self._gcra``."""

    r: Any
    p: str
    _gcra: Any

    def job_key(self, job_id: str) -> str:
        raise NotImplementedError

    def deliveries_key(self, job_id: str) -> str:
        raise NotImplementedError

    @property
    def queue_key(self) -> str:
        raise NotImplementedError

    def rate_limit(self, bucket: str, owner: str, per_minute: int) -> RateDecision:
        """Allow ``per_minute`` calls per minute, in bursts of up to ``per_minute`` (GCRA)."""
        allowed, retry_ms = self._gcra(
            keys=[f"{self.p}:rl:{bucket}:{owner}"], args=[60000.0 / per_minute, per_minute]
        )
        return RateDecision(bool(int(allowed)), float(retry_ms) / 1000.0)

    def rate_limited_read(
        self, bucket: str, owner: str, per_minute: int, job_id: str | None
    ) -> tuple[RateDecision, JobSnapshot | None]:
        """``rate_limit`` and, in the same round trip, ``owner``'s job with what its view needs (queue
        position, webhook deliveries): the status poll's one pipeline instead of four commands.

        ``job_id=None`` applies the rate limit only. The snapshot is None unless ``owner`` owns the
        job (as ``get_owned``); whether the caller may see it is the caller's decision to enforce.
        """
        for attempt in (1, 2):
            pipe = self.r.pipeline(transaction=False)
            read = self._queue_rate_limited_read(pipe, bucket, owner, per_minute, job_id)
            try:
                return self._rate_limited_read_result(pipe.execute(), owner, read)
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.r.script_load(scripts.source("gcra"))  # Redis restarted or flushed its script cache
        raise AssertionError("unreachable")

    async def rate_limited_read_async(
        self, client: Any, bucket: str, owner: str, per_minute: int, job_id: str | None
    ) -> tuple[RateDecision, JobSnapshot | None]:
        """``rate_limited_read`` over a ``redis.asyncio`` client to the same Redis: the API's event
        loop awaits the round trip instead of handing it to a thread."""
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            read = self._queue_rate_limited_read(pipe, bucket, owner, per_minute, job_id)
            try:
                return self._rate_limited_read_result(await pipe.execute(), owner, read)
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                await client.script_load(scripts.source("gcra"))
        raise AssertionError("unreachable")

    def _queue_rate_limited_read(
        self, pipe: Any, bucket: str, owner: str, per_minute: int, job_id: str | None
    ) -> bool:
        # evalsha, not the Script object: a pipeline would check SCRIPT EXISTS on every execute.
        pipe.evalsha(
            scripts.sha("gcra"), 1, f"{self.p}:rl:{bucket}:{owner}", 60000.0 / per_minute, per_minute
        )
        if job_id is None or not job_id.startswith("anim_") or len(job_id) >= 64:
            return False
        pipe.hgetall(self.job_key(job_id))
        pipe.zrank(self.queue_key, job_id)
        pipe.lrange(self.deliveries_key(job_id), 0, -1)
        return True

    @staticmethod
    def _rate_limited_read_result(
        replies: list[Any], owner: str, read: bool
    ) -> tuple[RateDecision, JobSnapshot | None]:
        allowed, retry_ms = replies[0]
        decision = RateDecision(bool(int(allowed)), float(retry_ms) / 1000.0)
        if not read or not replies[1]:
            return decision, None
        record = JobRecord.from_hash(replies[1])
        if record.owner != owner:  # another key's job looks exactly like a missing one
            return decision, None
        rank = replies[2]
        return decision, JobSnapshot(
            record,
            queue_position=None if rank is None else int(rank) + 1,
            deliveries=[json.loads(x) for x in replies[3]],
        )
