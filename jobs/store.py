"""The job store: Redis is the source of truth for every job, written by the API, updated by workers.

Redis keys (``{p}`` = ``POSEANIMATE_KEY_PREFIX``, default ``pa``):

=================================  ======  ==============================================================
``{p}:job:{id}``                   hash    the job record (fields: ``JobRecord``); TTL set when terminal
``{p}:job:{id}:webhooks``          list    webhook delivery attempts (JSON), same TTL as the job
``{p}:owner:{owner}:jobs``         zset    per-key index, score 0, members = time-sortable ids (lex paging)
``{p}:owner:{owner}:active``       zset    the key's queued+running jobs (score = reserve time): quota
``{p}:queue``                      zset    queued jobs by enqueue time: ``queue_position`` = rank + 1
``{p}:unsent``                     zset    created jobs whose queue message is not confirmed sent (outbox)
``{p}:running``                    zset    running jobs, checked for a live job lock (score: next check)
``{p}:lock:{id}``                  string  job lock (``SET NX PX``, token, heartbeat-refreshed)
``{p}:idem:{owner}:{sha256(key)}`` string  Idempotency-Key -> ``{"job_id", "hash", "at"}``, TTL 24 h
``{p}:rl:{bucket}:{owner}``        string  GCRA rate-limit state (theoretical arrival time, ms)
``{p}:events:{id}``                pubsub  progress/status events for SSE and ``Prefer: wait``
``{p}:link-secret``                string  generated local-file link key, when none is configured
=================================  ======  ==============================================================

Every status change is a Lua script that checks the current status against ``jobs.lifecycle``,
so concurrent writers (a worker finishing while the API cancels) resolve to one outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from jobs.contract import ErrorCode, JobStatus, ProgressEvent, Stage
from jobs.lifecycle import sources_of

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


_last_id = 0
_id_lock = threading.Lock()


def new_job_id(now: float | None = None) -> str:
    """``anim_`` + a ULID: 48-bit millisecond time + 80 random bits, Crockford base32 (sorts by time).

    Monotonic within a process (ULID spec): a second id in the same millisecond is the previous one
    plus one, so listings keep submission order.
    """
    global _last_id
    ms = int((time.time() if now is None else now) * 1000)
    with _id_lock:
        value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
        if value >> 80 == _last_id >> 80 and value <= _last_id:
            value = _last_id + 1
        _last_id = value
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "anim_" + "".join(reversed(chars))


def owner_id_for_key(api_key: str) -> str:
    """The stable, non-secret id of an API key (what Redis and logs see)."""
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass
class JobRecord:
    id: str
    owner: str
    status: JobStatus
    params: dict[str, Any]
    num_frames: int
    created_at: float
    stage: str | None = Stage.QUEUED.value
    progress: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    inputs: list[str] = field(default_factory=list)
    request_hash: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    unet_evals: dict[str, int] = field(default_factory=dict)
    model_name: str | None = None
    worker: str | None = None  # host:pid of the process running the current attempt (ops only)
    random_weights: bool = False
    error_code: str | None = None
    error_message: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None
    webhook_events: list[str] = field(default_factory=list)

    _JSON = ("params", "inputs", "timings", "unet_evals", "outputs", "webhook_events")
    _FLOAT = ("progress", "created_at", "started_at", "finished_at", "updated_at")
    _INT = ("attempts", "num_frames")
    _BOOL = ("cancel_requested", "random_weights")

    def to_hash(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is None:
                continue
            if name in self._JSON:
                out[name] = json.dumps(value, separators=(",", ":"))
            elif name in self._BOOL:
                out[name] = "1" if value else "0"
            else:
                out[name] = str(value.value if isinstance(value, JobStatus) else value)
        return out

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> JobRecord:
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in data:
                continue
            raw = data[name]
            if name in cls._JSON:
                kwargs[name] = json.loads(raw)
            elif name in cls._FLOAT:
                kwargs[name] = float(raw)
            elif name in cls._INT:
                kwargs[name] = int(raw)
            elif name in cls._BOOL:
                kwargs[name] = raw == "1"
            elif name == "status":
                kwargs[name] = JobStatus(raw)
            else:
                kwargs[name] = raw
        return cls(**kwargs)


_TRANSITION = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
local allowed = false
for s in string.gmatch(ARGV[3], '[^,]+') do if s == st then allowed = true end end
if not allowed then return {'refused', st} end
local to = ARGV[2]
local switched = false
if ARGV[6] == '1' and redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  to = 'canceled'; switched = true
end
redis.call('HSET', KEYS[1], 'status', to, 'updated_at', ARGV[4])
if not switched then
  for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if to ~= 'queued' then redis.call('ZREM', KEYS[2], ARGV[1]) end
if to ~= 'running' then redis.call('ZREM', KEYS[5], ARGV[1]) end
if to == 'succeeded' or to == 'failed' or to == 'canceled' then
  redis.call('HSET', KEYS[1], 'finished_at', ARGV[4])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('EXPIRE', KEYS[4], ARGV[5]) end
end
return {'ok', to}
"""

_START = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
if st == 'succeeded' or st == 'failed' or st == 'canceled' then return {'finished', st} end
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return {'cancel', st} end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then return {'exhausted', tostring(attempts)} end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'stage', 'loading', 'progress', '0', 'updated_at', ARGV[2],
           'model_name', ARGV[4], 'random_weights', ARGV[5], 'worker', ARGV[6])
if not redis.call('HGET', KEYS[1], 'started_at') then redis.call('HSET', KEYS[1], 'started_at', ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return {'started', tostring(attempts + 1)}
"""

_CANCEL = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return 'missing' end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'canceled', 'cancel_requested', '1', 'finished_at', ARGV[2],
             'updated_at', ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 'canceled'
end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1', 'updated_at', ARGV[2])
  return 'requested'
end
return 'terminal'
"""

# Quota slots self-heal: a slot whose job finished, or whose job never got created (the API died
# between reserving and creating), is dropped here.
_RESERVE = """
local now = tonumber(ARGV[3])
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local st = redis.call('HGET', ARGV[4] .. members[i], 'status')
  if (not st and tonumber(members[i + 1]) < now - tonumber(ARGV[5]))
     or st == 'succeeded' or st == 'failed' or st == 'canceled' then
    redis.call('ZREM', KEYS[1], members[i])
  end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
return 1
"""

# The outbox: hand out entries older than the cutoff, each leased (re-scored to now) so that two
# sweepers never send the same job at once and a sweeper that dies leaves it for the next sweep.
_CLAIM_UNSENT = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id) end
return ids
"""

# Claim an Idempotency-Key, or return the earlier claim. A claim whose job record never appeared
# (the API process died between claiming and creating) is taken over once it is older than any
# submission can take, so the client's retry is not refused for the key's whole TTL.
_CLAIM_IDEMPOTENCY = """
local existing = redis.call('GET', KEYS[1])
if existing then
  local ok, claim = pcall(cjson.decode, existing)
  if not ok or type(claim) ~= 'table' or redis.call('EXISTS', ARGV[3] .. tostring(claim['job_id'])) == 1
     or tonumber(claim['at'] or ARGV[4]) > tonumber(ARGV[4]) - tonumber(ARGV[5]) then
    return existing
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""

# Running jobs whose lock is gone: their worker died without recording an outcome (a lost node, or
# Redis down when the job ended), and Redis would redeliver the message only after the visibility
# timeout (hours). Scores are when a job started or was last seen alive; one older than the lock TTL
# is checked: alive -> checked again a TTL later; orphan -> returned once and dropped from the index
# (its next start adds it back).
_CLAIM_ORPHANED = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local orphans = {}
for _, id in ipairs(ids) do
  if redis.call('HGET', ARGV[4] .. id, 'status') ~= 'running' then
    redis.call('ZREM', KEYS[1], id)
  elseif redis.call('EXISTS', ARGV[5] .. id) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
  else
    redis.call('ZREM', KEYS[1], id)
    table.insert(orphans, id)
  end
end
return orphans
"""

_LOCK_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_LOCK_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# GCRA: ``rate`` requests per ``period`` with bursts up to ``burst``; returns {allowed, retry_after_ms}.
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then return {0, tat - tolerance - now} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now) + 1000)
return {1, 0}
"""

_GCRA_SHA = hashlib.sha1(_GCRA.encode()).hexdigest()  # what EVALSHA names the script by

_TERMINAL = {s.value for s in JobStatus if s.is_terminal()}


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
    outcome: str  # started | finished | cancel | exhausted | missing
    attempts: int = 0
    status: str = ""


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_s: float


class JobStore:
    """All job-record reads and writes, for the API and the workers alike."""

    def __init__(self, client: redis.Redis, prefix: str = "pa", *, job_ttl_s: int = 7 * 24 * 3600) -> None:
        # Any: the redis stubs type replies as bytes, but this client decodes them to str.
        self.r: Any = client
        self.p = prefix
        self.job_ttl_s = job_ttl_s
        self._transition = client.register_script(_TRANSITION)
        self._start = client.register_script(_START)
        self._cancel = client.register_script(_CANCEL)
        self._reserve = client.register_script(_RESERVE)
        self._lock_refresh = client.register_script(_LOCK_REFRESH)
        self._lock_release = client.register_script(_LOCK_RELEASE)
        self._gcra = client.register_script(_GCRA)
        self._claim_unsent = client.register_script(_CLAIM_UNSENT)
        self._claim_idempotency = client.register_script(_CLAIM_IDEMPOTENCY)
        self._claim_orphaned = client.register_script(_CLAIM_ORPHANED)

    @classmethod
    def from_url(cls, url: str, prefix: str = "pa", **kwargs: Any) -> JobStore:
        client = redis.Redis.from_url(url, **CLIENT_OPTIONS)
        return cls(client, prefix, **kwargs)

    # --- keys ---
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

    # --- creation, quota, idempotency ---
    def reserve_slot(self, owner: str, job_id: str, max_active: int, stale_after_s: float = 600) -> bool:
        """Take one of the key's ``max_active`` queued+running slots, or refuse."""
        ok = self._reserve(
            keys=[self.active_key(owner)],
            args=[job_id, max_active, time.time(), f"{self.p}:job:", stale_after_s],
        )
        return bool(int(ok))

    def release_slot(self, owner: str, job_id: str) -> None:
        self.r.zrem(self.active_key(owner), job_id)

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

    def mark_sent(self, job_id: str) -> None:
        self.r.zrem(self.unsent_key, job_id)

    def claim_orphaned(self, lock_ttl_s: float, limit: int = 100) -> list[str]:
        """Running jobs without a job lock (checked ``lock_ttl_s`` after they started or were last
        seen alive): their worker is gone. Each is returned once."""
        now = time.time()
        ids = self._claim_orphaned(
            keys=[self.running_key],
            args=[now - lock_ttl_s, now, limit, f"{self.p}:job:", f"{self.p}:lock:"],
        )
        return [str(i) for i in ids]

    def claim_unsent(self, older_than_s: float, limit: int = 100) -> list[str]:
        """Outbox entries older than ``older_than_s``, leased to this caller for that long."""
        now = time.time()
        ids = self._claim_unsent(keys=[self.unsent_key], args=[now - older_than_s, now, limit])
        return [str(i) for i in ids]

    def idempotency_key(self, owner: str, key: str) -> str:
        return f"{self.p}:idem:{owner}:{hashlib.sha256(key.encode()).hexdigest()}"

    def claim_idempotency(
        self, owner: str, key: str, job_id: str, body_hash: str, ttl_s: int, stale_after_s: float = 120.0
    ) -> dict[str, str] | None:
        """Claim the key for ``job_id``; if already claimed, return the earlier ``{job_id, hash}``.

        A claim older than ``stale_after_s`` whose job was never created is abandoned (its request
        died midway) and is taken over.
        """
        now = time.time()
        value = json.dumps({"job_id": job_id, "hash": body_hash, "at": round(now, 3)})
        existing = self._claim_idempotency(
            keys=[self.idempotency_key(owner, key)],
            args=[value, ttl_s, f"{self.p}:job:", now, stale_after_s],
        )
        if not existing:
            return None
        claim = json.loads(str(existing))
        return {"job_id": str(claim["job_id"]), "hash": str(claim["hash"])}

    def release_idempotency(self, owner: str, key: str, job_id: str) -> None:
        rkey = self.idempotency_key(owner, key)
        existing = self.r.get(rkey)
        if existing is not None and json.loads(str(existing)).get("job_id") == job_id:
            self.r.delete(rkey)

    # --- reads ---
    def get(self, job_id: str) -> JobRecord | None:
        data = self.r.hgetall(self.job_key(job_id))
        return JobRecord.from_hash(data) if data else None  # type: ignore[arg-type]

    def get_owned(self, job_id: str, owner: str) -> JobRecord | None:
        """The job if ``owner`` owns it; another key's job looks exactly like a missing one."""
        record = self.get(job_id) if job_id.startswith("anim_") and len(job_id) < 64 else None
        return record if record is not None and record.owner == owner else None

    def list_owned(
        self, owner: str, limit: int, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first, ``limit`` per page; the cursor is the last id of the previous page."""
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
        return self.r.hget(self.job_key(job_id), "cancel_requested") == "1"

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.r.lrange(self.deliveries_key(job_id), 0, -1)]  # type: ignore[union-attr]

    # --- transitions ---
    def transition(
        self, job_id: str, to: JobStatus, *, cancel_wins: bool = False, **fields: Any
    ) -> tuple[str, str]:
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
        if outcome == "ok":
            self.publish(job_id)
        return str(outcome), str(status)

    def start_attempt(
        self, job_id: str, max_attempts: int, model_name: str, random_weights: bool, worker: str = ""
    ) -> StartResult:
        outcome, value = self._start(
            keys=[self.job_key(job_id), self.queue_key, self.running_key],
            args=[job_id, time.time(), max_attempts, model_name, "1" if random_weights else "0", worker],
        )
        if outcome == "started":
            self.publish(job_id)
            return StartResult("started", attempts=int(value))
        if outcome == "exhausted":
            return StartResult("exhausted", attempts=int(value))
        return StartResult(str(outcome), status=str(value))

    def request_cancel(self, job_id: str) -> str:
        """``canceled`` (was queued: now terminal), ``requested`` (running: the worker stops it), ``terminal``."""
        record = self.get(job_id)
        if record is None:
            return "missing"
        outcome = self._cancel(
            keys=[self.job_key(job_id), self.queue_key, self.active_key(record.owner)],
            args=[job_id, time.time(), self.job_ttl_s],
        )
        self.publish(job_id)
        return str(outcome)

    def fail(self, job_id: str, code: ErrorCode | str, message: str) -> tuple[str, str]:
        return self.transition(
            job_id,
            JobStatus.FAILED,
            error_code=str(code),
            error_message=message[:500],
            stage=Stage.DONE.value,
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

    # --- the job lock ---
    def try_lock(self, job_id: str, token: str, ttl_s: float) -> bool:
        return bool(self.r.set(self.lock_key(job_id), token, nx=True, px=int(ttl_s * 1000)))

    def refresh_lock(self, job_id: str, token: str, ttl_s: float) -> bool:
        return bool(int(self._lock_refresh(keys=[self.lock_key(job_id)], args=[token, int(ttl_s * 1000)])))

    def release_lock(self, job_id: str, token: str) -> None:
        self._lock_release(keys=[self.lock_key(job_id)], args=[token])

    # --- rate limits ---
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
                self.r.script_load(_GCRA)  # Redis restarted or flushed its script cache
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
                await client.script_load(_GCRA)
        raise AssertionError("unreachable")

    def _queue_rate_limited_read(
        self, pipe: Any, bucket: str, owner: str, per_minute: int, job_id: str | None
    ) -> bool:
        # evalsha, not the Script object: a pipeline would check SCRIPT EXISTS on every execute.
        pipe.evalsha(_GCRA_SHA, 1, f"{self.p}:rl:{bucket}:{owner}", 60000.0 / per_minute, per_minute)
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


@dataclass(frozen=True)
class JobSnapshot:
    """A job record read together with its queue position and webhook delivery attempts."""

    record: JobRecord
    queue_position: int | None
    deliveries: list[dict[str, Any]]


def is_terminal_value(status: str) -> bool:
    return status in _TERMINAL
