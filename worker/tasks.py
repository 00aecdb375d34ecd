"""Celery tasks: thin shells that parse the message, call the runner, and record the outcome.

``poseanimate.animate(job_id)`` on ``gpu``; ``poseanimate.deliver_webhook(...)``,
``poseanimate.extract_job_poses(job_id)`` and ``poseanimate.extract_poses(extraction_id)`` on ``io``.
Importing this module does not import torch or the engine: the engine is loaded by
``AnimatorHolder`` inside the prefork child, after the fork.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from celery import Task, signals
from celery.exceptions import Reject, TimeLimitExceeded

from jobs.contract import ErrorCode
from jobs.deletion import CURRENT_JOB
from jobs.logs import bind, configure_logging
from jobs.queue import ANIMATE_TASK, EXTRACT_TASK, JOB_EXTRACT_TASK, WEBHOOK_TASK, QueueClient
from jobs.services import JobServices
from jobs.settings import get_settings
from worker import metrics
from worker.animators import AnimatorHolder
from worker.celery_app import app
from worker.deliveries import deliver
from worker.extraction import run_extraction, run_job_extraction
from worker.runner import JobRunner, RunOutcome

log = logging.getLogger(__name__)


_runner: JobRunner | None = None


def runner() -> JobRunner:
    """The process's job runner over its one ``JobServices``, built lazily (after the fork, in a
    prefork child)."""
    global _runner
    if _runner is None:
        settings = get_settings()
        services = JobServices.build(settings, QueueClient(app), metrics.count_finished)
        _runner = JobRunner(services, AnimatorHolder(settings))
    return _runner


def services() -> JobServices:
    return runner().services


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@signals.worker_process_init.connect
def _child_started(**_: Any) -> None:
    # Fresh connections in the child; start loading the model now (in a thread: this signal has a
    # few seconds' timeout, a model load can take minutes).
    global _runner
    _runner = None
    if get_settings().preload_model:
        runner().holder.start()


@signals.worker_process_shutdown.connect
def _child_stopped(pid: int | None = None, **_: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


class AnimateTask(Task):  # type: ignore[misc]
    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        # The hard time limit kills the child; Celery calls this in the parent, which records it.
        if isinstance(exc, TimeLimitExceeded) and args:
            jobs = services()
            limit = jobs.settings.hard_time_limit_s
            jobs.fail_job(str(args[0]), ErrorCode.TIMEOUT, f"the job exceeded the {limit} s hard time limit")


@app.task(name=ANIMATE_TASK, base=AnimateTask, bind=True, acks_late=True, max_retries=None)
def animate(self: Task, job_id: str) -> str:
    with bind(job_id=job_id):
        job_runner = runner()
        current = CURRENT_JOB.set((job_runner.store, job_id))  # the inversion cache records its keys
        try:
            outcome = job_runner.run(job_id)
        except redis.exceptions.RedisError as exc:
            # The job store is unreachable, so the outcome could not be recorded: give the message
            # back rather than ack a job whose record still says running. (If the broker is down
            # too, the unacked message is restored after the visibility timeout.)
            log.warning("job store unavailable; message requeued", extra={"error": type(exc).__name__})
            raise Reject(exc, requeue=True) from exc
        finally:
            CURRENT_JOB.reset(current)
        if outcome is RunOutcome.LOCKED:
            # Another worker holds the job (or held it and died: its lock expires within the TTL).
            raise self.retry(countdown=job_runner.settings.lock_ttl_s, max_retries=None)
        if outcome is RunOutcome.LOCK_LOST:
            raise Reject("job lock lost", requeue=True)
        return outcome


@app.task(name=WEBHOOK_TASK, bind=True, acks_late=True, max_retries=None)
def deliver_webhook(
    self: Task, job_id: str, event: str, body: str, msg_id: str, attempt: int = 1, url: str | None = None
) -> None:
    with bind(job_id=job_id):
        jobs = services()
        delay = deliver(
            job_id, event, body, msg_id, attempt, settings=jobs.settings, store=jobs.store, url=url
        )
        if delay is not None:
            jobs.queue.enqueue_webhook(
                job_id, event, body, msg_id, attempt=attempt + 1, countdown=delay, url=url
            )


@app.task(name=JOB_EXTRACT_TASK, bind=True, acks_late=True, max_retries=None)
def extract_job_poses(self: Task, job_id: str) -> str:
    """The extracting_poses stage of a job given a driving video; sends it to gpu when done."""
    with bind(job_id=job_id):
        jobs = services()
        return _deferred(self, jobs, run_job_extraction(job_id, jobs))


@app.task(name=EXTRACT_TASK, bind=True, acks_late=True, max_retries=None)
def extract_poses(self: Task, extraction_id: str) -> str:
    """A POST /poses request: its result lands in the extraction record the API polls."""
    jobs = services()
    return _deferred(self, jobs, run_extraction(extraction_id, jobs))


def _deferred(task: Task, jobs: JobServices, outcome: str) -> str:
    """An extraction whose key has no free slot (``worker.extraction``) asks again later, its thread
    freed for other keys' extractions meanwhile; never given up (the tasks' ``max_retries=None``: a
    deferral is no failure, and a retry cap would drop the extraction)."""
    if outcome == "deferred":
        raise task.retry(countdown=jobs.settings.extraction_defer_s)
    return outcome
