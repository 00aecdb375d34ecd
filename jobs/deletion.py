"""The data lifecycle: deleting a job on request, and the retention sweeps.

``delete_job`` (``DELETE /animations/{id}``) cancels the job if it is still queued or running, removes
its inputs, its outputs, the inversion-cache entries its runs recorded, and its record (job hash,
webhook deliveries, owner index, queue/quota/outbox/running entries). A job that is still running is
left a stub (id, status, ``cancel_requested``, nothing of the client's) so that its worker sees the
cancel and stops; the worker's ending of the run removes it (the job counts as canceled, even if
it failed for its deleted inputs), and it expires after the hard time limit anyway. Anything the stopping worker still
uploads is removed by the next sweep (outputs of a job without a record).

The sweeps (run by every API process, ``api/sweeper.py``):

- inputs of a finished job are deleted unless ``KEEP_INPUTS``; inputs without a record (a submission
  that died, a deleted job) once older than ``INTERRUPTED_SUBMISSION_S``;
- outputs older than ``OUTPUT_RETENTION_S``, and outputs whose job has no record (deleted or expired).

On S3 the lifecycle rule in ``deploy/s3-lifecycle.json`` is the backstop for both.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar

from jobs.services import JobServices
from jobs.settings import Settings
from jobs.storage import Storage
from jobs.store import JobRecord, JobStore, scripts

log = logging.getLogger(__name__)

CACHE_KEYS_FIELD = "inversion_cache_keys"  # JSON list on the job hash, written by the worker
CACHE_PREFIX = "cache/inversions"

# The job the current worker thread runs (set by the animate task), so that the storage-backed
# inversion cache can record on it which entries it used or wrote: DELETE removes them.
CURRENT_JOB: ContextVar[tuple[JobStore, str] | None] = ContextVar("poseanimate_current_job", default=None)


def record_cache_key(key: str) -> None:
    """Note an inversion-cache entry on the running job (never on a deleted one); never raises."""
    current = CURRENT_JOB.get()
    if current is None:
        return
    store, job_id = current
    try:
        store.r.eval(scripts.source("record_cache_key"), 1, store.job_key(job_id), CACHE_KEYS_FIELD, key)
    except Exception:  # bookkeeping only: the lifecycle rule is the backstop
        log.warning("could not record the inversion-cache key on the job", exc_info=True)


def deleted_key(store: JobStore, owner: str) -> str:
    return f"{store.p}:owner:{owner}:deleted"


def was_deleted_by(store: JobStore, job_id: str, owner: str) -> bool:
    return store.r.zscore(deleted_key(store, owner), job_id) is not None


DELETION_CLAIM_S = 300


def claim_deletion(store: JobStore, job_id: str) -> bool:
    """Claim the job's deletion (``SET NX``, for :data:`DELETION_CLAIM_S`, removed with the record):
    only the claimant deletes and sends ``animation.deleted``; a concurrent DELETE finds the claim,
    or once it is gone, no live record, and returns."""
    return bool(store.r.set(_claim_key(store, job_id), "1", nx=True, ex=DELETION_CLAIM_S))


def _claim_key(store: JobStore, job_id: str) -> str:
    return f"{store.job_key(job_id)}:deleting"


def _remove_record(store: JobStore, record: JobRecord, *, stub_ttl_s: int | None) -> None:
    job_id, r = record.id, store.r
    pipe = r.pipeline(transaction=True)
    pipe.delete(store.job_key(job_id), store.deliveries_key(job_id))
    pipe.zrem(store.index_key(record.owner), job_id)
    pipe.zrem(store.active_key(record.owner), job_id)
    pipe.zrem(store.queue_key, job_id)
    pipe.zrem(store.unsent_key, job_id)
    # The owner's tombstones: a repeated DELETE answers 204 to the owner (404 to everyone else).
    now = time.time()
    tombstones = deleted_key(store, record.owner)
    pipe.zadd(tombstones, {job_id: now})
    pipe.zremrangebyscore(tombstones, "-inf", now - store.job_ttl_s)
    pipe.expire(tombstones, store.job_ttl_s)
    if stub_ttl_s is not None:
        # Still running: the worker must see the cancel. Nothing of the client's stays.
        stub = {
            "id": job_id,
            "owner": "deleted",
            "status": record.status.value,
            "params": "{}",
            "num_frames": str(record.num_frames),
            "created_at": str(record.created_at),
            "cancel_requested": "1",
        }
        pipe.hset(store.job_key(job_id), mapping=stub)
        pipe.expire(store.job_key(job_id), stub_ttl_s)
    else:
        pipe.zrem(store.running_key, job_id)
    pipe.execute()


def delete_job(record: JobRecord, services: JobServices) -> None:
    """Remove everything the job left; idempotent (a second call finds nothing and does nothing).
    A job with a webhook is told (``JobServices.notify_deleted``): one ``animation.deleted`` event,
    since the deletion is claimed first (:func:`claim_deletion`): concurrent DELETEs of one job all
    return, one deletes and notifies. A job still queued or running is canceled on the way, without a
    ``canceled`` event: its ending is the deletion."""
    job_id, store, storage, settings = record.id, services.store, services.storage, services.settings
    if not claim_deletion(store, job_id):
        return  # another DELETE of this job is doing it: one deletion, one webhook
    if _live(store, job_id) is None:  # another DELETE did it since this one read the record
        store.r.delete(_claim_key(store, job_id))
        return
    services.notify_deleted(record)
    running = False
    if not record.status.is_terminal():
        running = store.request_cancel(job_id) == "requested"
    raw_keys = store.r.hget(store.job_key(job_id), CACHE_KEYS_FIELD)
    cache_keys = [str(k) for k in json.loads(raw_keys)] if raw_keys else []
    storage.delete_prefix(f"inputs/{job_id}")
    storage.delete_prefix(f"outputs/{job_id}")
    for key in cache_keys:
        storage.delete(f"{CACHE_PREFIX}/{key}.safetensors")
    _remove_record(store, record, stub_ttl_s=settings.hard_time_limit_s + 60 if running else None)
    store.r.delete(_claim_key(store, job_id))  # the record is gone: a late DELETE finds nothing to do
    log.info("job deleted", extra={"job_id": job_id, "was_running": running})


def _live(store: JobStore, job_id: str) -> JobRecord | None:
    record = store.get(job_id)
    return None if record is None or record.owner == "deleted" else record


def sweep_storage(store: JobStore, storage: Storage, settings: Settings, now: float | None = None) -> int:
    """One retention pass over storage; returns how many job folders it deleted."""
    now = time.time() if now is None else now
    removed = 0
    for job_id, mtime in storage.list_jobs("inputs").items():
        record = _live(store, job_id)
        if record is None:
            gone = mtime < now - settings.interrupted_submission_s  # not a submission still being written
        else:
            gone = record.status.is_terminal() and not settings.keep_inputs
        if gone:
            storage.delete_prefix(f"inputs/{job_id}")
            removed += 1
    for job_id, mtime in storage.list_jobs("outputs").items():
        # An orphan (no live record) only once it is older than a submission can take: never a job
        # whose outputs are being written while its record is read.
        orphan = mtime < now - settings.interrupted_submission_s and _live(store, job_id) is None
        if mtime < now - settings.output_retention_s or orphan:
            storage.delete_prefix(f"outputs/{job_id}")
            removed += 1
    return removed
