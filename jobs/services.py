"""The job services of one process, and the one place where a job ends.

``JobServices`` is the settings, job store, object storage and queue client, built once per process:
by ``api.main.create_app`` (inside ``api.deps.Services``) and by the worker (``worker.tasks``, after
the fork). Every ending of a job that tells the client goes through it:

- ``fail_job``: the job becomes ``failed`` with a stable code; if that applied (not already finished,
  canceled or deleted), the outcome is counted and its ``failed`` webhook is queued. The runner (an
  engine error, a timeout, the attempt cap), the pose extraction stage, and the Celery task's hard
  time limit all fail jobs here and nowhere else.
- ``cancel_job`` (the API's cancel request) and ``finish_canceled`` (a worker stopping a job): the
  job becomes ``canceled``; once it is, the outcome is counted and its ``canceled`` webhook queued.
- ``notify``: a webhook event of the job as it is now (``emit_webhook``), which never fails the
  caller; ``notify_deleted``: the ``deleted`` event of a job being erased (``jobs.deletion``).

A job refused at submission because its queue message could not be sent (``jobs.intake.acceptance``) is
the one other writer of ``failed``: the client is told by that request's 503 reply, not a webhook.

The counter is the process's: the worker passes its ``poseanimate_jobs_finished_total``
(``worker.metrics.count_finished``); the API counts no job outcomes (``not_counted``: its
``/metrics`` has none; a queued job it cancels was never counted by a worker either).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from jobs import openai_compat
from jobs.contract import ErrorCode, JobStatus, WebhookEvent
from jobs.queue import QueueClient
from jobs.settings import Settings
from jobs.storage import LinkSecretMissing, Storage, storage_from_settings
from jobs.store import CancelOutcome, JobRecord, JobStore, TransitionOutcome
from jobs.views import job_view
from jobs.webhooks import build_payload, new_message_id

log = logging.getLogger(__name__)

CountFinished = Callable[[str], None]
"""Counts one ended job by outcome: ``succeeded``, ``canceled`` or the failure's error code."""


def not_counted(outcome: str) -> None:
    """The API's counter: it exposes no job outcomes (the workers that end jobs count them)."""


def webhook_body(
    record: JobRecord, event: WebhookEvent, *, storage: Storage | None, url_ttl_s: int, base_url: str | None
) -> str | None:
    """The event's body in the job's flavour: ours (the whole job), or OpenAI's for a ``/v1/videos``
    job (``jobs.openai_compat.webhook_body``; None for the events OpenAI has no type for: not sent)."""
    if record.api == openai_compat.API:
        body = openai_compat.webhook_body(record.id, event)
        return None if body is None else body.decode()
    job = job_view(record, storage=storage, url_ttl_s=url_ttl_s, base_url=base_url)
    return build_payload(event.type, job.model_dump(mode="json", exclude={"webhook"})).decode()


def emit_webhook(
    job_id: str,
    event: WebhookEvent,
    *,
    store: JobStore,
    storage: Storage | None,
    queue: QueueClient,
    url_ttl_s: int,
    base_url: str | None,
) -> str | None:
    """Enqueue one webhook event on ``io`` if the job subscribed to it; returns the webhook-id.

    The payload is frozen here (the job as it is now), so every retry sends the same body under
    the same ``webhook-id``; only ``webhook-timestamp`` and the signature change per attempt.
    """
    record = store.get(job_id)
    if record is None or not record.webhook_url or event.value not in record.webhook_events:
        return None
    body = webhook_body(record, event, storage=storage, url_ttl_s=url_ttl_s, base_url=base_url)
    if body is None:
        return None
    msg_id = new_message_id()
    try:
        queue.enqueue_webhook(job_id, event.value, body, msg_id)
    except Exception:  # the job outcome stands even if its notification cannot be queued
        log.exception("could not enqueue webhook", extra={"job_id": job_id, "event": event.value})
        return None
    return msg_id


@dataclass
class JobServices:
    settings: Settings
    store: JobStore
    storage: Storage
    queue: QueueClient
    count_finished: CountFinished

    @classmethod
    def build(
        cls,
        settings: Settings,
        queue: QueueClient,
        count_finished: CountFinished,
        *,
        local_key_fallback: bool = False,
    ) -> JobServices:
        """The process's services from its settings. ``local_key_fallback`` (the API): if Redis is
        down at start, local-file links are signed with a per-process key rather than refusing to
        start (a missing production link secret still refuses). A worker has no fallback: a link it
        put in a webhook must verify on every API process."""
        store = JobStore.from_url(settings.redis_url, settings.key_prefix, job_ttl_s=settings.job_ttl_s)
        try:
            storage = storage_from_settings(settings, store.r)
        except Exception as exc:
            if not local_key_fallback or isinstance(exc, LinkSecretMissing):
                raise
            log.warning("could not share the link-signing key through Redis", exc_info=True)
            storage = storage_from_settings(settings)
        return cls(settings, store, storage, queue, count_finished)

    def emit_webhook(self, job_id: str, event: WebhookEvent) -> str | None:
        """``emit_webhook`` with this process's store, storage, queue and link settings."""
        return emit_webhook(
            job_id,
            event,
            store=self.store,
            storage=self.storage,
            queue=self.queue,
            url_ttl_s=self.settings.output_url_ttl_s,
            base_url=self.settings.public_base_url,
        )

    def notify(self, job_id: str, event: WebhookEvent) -> None:
        """The job's ``event`` webhook, if it subscribed; a failure to emit is logged, never raised
        (except Celery's soft time limit, which belongs to the job being run)."""
        try:
            self.emit_webhook(job_id, event)
        except SoftTimeLimitExceeded:
            raise
        except Exception:
            log.exception("webhook emission failed", extra={"job_id": job_id, "event": event.value})

    def fail_job(self, job_id: str, code: ErrorCode | str, message: str) -> bool:
        """Fail the job with a stable ``code`` and a client-facing ``message``; if it applied, count
        it and queue its ``failed`` webhook. Returns whether it applied (False: the job had already
        ended, or is gone)."""
        outcome, status = self.store.fail(job_id, code, message)
        if outcome is not TransitionOutcome.OK:
            return False
        if status == JobStatus.CANCELED.value:  # deleted as it ran (its inputs gone): not a failure
            self.canceled(job_id)
            return True
        self.count_finished(str(code))
        log.warning("job failed", extra={"job_id": job_id, "code": str(code), "error": message})
        self.notify(job_id, WebhookEvent.FAILED)
        return True

    def cancel_job(self, job_id: str) -> CancelOutcome:
        """The client's cancel: a queued job is canceled now (and told), a running one is asked to
        stop (its worker ends it with ``finish_canceled``)."""
        outcome = self.store.request_cancel(job_id)
        if outcome is CancelOutcome.CANCELED:
            self.canceled(job_id)
        return outcome

    def finish_canceled(self, job_id: str) -> bool:
        """A worker stopped the job on a cancel request: record it (if it still may be) and tell."""
        outcome, _ = self.store.transition(job_id, JobStatus.CANCELED)
        if outcome is not TransitionOutcome.OK:
            return False
        self.canceled(job_id)
        return True

    def notify_deleted(self, record: JobRecord) -> None:
        """A deleted job's webhook, if it had one: one ``animation.deleted`` event (its data is the
        job's id only), sent to the URL it had, since the record it would be read from is gone. A
        failure to queue it is logged: the deletion stands."""
        if not record.webhook_url:
            return
        body = build_payload(
            WebhookEvent.DELETED.type, {"id": record.id, "object": "animation", "deleted": True}
        )
        try:
            self.queue.enqueue_webhook(
                record.id, WebhookEvent.DELETED.value, body.decode(), new_message_id(), url=record.webhook_url
            )
        except Exception:
            log.exception("could not enqueue the deleted webhook", extra={"job_id": record.id})

    def canceled(self, job_id: str) -> None:
        """After the job became ``canceled`` (here, or by a success write a cancel won): count, tell."""
        self.count_finished(JobStatus.CANCELED.value)
        log.info("job canceled", extra={"job_id": job_id})
        self.notify(job_id, WebhookEvent.CANCELED)
