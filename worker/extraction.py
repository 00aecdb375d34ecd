"""Driving video -> poses on an io worker (CPU): ``POST /poses`` requests and the ``extracting_poses``
stage of jobs submitted with a driving video. A GPU worker never decodes video.

A job's stage runs while the job is still ``queued`` (no job lock, no attempt: those belong to the
GPU run): it reads ``inputs/{job}/driving_video.*``, extracts at the job's fps (``engine.poses.extract``,
bounded by the job's frame budget and the service's video resolution and duration limits), writes
``inputs/{job}/poses.json``, records the real ``num_frames`` and only then sends the job to ``gpu``.
Progress within the stage is written as frames are detected (at most twice a second); a job
canceled (or deleted) meanwhile is neither extracted further (the next progress write fails and
stops the decoding) nor sent: every write is conditional on the job still being queued. A
redelivered message whose job already has its poses only sends it on (sending twice is safe: the
job lock runs one copy). Extraction refusals fail the job as ``invalid_input`` with the extractor's
code and message; every failure of the stage goes through ``JobServices.fail_job``.

PyAV and MediaPipe are imported on first use; one extraction at a time per process (the detector
is shared and not thread-safe; the io pool runs threads), handed out first come, first served.

Per-key fairness (issue 24, M1; ``jobs.fairness``): an extraction first takes one of its API key's
slots (``extraction_slots_per_key`` across all io workers); when the key has none free the run
returns ``deferred`` and the task retries after ``extraction_defer_s``, its thread freed, so one
key's backlog never queues ahead of another key's extraction.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.contract import ErrorCode, JobStatus, Stage
from jobs.extractions import ExtractionStore
from jobs.fairness import ExtractionSlots
from jobs.intake.limits import ServiceLimits, effective_params
from jobs.intake.videos import video_frame_budget
from jobs.lifecycle import overall_progress
from jobs.services import JobServices
from jobs.storage import ObjectNotFound, StorageUnavailable, input_key
from jobs.store import JobStore

if TYPE_CHECKING:
    from engine.poses.extract import ExtractionResult, NoPersonPolicy

log = logging.getLogger(__name__)


class _FifoLock:
    """A lock handed to its waiters in arrival order (``threading.Lock`` may let a late thread
    barge ahead of one that waited longer: another key's extraction could wait behind several)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._line: deque[object] = deque()

    def __enter__(self) -> None:
        me = object()
        with self._cond:
            self._line.append(me)
            self._cond.wait_for(lambda: self._line[0] is me)

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self._line.popleft()
            self._cond.notify_all()


_LOCK = _FifoLock()
PREVIEW_MAX_SIDE = 256
PROGRESS_EVERY_S = 0.5
"""How often a job's extraction progress is written (and its cancel noticed), at most."""
"""The inline skeleton preview of POST /poses is at most this many pixels on its long side."""
AUDIO_NAME = "audio.wav"
"""The output's sound track (from output time 0, the lead-in silent), an input of the GPU job."""


def _extract(
    data: bytes, limits: ServiceLimits, no_person: NoPersonPolicy = "drop", **options: Any
) -> ExtractionResult:
    """``no_person``: ``"drop"`` for ``POST /poses`` (a motion without its empty frames);
    ``"hold"`` for a driving_video job, so every driven frame keeps its clip time and its sound."""
    from engine.poses.extract import extract_poses

    with _LOCK:
        return extract_poses(
            data,
            no_person=no_person,
            max_pixels=limits.max_video_pixels,
            max_duration=limits.max_video_seconds,
            **options,
        )


def _clip_audio(
    data: bytes, result: ExtractionResult, params: dict[str, Any], limits: ServiceLimits
) -> tuple[bytes | None, str | None]:
    """(the output's sound track as WAV, a note for the job view): the clip's audio from the first
    driven pose's clip time, after the lead-in's silence (``engine.poses.audio.clip_audio``). A clip
    without audio gives no track; one whose audio cannot be used gives no track and a note; one damaged
    part way keeps the sound up to the damage, and its note says where."""
    from engine.poses.audio import AudioError, audio_to_wav, clip_audio

    try:
        track = clip_audio(
            data,
            clip_times=result.times,
            lead_in_frames=1 + params["transition_frames"],
            fps=params["fps"],
            end=params.get("video_end"),
            max_duration=limits.max_video_seconds,
        )
    except AudioError as exc:
        log.info("driving video audio left out", extra={"code": exc.code, "error": str(exc)})
        return None, f"audio left out: {exc} ({exc.code}); the video is silent"
    except Exception as exc:  # never fail a job over its sound
        log.warning("driving video audio failed", exc_info=True)
        return None, f"audio left out: it could not be decoded ({type(exc).__name__}); the video is silent"
    return (None, None) if track is None else (audio_to_wav(track), track.note)


def _refusal(exc: ValueError) -> tuple[str, str]:
    """(the extractor's stable code, its message) of a refused video."""
    return str(getattr(exc, "code", "video_invalid")), str(exc)


def skeleton_data_uri(result: ExtractionResult, tmp_dir: str | None = None) -> str:
    """The skeleton frames of ``result`` as a small H.264 MP4 in a base64 data URI."""
    from engine.poses.previews import write_skeleton_video

    w, h = result.poses.width, result.poses.height
    scale = min(1.0, PREVIEW_MAX_SIDE / max(w, h))
    size = (max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2))
    with tempfile.TemporaryDirectory(dir=tmp_dir) as tmp:
        path = write_skeleton_video(
            result.poses, Path(tmp) / "skeleton.mp4", result.fps, width=size[0], height=size[1]
        )
        return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


def _slots(services: JobServices) -> ExtractionSlots:
    settings = services.settings
    return ExtractionSlots(
        services.store.r,
        services.store.p,
        settings.extraction_slots_per_key,
        settings.extraction_slot_ttl_s,
        settings.extraction_defer_s,
    )


def run_extraction(extraction_id: str, services: JobServices) -> str:
    """One ``POST /poses`` request: extract, store the result in its record, delete the clip.
    Returns ``succeeded``, ``failed``, ``skipped`` (gone or already done) or ``deferred`` (its key
    has no free extraction slot: retry later)."""
    record = ExtractionStore(services.store.r, services.store.p).get(extraction_id)
    if record is None or record["status"] != "queued":
        if record is not None:  # a redelivered copy of a finished one: out of its key's line
            _slots(services).leave(str(record.get("owner")), extraction_id)
        return "skipped"
    with _slots(services).held(str(record.get("owner")), extraction_id) as held:
        return _run_extraction(extraction_id, services) if held else "deferred"


def _run_extraction(extraction_id: str, services: JobServices) -> str:
    settings, store, storage = services.settings, services.store, services.storage
    extractions = ExtractionStore(store.r, store.p)
    record = extractions.get(extraction_id)
    if record is None or record["status"] != "queued":
        return "skipped"
    params = record["params"]
    try:
        data = storage.get_bytes(record["video_key"])
        result = _extract(
            data,
            ServiceLimits.from_settings(settings),
            fps=params.get("fps"),
            start=params.get("start"),
            end=params.get("end"),
            max_frames=params["max_frames"],
            trim=bool(params.get("trim")),
            parts=params.get("parts", "full"),
        )
        preview = skeleton_data_uri(result, str(settings.worker_tmp_dir) if settings.worker_tmp_dir else None)
        extractions.succeed(extraction_id, result.poses.to_compact(), result.report(), preview)
        return "succeeded"
    except ObjectNotFound:
        extractions.fail(
            extraction_id, "video_missing", "the uploaded video is no longer stored; send it again"
        )
    except StorageUnavailable:
        extractions.fail(extraction_id, "storage_unavailable", "object storage is unavailable; retry")
    except ValueError as exc:  # ExtractionError (with its code), DetectorUnavailable
        code, message = _refusal(exc)
        extractions.fail(extraction_id, code, message)
    finally:
        try:
            storage.delete_prefix(f"extractions/{extraction_id}")
        except Exception:
            log.warning("could not delete the extracted clip", exc_info=True)
    return "failed"


class _NoLongerQueued(Exception):
    """Raised from the progress callback to stop an extraction whose job was canceled or deleted."""


class _StageProgress:
    """The extractor's ``progress(done, total)`` as the job's ``extracting_poses`` progress (at most
    every ``PROGRESS_EVERY_S``, a progress event each time); the write fails once the job is no longer
    queued, which stops the extraction."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id, self.last = store, job_id, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S:
            return
        self.last = now
        progress = overall_progress(Stage.EXTRACTING_POSES.value, done / max(total, 1))
        if not self.store.update_queued(self.job_id, progress=progress):
            raise _NoLongerQueued


def run_job_extraction(job_id: str, services: JobServices) -> str:
    """The ``extracting_poses`` stage of a queued job. Returns ``sent`` (poses written, job sent to
    gpu), ``failed`` (``services.fail_job``), ``skipped`` (not queued any more: canceled, failed,
    deleted, running) or ``deferred`` (its key has no free extraction slot: retry later)."""
    record = services.store.get(job_id)
    if record is None or record.status is not JobStatus.QUEUED:
        if record is not None:  # canceled (or failed) while waiting: out of its key's line
            _slots(services).leave(record.owner, job_id)
        return "skipped"
    with _slots(services).held(record.owner, job_id) as held:
        return _run_job_extraction(job_id, services) if held else "deferred"


def _run_job_extraction(job_id: str, services: JobServices) -> str:
    settings, store, storage, queue = services.settings, services.store, services.storage, services.queue
    record = store.get(job_id)
    if record is None or record.status is not JobStatus.QUEUED:
        return "skipped"
    if "poses.json" in record.inputs:  # a redelivered message: the poses are there; send it on
        queue.enqueue_animation(job_id)
        return "sent"
    videos = [name for name in record.inputs if name.startswith("driving_video.")]
    if not videos:
        services.fail_job(job_id, ErrorCode.INVALID_INPUT, "the job has neither poses nor a driving video")
        return "failed"
    params = effective_params(record.params)
    limits = ServiceLimits.from_settings(settings)
    budget = video_frame_budget(limits, params["transition_frames"])
    if not store.update_queued(job_id, stage=Stage.EXTRACTING_POSES.value, progress=0.0):
        return "skipped"
    started = time.perf_counter()
    try:
        data = storage.get_bytes(input_key(job_id, videos[0]))
        result = _extract(
            data,
            limits,
            no_person="hold",
            fps=params["fps"],
            start=params.get("video_start"),
            end=params.get("video_end"),
            max_frames=budget,
            parts=params["parts"],
            progress=_StageProgress(store, job_id),
        )
    except _NoLongerQueued:  # canceled (or deleted) while extracting: stop decoding, send nothing
        log.info("extraction stopped: the job is no longer queued")
        return "skipped"
    except (ObjectNotFound, StorageUnavailable) as exc:
        code = (
            ErrorCode.STORAGE_UNAVAILABLE if isinstance(exc, StorageUnavailable) else ErrorCode.INTERNAL_ERROR
        )
        services.fail_job(job_id, code, "the driving video could not be read from storage")
        return "failed"
    except ValueError as exc:
        refusal, message = _refusal(exc)
        log.info("driving video refused", extra={"code": refusal, "error": message})
        services.fail_job(job_id, ErrorCode.INVALID_INPUT, f"driving_video: {message} ({refusal})")
        return "failed"
    poses = result.poses.to_compact()
    if store.get(job_id) is None:
        return "skipped"
    num_frames = 1 + params["transition_frames"] + len(result.poses)
    inputs, notes = [*record.inputs], [*record.notes]
    if params["audio"]:
        audio_wav, note = _clip_audio(data, result, params, limits)
        if audio_wav is not None:
            storage.put_bytes(input_key(job_id, AUDIO_NAME), audio_wav, "audio/wav")
            inputs.append(AUDIO_NAME)
        if note:
            notes.append(note)
    storage.put_bytes(input_key(job_id, "poses.json"), json.dumps(poses).encode(), "application/json")
    seconds = round(time.perf_counter() - started, 4)
    from engine.inputs.timing import frame_timeline

    recorded = store.update_queued(
        job_id,
        inputs=[*inputs, "poses.json"],
        notes=notes,
        timeline=frame_timeline(num_frames, params["fps"], params["transition_frames"], result.times),
        num_frames=num_frames,
        progress=overall_progress(Stage.EXTRACTING_POSES.value, 1.0),
        timings={**record.timings, Stage.EXTRACTING_POSES.value: seconds},
    )
    if not recorded:  # canceled while extracting: never sent to a GPU
        return "skipped"
    log.info("poses extracted", extra={"frames": len(result.poses), "seconds": seconds})
    queue.enqueue_animation(job_id)
    return "sent"
