"""Driving videos at the API (real Redis, no worker): POST /animations with driving_video and POST /poses.
What the API checks itself (motion given once, bytes, container magic, parameters), refused with a
stable problem code and nothing queued; an accepted video job goes to io, never straight to gpu."""

from __future__ import annotations

import base64
import json

import pytest

from jobs.contract import EXAMPLE_POSES
from jobs.queue import JOB_EXTRACT_TASK
from tests.support.api import assert_problem, nothing_enqueued
from tests.support.clips import astronaut_mp4
from tests.support.payloads import data_uri, job_body, png_bytes

CLIP = astronaut_mp4(4, fps=8, side=96, canvas=(128, 112))


def video_body(**overrides):
    body = job_body(**overrides)
    body.pop("poses")
    return {"driving_video": data_uri(CLIP, "video/mp4"), **body, **overrides}


def broker(client):
    return client.app.state.services.queue.app.connection_for_write().default_channel.client


def nothing_sent_anywhere(client):
    nothing_enqueued(client)
    assert broker(client).llen("io") == 0


def test_a_video_job_is_stored_and_sent_to_io_with_an_estimated_frame_count(client):
    r = client.post("/animations", json=video_body(transition_frames=2))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["stage"] == "queued"
    # Until its poses are extracted: 1 + transition + the frame budget (MAX_FRAMES, 64).
    assert job["num_frames"] == 1 + 2 + 64
    services = client.app.state.services
    assert services.storage.get_bytes(f"inputs/{job['id']}/driving_video.mp4") == CLIP
    assert services.store.get(job["id"]).inputs == ["image.png", "driving_video.mp4"]
    assert broker(client).llen("gpu") == 0
    message = json.loads(broker(client).lindex("io", 0))
    assert message["headers"]["task"] == JOB_EXTRACT_TASK
    assert json.loads(base64.b64decode(message["body"]))[0] == [job["id"]]


def test_a_video_job_by_multipart_upload(client):
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "driving_video": ("dance.mp4", CLIP, "video/mp4"),
    }
    r = client.post("/animations", files=files, data={"prompt": "a dancer", "video_end": "0.25"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["params"]["video_end"] == 0.25
    assert client.app.state.services.storage.get_bytes(f"inputs/{job['id']}/driving_video.mp4") == CLIP


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (lambda: {k: v for k, v in job_body().items() if k != "poses"}, "motion_missing"),
        (lambda: {**job_body(), "driving_video": data_uri(CLIP, "video/mp4")}, "motion_ambiguous"),
        (lambda: {**job_body(), "video_start": 1.0}, "video_options_without_video"),
        (lambda: video_body(video_start=2.0, video_end=1.0), "parameter_out_of_range"),
        (lambda: video_body(driving_video="ftp://example.com/a.mp4"), "video_reference_invalid"),
        (lambda: video_body(driving_video="data:video/mp4;base64,@@@"), "video_data_uri_invalid"),
    ],
)
def test_motion_given_wrong_is_refused_with_a_stable_code(client, body, code):
    assert_problem(client.post("/animations", json=body()), 422, code)
    nothing_sent_anywhere(client)


@pytest.mark.parametrize(
    "data",
    [
        png_bytes(),  # an image, not a video
        b"this is not a video at all",
        b"\x00" * 64,
    ],
)
def test_things_that_are_not_videos_are_refused_unstored(client, data):
    assert_problem(
        client.post("/animations", json=video_body(driving_video=data_uri(data))),
        415,
        "video_type_unsupported",
    )
    nothing_sent_anywhere(client)


def test_a_video_over_the_byte_limit_is_413(make_client, make_settings):
    client = make_client(make_settings(max_video_bytes=4096))
    big = CLIP + b"\x00" * 8192
    assert_problem(
        client.post("/animations", json=video_body(driving_video=data_uri(big))), 413, "video_too_large"
    )
    files = {"image": ("a.png", png_bytes(), "image/png"), "driving_video": ("d.mp4", big, "video/mp4")}
    assert_problem(client.post("/animations", files=files, data={"prompt": "p"}), 413, "video_too_large")
    nothing_sent_anywhere(client)


def test_a_private_video_url_is_refused_by_the_ssrf_guard(client):
    r = client.post("/animations", json=video_body(driving_video="http://127.0.0.1:9/clip.mp4"))
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    nothing_sent_anywhere(client)


def test_poses_endpoint_refuses_non_videos_and_oversized_clips_before_queueing(make_client, make_settings):
    client = make_client(make_settings(max_video_bytes=len(CLIP) + 10))
    assert_problem(
        client.post("/poses", json={"video": data_uri(png_bytes())}), 415, "video_type_unsupported"
    )
    too_big = data_uri(CLIP + b"\x00" * 64, "video/mp4")
    assert_problem(client.post("/poses", json={"video": too_big}), 413, "video_too_large")
    assert_problem(
        client.post("/poses", json={"video": data_uri(CLIP), "max_frames": 10_000}),
        422,
        "parameter_out_of_range",
    )
    assert_problem(
        client.post("/poses", json={"video": data_uri(CLIP), "start": 2, "end": 1}),
        422,
        "parameter_out_of_range",
    )
    assert_problem(client.post("/poses", json={"video": data_uri(CLIP), "fps": 0}), 422, "validation_error")
    assert_problem(
        client.post("/poses", content=b"x", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert broker(client).llen("io") == 0 and broker(client).llen("gpu") == 0


def test_poses_endpoint_answers_202_with_a_location_while_no_worker_extracts(client, monkeypatch):
    import api.routes.poses as poses

    monkeypatch.setattr(poses, "POSES_WAIT_S", 0.2)
    r = client.post("/poses", files={"video": ("clip.mp4", CLIP, "video/mp4")}, data={"fps": "4"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and r.headers["location"] == f"/poses/{body['id']}"
    assert client.get(r.headers["location"]).json()["status"] == "queued"
    assert broker(client).llen("io") == 1 and broker(client).llen("gpu") == 0


def test_another_keys_extraction_is_not_found(client, make_client, monkeypatch):
    import api.routes.poses as poses
    from tests.support.api import KEY_B

    monkeypatch.setattr(poses, "POSES_WAIT_S", 0.0)
    location = client.post("/poses", json={"video": data_uri(CLIP, "video/mp4")}).headers["location"]
    other = make_client(client.app.state.services.settings, key=KEY_B)
    assert_problem(other.get(location), 404, "not_found")
    assert client.get("/poses/pose_01JD8X3K4M5N6P7Q8R9S0T1V2W").status_code == 404
    assert client.get("/poses/nope").status_code == 422


def test_poses_still_work_alone(client):
    r = client.post("/animations", json=job_body(poses=EXAMPLE_POSES))
    assert r.status_code == 202 and broker(client).llen("gpu") == 1 and broker(client).llen("io") == 0
