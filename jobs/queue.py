"""Celery configuration and the torch-free queue client the API uses to enqueue by task name.

Queues: ``gpu`` (``poseanimate.animate``, one prefork process per GPU), ``io`` (driving-video
extractions, threads) and ``webhooks`` (``poseanimate.deliver_webhook``, threads, its own consumer),
so a slow webhook receiver never holds a GPU, and one key's queued extractions never delay another
key's webhooks (issue 24, M1: 14 GIF extractions of one key held another key's webhook 117 s when
both shared ``io``). Messages carry ids only; the job record in Redis is the source of truth.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from jobs.settings import Settings

ANIMATE_TASK = "poseanimate.animate"
WEBHOOK_TASK = "poseanimate.deliver_webhook"
# Driving video -> poses on io (CPU; a GPU worker never decodes video): a POST /poses request, and
# the extracting_poses stage of a job submitted with a driving video (it then enqueues ANIMATE_TASK).
EXTRACT_TASK = "poseanimate.extract_poses"
JOB_EXTRACT_TASK = "poseanimate.extract_job_poses"
GPU_QUEUE = "gpu"
IO_QUEUE = "io"
WEBHOOK_QUEUE = "webhooks"


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery settings, each chosen for a reason given alongside it."""
    return {
        "broker_url": settings.celery_broker_url,
        # The job record is the result; Celery's result backend would be a second truth.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Ack after the task body returns: a worker that dies mid-job leaves the message to be
        # redelivered; the job lock and the attempt cap make redelivery safe and bounded.
        "task_acks_late": True,
        # A task whose child process is killed (OOM killer, SIGKILL) is requeued, not acked ...
        "task_reject_on_worker_lost": True,
        # ... but a hard time limit acks (the job is failed as `timeout` in on_failure): no rerun.
        "task_acks_on_failure_or_timeout": True,
        # One GPU job at a time per process; never hoard messages another GPU could run.
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.soft_time_limit_s,
        "task_time_limit": settings.hard_time_limit_s,
        # Redis redelivers unacked messages after this (celery#5935): far above the hard limit.
        "broker_transport_options": {"visibility_timeout": settings.visibility_timeout_s},
        "broker_connection_retry_on_startup": True,
        # Publishing must fail fast in the API (503), not hang a request while Redis is down.
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        "task_default_queue": GPU_QUEUE,
        "task_routes": {
            ANIMATE_TASK: {"queue": GPU_QUEUE},
            WEBHOOK_TASK: {"queue": WEBHOOK_QUEUE},
            EXTRACT_TASK: {"queue": IO_QUEUE},
            JOB_EXTRACT_TASK: {"queue": IO_QUEUE},
        },
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "broker_heartbeat": 0,
    }


def create_celery(settings: Settings, include: list[str] | None = None) -> Celery:
    app = Celery("poseanimate", include=include or [])
    app.conf.update(celery_config(settings))
    return app


class QueueClient:
    """Enqueue by name (``send_task``): the caller never imports task code or the engine."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue_animation(self, job_id: str) -> None:
        self.app.send_task(ANIMATE_TASK, args=[job_id], queue=GPU_QUEUE)

    def enqueue_job_extraction(self, job_id: str) -> None:
        """The extracting_poses stage of a job submitted with a driving video (io)."""
        self.app.send_task(JOB_EXTRACT_TASK, args=[job_id], queue=IO_QUEUE)

    def enqueue_extraction(self, extraction_id: str) -> None:
        self.app.send_task(EXTRACT_TASK, args=[extraction_id], queue=IO_QUEUE)

    def enqueue_webhook(
        self,
        job_id: str,
        event: str,
        body: str,
        msg_id: str,
        attempt: int = 1,
        countdown: float | None = None,
        url: str | None = None,
    ) -> None:
        """``url``: where to send it when the job record may be gone (a deletion), else the job's."""
        self.app.send_task(
            WEBHOOK_TASK,
            args=[job_id, event, body, msg_id],
            kwargs={"attempt": attempt, "url": url},
            queue=WEBHOOK_QUEUE,
            countdown=countdown,
            # Celery logs task arguments; the body holds signed output links.
            argsrepr=repr([job_id, event, "<body>", msg_id]),
        )

    def broker_queue_length(self, queue: str = GPU_QUEUE) -> int:
        """Messages waiting in a broker queue (Redis list), for the queue-depth gauge."""
        with self.app.connection_for_write() as conn:
            client = conn.default_channel.client
            return int(client.llen(queue))
