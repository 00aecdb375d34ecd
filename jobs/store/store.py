"""``JobStore``: keys, reads and the job's transitions; the other concepts are mixed in."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import redis

from jobs.contract import ErrorCode, JobStatus, ProgressEvent, Stage
from jobs.lifecycle import overall_progress, sources_of
from jobs.store import scripts
from jobs.store.locks import JobLocks
from jobs.store.outcomes import CancelOutcome, StartOutcome, TransitionOutcome
from jobs.store.ratelimit import RateLimits
from jobs.store.records import JobRecord
from jobs.store.submissions import Submissions

CLIENT_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": 5,
    "socket_connect_timeout": 3,
    "health_check_interval": 30,
}


def async_redis(url: str) -> Any:
    """A ``redis.asyncio`` client with the job store's options (for ``rate_limited_read_async``).
    It belongs to the event loop that first uses it."""
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, **CLIENT_OPTIONS)


@dataclass(frozen=True)
class StartResult:
    outcome: StartOutcome
    attempts: int = 0
    status: str = ""


class JobStore(JobLocks, RateLimits, Submissions):
    """All job-record reads and writes, for the API and the workers alike."""

    def __init__(
        self, client: redis.Redis[str], prefix: str = "pa", *, job_ttl_s: int = 7 * 24 * 3600
    ) -> None:
        # Any: the redis stubs type replies as bytes, but this client decodes them to str.
        self.r: Any = client
        self.p = prefix
        self.job_ttl_s = job_ttl_s
        self._transition = client.register_script(scripts.source("transition"))
        self._start = client.register_script(scripts.source("start_attempt"))
        self._cancel = client.register_script(scripts.source("cancel"))
        self._reserve = client.register_script(scripts.source("reserve_slot"))
        self._lock_refresh = client.register_script(scripts.source("lock_refresh"))
        self._lock_release = client.register_script(scripts.source("lock_release"))
        self._gcra = client.register_script(scripts.source("gcra"))
        self._claim_unsent = client.register_script(scripts.source("claim_unsent"))
        self._claim_idempotency = client.register_script(scripts.source("claim_idempotency"))
        self._claim_orphaned = client.register_script(scripts.source("claim_orphaned"))

    @classmethod
    def from_url(cls, url: str, prefix: str = "pa", **kwargs: Any) -> JobStore:
        client = redis.Redis.from_url(url, **CLIENT_OPTIONS)
        return cls(client, prefix, **kwargs)

    def job_key(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}"

    def deliveries_key(self, job_id: str) -> str:
        return f"{self.p}:job:{job_id}:webhooks"

    def index_key(self, owner: str) -> str:
        return f"{self.p}:owner:{owner}:jobs"

    def active_key(self, owner: str) -> str:
        return f"{self.p}:owner:{owner}:active"

    @property
    def queue_key(self) -> str:
        return f"{self.p}:queue"

    @property
    def unsent_key(self) -> str:
        return f"{self.p}:unsent"

    @property
    def running_key(self) -> str:
        return f"{self.p}:running"

    def lock_key(self, job_id: str) -> str:
        return f"{self.p}:lock:{job_id}"

    def channel(self, job_id: str) -> str:
        return f"{self.p}:events:{job_id}"

    def ping(self) -> bool:
        return bool(self.r.ping())

    def create(self, record: JobRecord) -> None:
        """Write a new queued job, index it under its owner and put it in the queue order.

        The job also enters the outbox until ``mark_sent``: if the process dies before its queue
        message is sent, ``claim_unsent`` hands it to a sweeper, so no created job waits forever.
        """
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.job_key(record.id), mapping=record.to_hash())
        pipe.zadd(self.index_key(record.owner), {record.id: 0})
        pipe.zadd(self.queue_key, {record.id: record.created_at})
        pipe.zadd(self.unsent_key, {record.id: record.created_at})
        pipe.execute()

    def get(self, job_id: str) -> JobRecord | None:
        data = self.r.hgetall(self.job_key(job_id))
        return JobRecord.from_hash(data) if data else None  # type: ignore[arg-type]

    def get_owned(self, job_id: str, owner: str) -> JobRecord | None:
        """The job if ``owner`` owns it; another key's job looks exactly like a missing one."""
        record = self.get(job_id) if job_id.startswith("anim_") and len(job_id) < 64 else None
        return record if record is not None and record.owner == owner else None

    def list_owned(
        self, owner: str, limit: int, cursor: str | None = None, status: JobStatus | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first, ``limit`` per page (only jobs in ``status`` when given); the cursor is the
        last id of the previous page."""
        start = f"({cursor}" if cursor else "+"
        records: list[JobRecord] = []
        while len(records) < limit:
            ids = self.r.zrange(self.index_key(owner), start, "-", bylex=True, desc=True, offset=0, num=limit)
            if not ids:
                return records, None
            stale = []
            for job_id in ids:  # type: ignore[union-attr]
                record = self.get(job_id)
                if record is None:
                    stale.append(job_id)  # expired by TTL: drop it from the index lazily
                    continue
                if status is not None and record.status is not status:
                    continue
                records.append(record)
                if len(records) == limit:
                    break
            if stale:
                self.r.zrem(self.index_key(owner), *stale)
            start = f"({ids[-1]}"  # type: ignore[index]
        more = bool(
            self.r.zrange(
                self.index_key(owner), f"({records[-1].id}", "-", bylex=True, desc=True, offset=0, num=1
            )
        )
        return records, (records[-1].id if more else None)

    def queue_position(self, job_id: str) -> int | None:
        rank = self.r.zrank(self.queue_key, job_id)
        return None if rank is None else int(rank) + 1  # type: ignore[arg-type]

    def queue_depth(self) -> int:
        return int(self.r.zcard(self.queue_key))  # type: ignore[arg-type]

    def running_count(self) -> int:
        """Running jobs whose job lock is alive: O(running jobs), never a keyspace scan."""
        ids = self.r.zrange(self.running_key, 0, -1)
        if not ids:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:  # type: ignore[union-attr]
            pipe.exists(self.lock_key(job_id))
        return sum(int(alive) for alive in pipe.execute())

    def oldest_queued_age(self, now: float) -> float:
        """Seconds the oldest queued job has waited (0 when the queue is empty)."""
        oldest = self.r.zrange(self.queue_key, 0, 0, withscores=True)
        return max(0.0, now - float(oldest[0][1])) if oldest else 0.0  # type: ignore[index]

    def is_cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.hget(self.job_key(job_id), "cancel_requested") == "1")

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.deliveries_key(job_id), 0, -1)]  # type: ignore[union-attr]

    def transition(
        self, job_id: str, to: JobStatus, *, cancel_wins: bool = False, **fields: Any
    ) -> tuple[TransitionOutcome, str]:
        """Move the job to ``to`` if the state machine allows it from its current status.

        Returns ``("ok", new_status)``, ``("refused", current)`` or ``("missing", "")``. With
        ``cancel_wins`` a pending cancel request turns the target into ``canceled``.
        """
        record = self.get(job_id)
        owner = record.owner if record else "-"
        args: list[Any] = [
            job_id,
            to.value,
            ",".join(sorted(s.value for s in sources_of(to))),
            time.time(),
            self.job_ttl_s,
            "1" if cancel_wins else "0",
        ]
        for name, value in fields.items():
            args += [
                name,
                json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value),
            ]
        outcome, status = self._transition(
            keys=[
                self.job_key(job_id),
                self.queue_key,
                self.active_key(owner),
                self.deliveries_key(job_id),
                self.running_key,
            ],
            args=args,
        )
        result = TransitionOutcome(outcome)
        if result is TransitionOutcome.OK:
            self.publish(job_id)
        return result, str(status)

    def start_attempt(
        self, job_id: str, max_attempts: int, model_name: str, random_weights: bool, worker: str = ""
    ) -> StartResult:
        outcome, value = self._start(
            keys=[self.job_key(job_id), self.queue_key, self.running_key],
            # A run starts where the loading stage starts (0.03: after extracting_poses), never at 0
            # (a driving-video job's progress went 0.03 -> 0.0: issue 24's walk), nor below where an
            # earlier attempt got.
            args=[
                job_id,
                time.time(),
                max_attempts,
                model_name,
                "1" if random_weights else "0",
                worker,
                overall_progress(Stage.LOADING.value, 0.0),
            ],
        )
        result = StartOutcome(outcome)
        if result is StartOutcome.STARTED:
            self.publish(job_id)
        if result in (StartOutcome.STARTED, StartOutcome.EXHAUSTED):
            return StartResult(result, attempts=int(value))
        return StartResult(result, status=str(value))

    def request_cancel(self, job_id: str) -> CancelOutcome:
        """``canceled`` (was queued: now terminal), ``requested`` (running: the worker stops it), ``terminal``."""
        record = self.get(job_id)
        if record is None:
            return CancelOutcome.MISSING
        outcome = self._cancel(
            keys=[self.job_key(job_id), self.queue_key, self.active_key(record.owner)],
            args=[job_id, time.time(), self.job_ttl_s],
        )
        self.publish(job_id)
        return CancelOutcome(outcome)

    def fail(self, job_id: str, code: ErrorCode | str, message: str) -> tuple[TransitionOutcome, str]:
        return self.transition(
            job_id,
            JobStatus.FAILED,
            error_code=str(code),
            error_message=message[:500],
        )

    def update_progress(
        self, job_id: str, stage: str, progress: float, timings: dict[str, float] | None = None
    ) -> None:
        mapping: dict[str, Any] = {"stage": stage, "progress": progress, "updated_at": time.time()}
        if timings is not None:
            mapping["timings"] = json.dumps(timings)
        # Only while running: a late progress write must not resurrect a finished job's hash.
        if self.r.hget(self.job_key(job_id), "status") == JobStatus.RUNNING.value:
            self.r.hset(self.job_key(job_id), mapping=mapping)
            self.publish(
                job_id,
                ProgressEvent(id=job_id, status=JobStatus.RUNNING, stage=Stage(stage), progress=progress),
            )

    def update_queued(self, job_id: str, **fields: Any) -> bool:
        """Write ``fields`` (stage, progress, num_frames, inputs, ...) of a job that is still queued,
        e.g. while an io worker extracts its poses; False (nothing written) once it is not. Publishes
        the job's progress event."""
        key = self.job_key(job_id)
        mapping = {
            name: json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)
            for name, value in fields.items()
        }
        with self.r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(key)  # a cancel landing between the check and the write aborts the write
                if pipe.hget(key, "status") != JobStatus.QUEUED.value:
                    return False
                pipe.multi()
                pipe.hset(key, mapping={**mapping, "updated_at": time.time()})
                pipe.execute()
            except redis.exceptions.WatchError:
                return False
        self.publish(job_id)
        return True

    def publish(self, job_id: str, event: ProgressEvent | None = None) -> None:
        if event is None:
            record = self.get(job_id)
            if record is None:
                return
            stage = Stage(record.stage) if record.stage in {s.value for s in Stage} else None
            event = ProgressEvent(id=job_id, status=record.status, stage=stage, progress=record.progress)
        self.r.publish(self.channel(job_id), event.model_dump_json())

    def record_delivery(self, job_id: str, attempt: dict[str, Any]) -> None:
        key = self.deliveries_key(job_id)
        pipe = self.r.pipeline()
        pipe.rpush(key, json.dumps(attempt, separators=(",", ":")))
        pipe.ltrim(key, -200, -1)
        pipe.pttl(self.job_key(job_id))
        _, _, ttl_ms = pipe.execute()
        if ttl_ms and int(ttl_ms) > 0:
            self.r.pexpire(key, int(ttl_ms))
