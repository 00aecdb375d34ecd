"""One job attempt on a worker, from lock to outcome. The Celery task is a thin shell around this.

Guarantees (with ``jobs.store``): a redelivered copy of a running job does not run it (job lock,
refreshed by a heartbeat, expires if its worker dies); a finished job is never run again; a job
whose worker died runs again, up to ``POSEANIMATE_MAX_ATTEMPTS``, then fails as ``worker_lost``; a
job canceled while queued never loads inputs or touches the model; a canceled job never publishes
outputs (checked before upload, and a cancel that lands during the upload wins and deletes them).
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import redis
from celery.exceptions import SoftTimeLimitExceeded
from PIL import Image

from jobs.contract import ErrorCode, JobStatus, Stage, WebhookEvent
from jobs.intake.limits import effective_params
from jobs.lifecycle import overall_progress
from jobs.queue import QueueClient
from jobs.services import JobServices
from jobs.settings import Settings
from jobs.storage import ObjectNotFound, Storage, StorageUnavailable, input_key, output_key
from jobs.store import JobRecord, JobStore, StartOutcome, TransitionOutcome
from jobs.webhooks import backoff_delay
from worker import memory, metrics
from worker.animators import (
    OUTPUT_FILES,
    AnimatorHolder,
    JobCanceled,
    JobFailure,
    JobInputs,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _clip_times(timeline: list[dict[str, Any]] | None) -> list[float] | None:
    """The driven frames' clip times of a clip's job (``None`` for a job sent with poses)."""
    if timeline is None:
        return None
    return [float(f["clip_time"]) for f in timeline if f.get("role") == "driven" and "clip_time" in f]


class RunOutcome(StrEnum):
    """What one delivery of a job's message came to (the Celery task acts on LOCKED and LOCK_LOST)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"  # finished or unknown job: nothing to run
    LOCKED = "locked"  # another worker holds the job: retry later
    LOCK_LOST = "lock_lost"  # the heartbeat lost the lock mid-run: give the message back


class LockLost(Exception):
    """The heartbeat could not keep the job lock: another worker may own the job now."""


def model_label(settings: Settings) -> tuple[str, bool]:
    """How jobs are labelled before the model is loaded (and after: it does not change)."""
    if settings.animator == "noop":
        return "noop (no model)", False
    if settings.model == "tiny":
        return "tiny (random weights)", True
    return settings.model, False


class LockHeartbeat:
    """Keeps the job lock alive while the attempt runs; notices if it was lost."""

    def __init__(self, store: JobStore, job_id: str, token: str, ttl_s: float) -> None:
        self.store, self.job_id, self.token, self.ttl_s = store, job_id, token, ttl_s
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        failures = 0
        while not self._stop.wait(self.ttl_s / 3):
            try:
                if not self.store.refresh_lock(self.job_id, self.token, self.ttl_s):
                    self.lost = True
                    return
                failures = 0
            except Exception:  # Redis blip: the lock survives until its TTL; give up after that
                failures += 1
                if failures >= 3:
                    self.lost = True
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


class CancelCheck:
    """``should_cancel`` for the engine: polls the job record at most every ``interval`` seconds."""

    def __init__(self, store: JobStore, job_id: str, interval_s: float, heartbeat: LockHeartbeat) -> None:
        self.store, self.job_id, self.interval_s, self.heartbeat = store, job_id, interval_s, heartbeat
        self._last = 0.0
        self._canceled = False

    def __call__(self, force: bool = False) -> bool:
        if self.heartbeat.lost:
            return True
        now = time.monotonic()
        if not self._canceled and (force or now - self._last >= self.interval_s):
            self._last = now
            try:
                self._canceled = self.store.is_cancel_requested(self.job_id)
            except SoftTimeLimitExceeded:  # Celery's signal landed here: it is the job's, not ours
                raise
            except Exception:
                log.warning("cancel check failed; continuing", exc_info=True)
        return self._canceled


class ProgressReporter:
    """Engine progress -> throttled job-record updates + pub/sub events (+ 'progress' webhooks)."""

    def __init__(self, runner: JobRunner, record: JobRecord) -> None:
        self.runner, self.record = runner, record
        self.stage: str | None = None
        # From where the job is (an earlier attempt's progress, or the extraction's): never backwards.
        self.progress = record.progress
        self._last_write = 0.0
        self._stage_started = time.perf_counter()
        self.timings: dict[str, float] = {}

    def __call__(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        changed = stage != self.stage
        if changed:
            if self.stage is not None and self.stage not in self.timings:
                self.timings[self.stage] = round(now - self._stage_started, 4)
            self.stage, self._stage_started = stage, now
        self.progress = max(self.progress, overall_progress(stage, fraction))
        if changed or fraction >= 1.0 or now - self._last_write >= self.runner.settings.progress_interval_s:
            self._last_write = now
            try:
                self.runner.store.update_progress(self.record.id, stage, self.progress, self.timings)
            except SoftTimeLimitExceeded:
                raise
            except Exception:
                log.warning("progress update failed", exc_info=True)
            if changed and stage != Stage.LOADING.value:
                self.runner.notify(self.record.id, WebhookEvent.PROGRESS)

    def close_stage(self) -> None:
        if self.stage is not None and self.stage not in self.timings:
            self.timings[self.stage] = round(time.perf_counter() - self._stage_started, 4)


class JobRunner:
    """Runs jobs over the process's ``JobServices``, which records how each one ends."""

    def __init__(self, services: JobServices, holder: AnimatorHolder) -> None:
        self.services, self.holder = services, holder

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def store(self) -> JobStore:
        return self.services.store

    @property
    def storage(self) -> Storage:
        return self.services.storage

    @property
    def queue(self) -> QueueClient:
        return self.services.queue

    def notify(self, job_id: str, event: WebhookEvent) -> None:
        self.services.notify(job_id, event)

    def run(self, job_id: str) -> RunOutcome:
        """Run one delivery of the job's message. Returns ``locked`` when another worker holds the
        job (the task retries later), else what happened: ``succeeded``, ``failed``, ``canceled``,
        ``skipped`` (finished or unknown job), ``lock_lost``."""
        token = uuid.uuid4().hex
        if not self.store.try_lock(job_id, token, self.settings.lock_ttl_s):
            record = self.store.get(job_id)
            if record is None or record.status.is_terminal():
                metrics.DUPLICATES_SKIPPED.labels("finished").inc()
                return RunOutcome.SKIPPED
            metrics.DUPLICATES_SKIPPED.labels("locked").inc()
            return RunOutcome.LOCKED
        heartbeat = LockHeartbeat(self.store, job_id, token, self.settings.lock_ttl_s)
        heartbeat.start()
        try:
            return self._run_locked(job_id, heartbeat)
        finally:
            heartbeat.stop()
            self.store.release_lock(job_id, token)

    def _run_locked(self, job_id: str, heartbeat: LockHeartbeat) -> RunOutcome:
        record = self.store.get(job_id)
        if record is None or record.status.is_terminal():
            metrics.DUPLICATES_SKIPPED.labels("finished").inc()
            return RunOutcome.SKIPPED
        name, random_weights = model_label(self.settings)
        start = self.store.start_attempt(
            job_id,
            self.settings.max_attempts,
            name,
            random_weights,
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )
        if start.outcome in (StartOutcome.FINISHED, StartOutcome.MISSING):
            metrics.DUPLICATES_SKIPPED.labels("finished").inc()
            return RunOutcome.SKIPPED
        if start.outcome is StartOutcome.CANCEL:
            return self._finish_canceled(job_id)
        if start.outcome is StartOutcome.EXHAUSTED:
            log.error(
                "attempt cap reached; the worker running this job died each time",
                extra={"attempts": start.attempts},
            )
            message = f"the worker died {start.attempts} times running this job (possibly out of memory)"
            return self._finish_failed(job_id, ErrorCode.WORKER_LOST, message)

        metrics.JOB_ATTEMPTS.inc()
        if start.attempts == 1:
            metrics.JOB_QUEUE_WAIT_SECONDS.observe(max(0.0, time.time() - record.created_at))
            self.notify(job_id, WebhookEvent.STARTED)
        log.info("job started", extra={"attempt": start.attempts, "model": name})
        started = time.perf_counter()
        outcome = self._attempt(record, heartbeat)
        metrics.JOB_RUN_SECONDS.labels(outcome).observe(time.perf_counter() - started)
        return outcome

    def _attempt(self, record: JobRecord, heartbeat: LockHeartbeat) -> RunOutcome:
        job_id = record.id
        progress = ProgressReporter(self, record)
        should_cancel = CancelCheck(self.store, job_id, self.settings.cancel_poll_interval_s, heartbeat)
        try:
            with tempfile.TemporaryDirectory(prefix=f"{job_id}-", dir=self.settings.worker_tmp_dir) as tmp:
                progress(Stage.LOADING.value, 0.0)
                inputs = self._load_inputs(record, should_cancel)
                animator = self.holder.get(timeout=self.settings.soft_time_limit_s)
                progress(Stage.LOADING.value, 1.0)
                rendered = animator.render(inputs, Path(tmp), progress, should_cancel)
                # Last look before anything is published: a canceled job never uploads outputs.
                if should_cancel(force=True):
                    raise JobCanceled("before upload")
                progress(Stage.UPLOADING.value, 0.0)
                files = {"video": rendered.video, "poster": rendered.poster, **rendered.previews}
                keys: dict[str, str] = {}
                for done, (kind, path) in enumerate(files.items(), start=1):
                    key, content_type = output_key(job_id, path.name), OUTPUT_FILES[kind][1]
                    self._stored(
                        lambda: self.storage.put_file(key, path, content_type),  # noqa: B023 (called now)
                        should_cancel,
                    )
                    keys[kind] = key
                    progress(Stage.UPLOADING.value, done / len(files))
                progress.close_stage()
            if heartbeat.lost:
                raise LockLost()
            extracted = {k: v for k, v in record.timings.items() if k == Stage.EXTRACTING_POSES.value}
            timings = {
                **extracted,
                **progress.timings,
                **{k: round(v, 4) for k, v in rendered.timings.items()},
            }
            outcome, status = self.store.transition(
                job_id,
                JobStatus.SUCCEEDED,
                cancel_wins=True,
                outputs=keys,
                timings=timings,
                unet_evals=rendered.unet_evals,
                num_frames=rendered.num_frames,
                **({"memory_plan": rendered.info["memory_plan"]} if "memory_plan" in rendered.info else {}),
                stage=Stage.DONE.value,
                progress=1.0,
            )
            if status == JobStatus.CANCELED.value:
                self.storage.delete_prefix(f"outputs/{job_id}")  # the cancel landed during the upload
                self.services.canceled(job_id)
                return RunOutcome.CANCELED
            if outcome is not TransitionOutcome.OK:
                log.warning(
                    "job finished elsewhere; outputs kept by the other outcome", extra={"status": status}
                )
                return RunOutcome.SKIPPED
            log.info("job succeeded", extra={"frames": rendered.num_frames, "timings": json.dumps(timings)})
            self.notify(job_id, WebhookEvent.COMPLETED)
            self._observe_success(timings, rendered.unet_evals, rendered.info)
            return RunOutcome.SUCCEEDED
        except JobCanceled:
            if heartbeat.lost:
                return self._lock_lost()
            return self._finish_canceled(job_id)
        except LockLost:
            return self._lock_lost()
        except JobFailure as exc:
            return self._finish_failed(job_id, exc.code, exc.message)
        except SoftTimeLimitExceeded:
            limit = self.settings.soft_time_limit_s
            return self._finish_failed(
                job_id, ErrorCode.TIMEOUT, f"the job exceeded the {limit} s time limit"
            )
        except StorageUnavailable as exc:
            log.warning("storage unavailable", extra={"error": str(exc)})
            return self._finish_failed(job_id, ErrorCode.STORAGE_UNAVAILABLE, "object storage is unavailable")
        except redis.exceptions.RedisError:
            raise  # the outcome cannot be recorded now: the task gives the message back
        except Exception:
            log.exception("job failed with an unexpected error")
            return self._finish_failed(job_id, ErrorCode.INTERNAL_ERROR, "unexpected worker error")

    def _stored(self, operation: Callable[[], T], should_cancel: CancelCheck) -> T:
        """A storage operation, retried while the storage is unavailable for up to ``STORAGE_RETRY_S``
        (exponential backoff with jitter from 1 s): a blip must not throw away a finished render,
        and boto3's own retries span well under a second. A cancel stops the waiting."""
        deadline = time.monotonic() + self.settings.storage_retry_s
        attempt = 1
        while True:
            try:
                return operation()
            except StorageUnavailable as exc:
                delay = backoff_delay(attempt, 1.0, 8.0)
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "storage unavailable; retrying",
                    extra={"attempt": attempt, "retry_in_s": round(delay, 2), "error": str(exc)},
                )
                time.sleep(delay)
                if should_cancel(force=True):
                    raise JobCanceled("while waiting for storage") from exc
                attempt += 1

    def _load_inputs(self, record: JobRecord, should_cancel: CancelCheck) -> JobInputs:
        def get(name: str) -> bytes:
            try:
                return self._stored(lambda: self.storage.get_bytes(input_key(record.id, name)), should_cancel)
            except ObjectNotFound as exc:
                raise JobFailure(f"input {name} is missing from storage") from exc

        params = effective_params(record.params)  # records written before defaults were stored
        image = Image.open(io.BytesIO(get("image.png")))
        image.load()
        mask = None
        if "mask.png" in record.inputs:
            mask = Image.open(io.BytesIO(get("mask.png")))
            mask.load()
        source_pose = json.loads(get("source_pose.json")) if "source_pose.json" in record.inputs else None
        return JobInputs(
            image=image,
            poses=json.loads(get("poses.json")),
            prompt=params["prompt"],
            source_pose=source_pose,
            mask=mask,
            subject_words=params.get("subject_words"),
            steps=params["steps"],
            guidance=params["guidance"],
            transition_frames=params["transition_frames"],
            fps=params["fps"],
            width=params["width"],
            height=params["height"],
            seed=params.get("seed"),
            retarget=params["retarget"],
            parts=params["parts"],
            audio=get("audio.wav") if params["audio"] and "audio.wav" in record.inputs else None,
            clip_times=_clip_times(record.timeline),
        )

    def _observe_success(
        self, timings: dict[str, float], unet_evals: dict[str, int], info: dict[str, Any]
    ) -> None:
        """Metrics of a finished job; never allowed to disturb the job's outcome."""
        try:
            self.services.count_finished(JobStatus.SUCCEEDED.value)
            for stage, seconds in timings.items():
                metrics.STAGE_SECONDS.labels(stage).observe(seconds)
            for key, count in unet_evals.items():  # "<stage>_forward" / "<stage>_backward"; totals skipped
                stage, _, direction = key.rpartition("_")
                if stage and stage != "total" and direction in ("forward", "backward"):
                    metrics.UNET_EVALS.labels(stage, direction).inc(count)
            if "memory_plan" in info:
                memory.observe(info["memory_plan"])
            if "gpu_memory_peak_bytes" in info:
                metrics.GPU_MEMORY_PEAK.set(float(info["gpu_memory_peak_bytes"]))
                metrics.GPU_MEMORY_ALLOCATED.set(float(info["gpu_memory_allocated_bytes"]))
        except Exception:
            log.exception("recording job metrics failed")

    def _finish_canceled(self, job_id: str) -> RunOutcome:
        # The stage stays where the job stopped: `done` is for a job that finished its work.
        return RunOutcome.CANCELED if self.services.finish_canceled(job_id) else RunOutcome.SKIPPED

    def _finish_failed(self, job_id: str, code: ErrorCode | str, message: str) -> RunOutcome:
        return RunOutcome.FAILED if self.services.fail_job(job_id, code, message) else RunOutcome.SKIPPED

    def _lock_lost(self) -> RunOutcome:
        log.error("job lock lost mid-run; leaving the job to the worker that holds it")
        return RunOutcome.LOCK_LOST
