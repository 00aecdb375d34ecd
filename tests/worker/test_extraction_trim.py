"""``max_frames`` keeps the first frames of a longer clip (issue 21): POST /poses's extraction on the
io worker (in-process on real Redis, local storage, MediaPipe), and the door that still refuses a
clip over the service's frame cap."""

from __future__ import annotations

import pytest

from jobs.extractions import ExtractionStore, new_extraction_id, video_key
from tests.support.clips import astronaut_mp4
from tests.support.jobs import noop_runner
from tests.worker.test_extraction import RecordingQueue
from worker.extraction import run_extraction

pytest.importorskip("mediapipe")


@pytest.fixture
def services(store, redis_srv, tmp_path):
    _, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=RecordingQueue())
    return store, storage, runner.services


@pytest.mark.parametrize("fps", [4, None])
def test_a_requested_max_frames_keeps_the_first_frames_and_the_report_says_so(services, fps):
    store, storage, job_services = services
    clip = astronaut_mp4(8, fps=8)  # 1 s: 4 frames at 4 fps, 8 at its own rate
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, "mp4")
    storage.put_bytes(key, clip, "video/mp4")
    records = ExtractionStore(store.r, store.p)
    params = {"fps": fps, "start": None, "end": None, "max_frames": 3, "trim": True}
    records.create(extraction_id, "key_a", params, key)
    assert run_extraction(extraction_id, job_services) == "succeeded"
    done = records.get(extraction_id)
    assert len(done["poses"]["frames"]) == 3
    report = done["report"]
    assert report["frames"] == 3 and report["trimmed"] is True and report["max_frames"] == 3
    assert report["frames_sampled"] == 3


def test_without_trim_a_longer_clip_is_still_refused(services):
    store, storage, job_services = services
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, "mp4")
    storage.put_bytes(key, astronaut_mp4(8, fps=8), "video/mp4")
    records = ExtractionStore(store.r, store.p)
    records.create(extraction_id, "key_a", {"fps": 8, "start": None, "end": None, "max_frames": 3}, key)
    assert run_extraction(extraction_id, job_services) == "failed"
    assert records.get(extraction_id)["error"]["code"] == "video_too_long"
