"""Driving videos at the API (real Redis, no worker): POST /animations with driving_video and POST /poses.
What the API checks itself (motion given once, bytes, container magic, parameters, and the clip's
header and packets: truncated, damaged, too many pixels, too long), refused with a stable problem
code, nothing stored and nothing queued; an accepted video job goes to io, never straight to gpu."""

from __future__ import annotations

import base64
import json

import pytest

from jobs.contract import EXAMPLE_POSES
from jobs.queue import JOB_EXTRACT_TASK
from tests.support.api import assert_problem, nothing_enqueued
from tests.support.clips import astronaut_mp4, blank_mp4
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
    # Until its poses are extracted: 1 + transition + the frames the clip gives at the job's fps
    # (0.5 s at the default 8 fps: 4), from the probe of its header and packets.
    assert job["num_frames"] == 1 + 2 + 4
    services = client.app.state.services
    assert services.storage.get_bytes(f"inputs/{job['id']}/driving_video.mp4") == CLIP
    assert services.store.get(job["id"]).inputs == ["image.png", "driving_video.mp4"]
    assert broker(client).llen("gpu") == 0
    message = json.loads(broker(client).lindex("io", 0))
    assert message["headers"]["task"] == JOB_EXTRACT_TASK
    assert json.loads(base64.b64decode(message["body"]))[0] == [job["id"]]
    fewer = client.post("/animations", json=video_body(fps=4, video_start=0.25)).json()
    assert fewer["num_frames"] == 1 + 4 + 1  # default 4 transition frames; 0.25 s at 4 fps


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


def nothing_stored(client):
    storage = client.app.state.services.storage
    assert storage.list_jobs("inputs") == {} and storage.list_jobs("extractions") == {}


HOSTILE = {
    # A faststart MP4 cut short: the index promises frames the file no longer holds.
    "truncated": (lambda: CLIP[: len(CLIP) * 2 // 3], 422, "video_unreadable"),
    "cut_to_the_header": (lambda: CLIP[:200], 422, "video_unreadable"),
    "huge_dimensions": (lambda: blank_mp4(4096, 2304), 413, "video_too_large"),
    # 70 frames at 4 fps: more than the 64-frame budget at the job's 8 fps (and 17.5 s).
    "too_many_frames": (lambda: astronaut_mp4(70, fps=4, side=48, canvas=(64, 64)), 413, "video_too_long"),
    "too_long": (lambda: blank_mp4(64, 64, pts=[0, 8 * 300]), 413, "video_too_long"),  # 300 s
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_clips_are_refused_at_submission_unstored_and_unqueued(client, name):
    make, status, code = HOSTILE[name]
    clip = make()
    assert_problem(client.post("/animations", json=video_body(driving_video=data_uri(clip))), status, code)
    files = {"image": ("a.png", png_bytes(), "image/png"), "driving_video": ("d.mp4", clip, "video/mp4")}
    problem = assert_problem(client.post("/animations", files=files, data={"prompt": "p"}), status, code)
    assert "driving_video" in problem["detail"]
    assert_problem(client.post("/poses", files={"video": ("d.mp4", clip, "video/mp4")}), status, code)
    nothing_sent_anywhere(client)
    nothing_stored(client)


def test_a_clip_too_long_for_the_jobs_sampling_is_admitted_when_trimmed(client):
    long_clip = astronaut_mp4(70, fps=4, side=48, canvas=(64, 64))
    r = client.post("/animations", json=video_body(driving_video=data_uri(long_clip), video_end=4.0))
    assert r.status_code == 202, r.text
    assert r.json()["num_frames"] == 1 + 4 + 32  # 4 s at 8 fps


def test_the_video_limits_are_the_operators(make_client, make_settings):
    client = make_client(make_settings(max_video_seconds=0.25, max_video_pixels=64 * 64))
    assert_problem(client.post("/animations", json=video_body()), 413, "video_too_large")  # 128x112
    small = astronaut_mp4(4, fps=8, side=48, canvas=(64, 64))  # 0.5 s
    assert_problem(
        client.post("/animations", json=video_body(driving_video=data_uri(small))), 413, "video_too_long"
    )
    assert_problem(client.post("/poses", json={"video": data_uri(small)}), 413, "video_too_long")
    r = client.post("/animations", json=video_body(driving_video=data_uri(small), video_end=0.25))
    assert r.status_code == 202, r.text


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


def test_both_submission_endpoints_read_bodies_with_the_one_reader(client):
    """The same malformed multipart and non-object JSON answers from POST /animations and /poses."""
    broken = {"content": b"--b\r\nnot a part", "headers": {"content-type": "multipart/form-data; boundary=b"}}
    for path in ("/animations", "/poses"):
        r = client.post(path, **broken)
        assert_problem(r, 400, "malformed_multipart")
        assert r.json()["detail"].startswith("the multipart body does not parse")
        assert_problem(client.post(path, json=[1, 2]), 422, "validation_error")
        assert_problem(
            client.post(path, content=b"{", headers={"content-type": "application/json"}),
            400,
            "malformed_json",
        )
    assert broker(client).llen("io") == 0 and broker(client).llen("gpu") == 0
