"""Webhook delivery policy: one attempt, recorded on the job, and whether (and when) to retry.

2xx = delivered; 410 = the receiver is gone, stop; anything else (or a network error) is retried
with exponential backoff and full jitter, up to ``POSEANIMATE_WEBHOOK_MAX_ATTEMPTS``. The URL is
vetted by the SSRF guard again at every attempt (DNS may have changed since submission).
"""

from __future__ import annotations

import logging
import time

from jobs.settings import Settings
from jobs.store import JobStore
from jobs.webhooks import backoff_delay, deliver_once
from worker import metrics

log = logging.getLogger(__name__)


def deliver(
    job_id: str,
    event: str,
    body: str,
    msg_id: str,
    attempt: int,
    *,
    settings: Settings,
    store: JobStore,
    url: str | None = None,
) -> float | None:
    """Make attempt number ``attempt``; return the delay before the next one, or None to stop.

    ``url`` is given for an event whose job record is gone by design (``deleted``): the attempts are
    then not recorded, as there is no job left to record them on."""
    record = store.get(job_id)
    target = url or (record.webhook_url if record is not None else None)
    if not target:
        return None  # the job expired: nothing left to tell
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    result = deliver_once(
        target,
        body.encode(),
        msg_id=msg_id,
        secret=secret,
        timeout_s=settings.webhook_timeout_s,
        allow_private=settings.allow_private_urls,
    )
    outcome = result.result
    retry_in = None
    if outcome == "retry":
        if attempt >= settings.webhook_max_attempts:
            outcome = "failed"
        else:
            retry_in = backoff_delay(attempt, settings.webhook_backoff_base_s, settings.webhook_backoff_max_s)
            outcome = "retrying"
    if record is not None:
        store.record_delivery(
            job_id,
            {
                "webhook_id": msg_id,
                "event": event,
                "attempt": attempt,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "status_code": result.status_code,
                "result": outcome,
                "error": result.error,
                "duration_s": round(result.duration_s, 4),
            },
        )
    metrics.WEBHOOK_DELIVERIES.labels(event, outcome).inc()
    metrics.WEBHOOK_SECONDS.observe(result.duration_s)
    log.info(
        "webhook attempt",
        extra={
            "job_id": job_id,
            "webhook_id": msg_id,
            "event": event,
            "attempt": attempt,
            "result": outcome,
            "status_code": result.status_code,
        },
    )
    return retry_in
