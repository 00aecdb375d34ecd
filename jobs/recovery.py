"""Recovery sweeps: jobs whose queue message was never sent, or whose worker vanished mid-run.

Both would otherwise wait for something that never comes: a job created by an API process that died
before sending its message waits forever (holding a quota slot); a running job whose worker node
was lost, or whose worker could not record the outcome while Redis was down, waits for Redis to
redeliver its unacknowledged message after the visibility timeout (hours). The API runs both sweeps
periodically (``api.sweeper``). Sending a job's message again is always safe: the job lock lets one
copy run, a finished job is never run again, and the attempt cap bounds reruns.
"""

from __future__ import annotations

import logging

from jobs.contract import JobStatus
from jobs.intake.acceptance import send_first_message
from jobs.queue import QueueClient
from jobs.store import JobStore

log = logging.getLogger(__name__)


def send_unsent(store: JobStore, queue: QueueClient, *, older_than_s: float) -> list[str]:
    """Send the message of every job created more than ``older_than_s`` ago whose sending was never
    confirmed (its API process died in between). Returns the ids sent."""
    sent = []
    for job_id in store.claim_unsent(older_than_s):
        record = store.get(job_id)
        if record is not None and record.status is JobStatus.QUEUED:
            send_first_message(queue, job_id, record.inputs)  # its extraction first, if no poses yet
            sent.append(job_id)
            log.warning("sent the queue message of an interrupted submission", extra={"job_id": job_id})
        store.mark_sent(job_id)
    return sent


def resend_orphaned(store: JobStore, queue: QueueClient, *, lock_ttl_s: float) -> list[str]:
    """Send again the message of every running job whose lock has expired (its worker is gone); the
    next worker to take it runs the job again as a new attempt. Returns the ids sent."""
    orphans = store.claim_orphaned(lock_ttl_s)
    for job_id in orphans:
        queue.enqueue_animation(job_id)
        log.warning("running job lost its worker; sent its queue message again", extra={"job_id": job_id})
    return orphans
