"""Driving video end to end on real parts: the API (uvicorn), Redis, the worker's io consumer
extracting with MediaPipe, its gpu consumer animating with the tiny model, S3 (moto). A clip of the
astronaut photo goes in; the MP4, its previews and the extracted poses come out. Hostile clips are
refused with 4xx at submission (their header and packets are probed); a clip that is a video but has
nobody in it fails the job as invalid_input on io. Neither reaches the GPU."""

from __future__ import annotations

import base64
import io
import json

import av
import httpx
import pytest

from tests.integration.test_service import body
from tests.support.clips import astronaut_mp4, blank_mp4
from tests.support.payloads import data_uri

pytestmark = pytest.mark.integration
pytest.importorskip("mediapipe")

CLIP = astronaut_mp4(4, fps=4)  # 1 s, 4 frames of the astronaut sliding right


def decoded_frames(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def post_video_job(service, clip: bytes, **overrides) -> httpx.Response:
    fields = {k: str(v) for k, v in body(**overrides).items() if k not in ("image", "poses", "source_pose")}
    fields["source_pose"] = json.dumps(body()["source_pose"])  # the orange square has no detectable pose
    files = {
        "image": ("a.png", base64.b64decode(body()["image"].split(",", 1)[1]), "image/png"),
        "driving_video": ("dance.mp4", clip, "video/mp4"),
    }
    return service.api.post(
        "/animations", files=files, data=fields, headers={"Prefer": "wait=90"}, timeout=120
    )


def video_job(service, clip: bytes, **overrides):
    r = post_video_job(service, clip, **overrides)
    assert r.status_code in (200, 202), r.text
    return service.wait_for_job(r.json()["id"], lambda j: j["status"] in ("succeeded", "failed", "canceled"))


def test_video_in_mp4_and_previews_out(service):
    job = video_job(service, CLIP)
    assert job["status"] == "succeeded", (job["error"], service.log_tail(30))
    # The clip sampled at the job's 4 fps: 4 target frames, plus the source and 1 transition frame.
    assert job["num_frames"] == 1 + 1 + 4
    assert "extracting_poses" in job["timings"] and job["attempts"] == 1
    out = job["output"]
    assert decoded_frames(httpx.get(out["video_url"]).content) == job["num_frames"]
    assert decoded_frames(httpx.get(out["skeleton_url"]).content) == job["num_frames"]
    assert decoded_frames(httpx.get(out["side_by_side_url"]).content) == job["num_frames"]
    assert len(httpx.get(out["poses_url"]).json()["frames"]) == job["num_frames"]


def test_poses_endpoint_returns_the_sequence_a_report_and_a_skeleton_preview(service):
    r = service.api.post("/poses", json={"video": data_uri(CLIP, "video/mp4"), "fps": 4}, timeout=60)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["status"] == "succeeded" and len(got["poses"]["frames"]) == 4
    assert (got["poses"]["width"], got["poses"]["height"]) == (320, 256)
    assert got["report"]["frames_without_person"] == [] and got["report"]["parts"] == "full"
    assert got["report"]["detector"] == "mediapipe-holistic"  # the whole body by default (issue 20)
    preview = base64.b64decode(got["skeleton_mp4"].split(",", 1)[1])
    assert decoded_frames(preview) == 4
    assert service.api.get(f"/poses/{got['id']}").json()["poses"] == got["poses"]


@pytest.mark.parametrize(
    ("make_clip", "code", "status"),
    [
        (lambda: CLIP[: len(CLIP) // 3], "video_unreadable", 422),  # truncated
        (lambda: blank_mp4(4096, 2304), "video_too_large", 413),  # huge dimensions (header)
        (lambda: astronaut_mp4(70, fps=4, side=48, canvas=(64, 64)), "video_too_long", 413),  # frame cap
    ],
    ids=["truncated", "huge", "too_long"],
)
def test_hostile_clips_are_refused_and_never_reach_the_gpu(service, make_clip, code, status):
    clip = make_clip()
    r = service.api.post("/poses", files={"video": ("clip.mp4", clip, "video/mp4")}, timeout=60)
    assert r.status_code == status and r.json()["code"] == code, r.text
    r = post_video_job(service, clip)
    assert r.status_code == status and r.json()["code"] == code, r.text
    assert "driving_video" in r.json()["detail"]


def test_a_clip_with_nobody_in_it_fails_on_io_and_never_reaches_the_gpu(service):
    r = service.api.post(
        "/poses", files={"video": ("clip.mp4", blank_mp4(64, 64, 4), "video/mp4")}, timeout=60
    )
    assert r.status_code == 422 and r.json()["code"] == "no_person", r.text
    job = video_job(service, blank_mp4(64, 64, 4))
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_input", job
    assert "no_person" in job["error"]["message"]
    assert job["attempts"] == 0 and job["model"] is None  # no GPU attempt ever started


def test_not_a_video_is_refused_at_the_api(service):
    r = service.api.post("/poses", files={"video": ("clip.mp4", b"GIF-not-really", "video/mp4")})
    assert r.status_code == 415 and r.json()["code"] == "video_type_unsupported"
