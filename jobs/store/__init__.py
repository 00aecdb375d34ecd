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

Every status change is a Lua script (``jobs/store/lua/*.lua``, loaded by ``jobs.store.scripts`` with the
status names and terminal set of ``jobs.lifecycle``) that checks the current status, so concurrent
writers (a worker finishing while the API cancels) resolve to one outcome.

By concept: ``ids`` (job ids, API-key digests), ``records`` (the job hash), ``outcomes`` (typed results),
``submissions`` (quota, idempotency, outbox, orphans), ``locks`` (the job lock), ``ratelimit`` (GCRA and
the status poll's one-round-trip read), ``store`` (``JobStore``: keys, reads, transitions, progress).
"""

from jobs.store.ids import key_digest, new_job_id, owner_id_for_key
from jobs.store.outcomes import CancelOutcome, StartOutcome, TransitionOutcome
from jobs.store.ratelimit import RateDecision
from jobs.store.records import JobRecord, JobSnapshot
from jobs.store.store import CLIENT_OPTIONS, JobStore, StartResult, async_redis

__all__ = [
    "CLIENT_OPTIONS",
    "CancelOutcome",
    "JobRecord",
    "JobSnapshot",
    "JobStore",
    "RateDecision",
    "StartOutcome",
    "StartResult",
    "TransitionOutcome",
    "async_redis",
    "key_digest",
    "new_job_id",
    "owner_id_for_key",
]
