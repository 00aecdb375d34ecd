"""The extracting_poses stage and POST /poses extractions, in-process on real Redis, local storage and
the real detector (MediaPipe) over a clip of the astronaut photo; then the noop GPU run of the job."""

from __future__ import annotations

import base64
import io
import json

import av
import pytest

from engine.inputs.rules import DEFAULTS
from jobs.contract import JobStatus
from jobs.extractions import ExtractionStore, new_extraction_id, video_key
from jobs.intake.acceptance import ValidatedJob, accept_job
from jobs.intake.limits import effective_params
from jobs.storage import ObjectNotFound
from jobs.store import new_job_id
from tests.support.clips import astronaut_mp4
from tests.support.jobs import noop_runner, png
from worker.extraction import run_extraction, run_job_extraction

pytest.importorskip("mediapipe")


class RecordingQueue:
    """Which messages were sent where (nothing is consumed)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def enqueue_animation(self, job_id):
        self.sent.append(("gpu", job_id))

    def enqueue_job_extraction(self, job_id):
        self.sent.append(("io", job_id))

    def enqueue_webhook(self, *args, **kwargs):
        self.sent.append(("webhook", args[0]))


@pytest.fixture(scope="module")
def clip() -> bytes:
    return astronaut_mp4(8, fps=8)


@pytest.fixture
def env(store, redis_srv, tmp_path):
    queue = RecordingQueue()
    settings, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=queue)
    return settings, store, storage, queue, runner


def submit_video(env, video: bytes, **params):
    _, store, storage, queue, _ = env
    effective = effective_params({"prompt": "a person", "steps": 2, "fps": 8, "size": 64, **params})
    job = ValidatedJob(
        params=effective,
        image_png=png(),
        poses=None,
        driving_video=video,
        num_frames=1 + effective["transition_frames"] + 63,
    )
    return accept_job(new_job_id(), "key_a", job, store=store, storage=storage, queue=queue, max_active=10)


def run_stage(env, job_id):
    return run_job_extraction(job_id, env[-1].services)


def test_a_video_job_goes_to_io_first_then_to_gpu_with_its_extracted_poses(env, clip):
    _, store, storage, queue, runner = env
    record = submit_video(env, clip)
    assert queue.sent == [("io", record.id)]  # never straight to a GPU
    assert record.inputs == ["image.png", "driving_video.mp4"]
    assert run_stage(env, record.id) == "sent"
    assert queue.sent[-1] == ("gpu", record.id)
    queued = store.get(record.id)
    assert queued.status is JobStatus.QUEUED and "poses.json" in queued.inputs
    poses = json.loads(storage.get_bytes(f"inputs/{record.id}/poses.json"))
    # 8 frames at 8 fps sampled at the job's fps, on the clip's canvas; num_frames now exact.
    assert len(poses["frames"]) == 8 and (poses["width"], poses["height"]) == (320, 256)
    t = DEFAULTS.transition_frames
    assert queued.num_frames == 1 + t + 8 and "extracting_poses" in queued.timings

    assert runner.run(record.id) == "succeeded"
    done = store.get(record.id)
    with av.open(io.BytesIO(storage.get_bytes(done.outputs["video"]))) as container:
        assert sum(1 for _ in container.decode(video=0)) == done.num_frames == 1 + t + 8
    assert "extracting_poses" in done.timings


def test_the_stage_samples_at_the_job_fps_and_trims(env, clip):
    storage = env[2]
    record = submit_video(env, clip, fps=4, video_start=0.25)
    assert run_stage(env, record.id) == "sent"
    poses = json.loads(storage.get_bytes(f"inputs/{record.id}/poses.json"))
    assert len(poses["frames"]) == 3  # a 1 s clip from 0.25 s at 4 fps: samples at 0.25, 0.5, 0.75 s


def test_a_redelivered_stage_message_only_sends_the_job_on(env, clip):
    _, store, _, queue, _ = env
    record = submit_video(env, clip)
    run_stage(env, record.id)
    inputs = store.get(record.id).inputs
    assert run_stage(env, record.id) == "sent"
    assert store.get(record.id).inputs == inputs and queue.sent.count(("gpu", record.id)) == 2


def test_a_job_canceled_before_its_extraction_is_never_extracted_nor_sent(env, clip):
    _, store, _, queue, _ = env
    record = submit_video(env, clip)
    store.request_cancel(record.id)
    assert run_stage(env, record.id) == "skipped"
    assert ("gpu", record.id) not in queue.sent
    assert "poses.json" not in store.get(record.id).inputs


def test_a_cancel_landing_during_extraction_wins(env, clip, monkeypatch):
    _, store, _, queue, _ = env
    record = submit_video(env, clip)
    import worker.extraction as extraction

    real = extraction._extract

    def extract_then_cancel(data, limits, **options):
        result = real(data, limits, **options)
        store.request_cancel(record.id)
        return result

    monkeypatch.setattr(extraction, "_extract", extract_then_cancel)
    assert run_stage(env, record.id) == "skipped"
    assert store.get(record.id).status is JobStatus.CANCELED and ("gpu", record.id) not in queue.sent


def test_the_stage_reports_its_progress_as_frames_are_detected(env, clip, monkeypatch):
    _, store, _, _, _ = env
    record = submit_video(env, clip)
    import worker.extraction as extraction

    monkeypatch.setattr(extraction, "PROGRESS_EVERY_S", 0.0)
    seen: list[float] = []
    update = store.update_queued

    def recording(job_id, **fields):
        seen.append(fields.get("progress"))
        return update(job_id, **fields)

    monkeypatch.setattr(store, "update_queued", recording)
    assert run_stage(env, record.id) == "sent"
    # The stage start, one write per detected frame (8), then the end with the poses.
    assert seen[0] == 0.0 and len(seen) == 1 + 8 + 1
    assert seen[1:-1] == sorted(seen[1:-1]) and 0 < seen[1] < seen[-2] == seen[-1] == 0.03


def test_a_cancel_during_extraction_stops_the_decoding(env, clip, monkeypatch):
    _, store, _, queue, _ = env
    record = submit_video(env, clip)
    import engine.poses.extract
    import worker.extraction as extraction

    monkeypatch.setattr(extraction, "PROGRESS_EVERY_S", 0.0)
    detected = []
    detect = engine.poses.extract._detect

    def detect_then_cancel(*args):
        detected.append(1)
        if len(detected) == 2:
            store.request_cancel(record.id)
        return detect(*args)

    monkeypatch.setattr(engine.poses.extract, "_detect", detect_then_cancel)
    assert run_stage(env, record.id) == "skipped"
    assert len(detected) == 2  # of the clip's 8 frames: the progress write after the cancel stopped it
    assert store.get(record.id).status is JobStatus.CANCELED and ("gpu", record.id) not in queue.sent


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda clip: clip[: len(clip) // 3], "video_unreadable"),
        (lambda clip: b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video_unreadable"),
    ],
)
def test_an_unreadable_video_fails_the_job_as_invalid_input_with_the_extractor_code(env, clip, mangle, code):
    _, store, _, queue, _ = env
    record = submit_video(env, mangle(clip))
    assert run_stage(env, record.id) == "failed"
    failed = store.get(record.id)
    assert failed.status is JobStatus.FAILED and failed.error_code == "invalid_input"
    assert code in failed.error_message and failed.error_message.startswith("driving_video:")
    assert ("gpu", record.id) not in queue.sent


def test_a_clip_longer_than_the_job_frame_budget_is_refused_before_decoding(env, clip):
    settings, store, _, queue, _ = env
    settings.__dict__["max_frames"] = 5  # budget: 5 target frames; the clip gives 8 at 8 fps
    record = submit_video(env, clip)
    assert run_stage(env, record.id) == "failed"
    assert "video_too_long" in store.get(record.id).error_message
    assert ("gpu", record.id) not in queue.sent


def test_a_pose_extraction_request_stores_poses_report_and_an_inline_skeleton(env, clip):
    _, store, storage, _, runner = env
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, "mp4")
    storage.put_bytes(key, clip, "video/mp4")
    records = ExtractionStore(store.r, store.p)
    records.create(extraction_id, "key_a", {"fps": 4, "start": None, "end": None, "max_frames": 64}, key)
    assert run_extraction(extraction_id, runner.services) == "succeeded"
    done = records.get(extraction_id)
    assert done["status"] == "succeeded" and len(done["poses"]["frames"]) == 4
    assert done["report"]["frames"] == 4 and done["report"]["frames_without_person"] == []
    prefix = "data:video/mp4;base64,"
    assert done["skeleton_mp4"].startswith(prefix)
    with av.open(io.BytesIO(base64.b64decode(done["skeleton_mp4"][len(prefix) :]))) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 4 and max(frames[0].width, frames[0].height) == 256
    with pytest.raises(ObjectNotFound):  # the clip is deleted once read
        storage.get_bytes(key)
    assert run_extraction(extraction_id, runner.services) == "skipped"


def test_a_refused_extraction_request_records_the_code(env):
    _, store, storage, _, runner = env
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, "mp4")
    storage.put_bytes(key, b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "video/mp4")
    records = ExtractionStore(store.r, store.p)
    records.create(extraction_id, "key_a", {"fps": None, "start": None, "end": None, "max_frames": 64}, key)
    assert run_extraction(extraction_id, runner.services) == "failed"
    assert records.get(extraction_id)["error"]["code"] == "video_unreadable"
