"""``/v1/videos``: OpenAI's shape over the same jobs (the mapping, errors, one intake). The official SDK
drives the real stack in tests/integration/test_openai_sdk.py; these check the facade over HTTP."""

from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from jobs import openai_compat as oa
from jobs.contract import EXAMPLE_POSES, JobStatus, WebhookEvent
from jobs.spritesheet import spritesheet
from jobs.store import JobRecord
from tests.support.api import KEY_B, assert_problem, finish_with_outputs
from tests.support.payloads import data_uri, job_body, png_bytes


def create(client, *, files=None, **fields):
    """A multipart create as the SDK sends it (extension fields as form fields, poses as JSON text)."""
    data = {"prompt": "a person", "steps": "2", "size": "64x64", "poses": json.dumps(EXAMPLE_POSES), **fields}
    files = files if files is not None else {"input_reference": ("me.png", png_bytes(), "image/png")}
    return client.post("/v1/videos", data=data, files=files)


def assert_openai_error(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert error["message"]
    return error


def test_create_is_a_job_visible_through_both_apis(client):
    r = create(client, seconds="8", webhook_url=None)
    assert r.status_code == 200, r.text
    video = r.json()
    assert video["object"] == "video" and video["status"] == "queued" and video["progress"] == 0
    assert video["model"] == oa.SERVED_MODEL and video["size"] == "64x64" and video["prompt"] == "a person"
    assert r.headers["openai-poll-after-ms"]
    job = client.get(f"/animations/{video['id']}").json()
    assert job["params"]["width"] == 64 and job["params"]["height"] == 64 and job["params"]["steps"] == 2
    assert client.get(f"/v1/videos/{video['id']}").json() == video
    assert video["id"] in [v["id"] for v in client.get("/v1/videos").json()["data"]]


def test_json_create_takes_an_image_url_object(client):
    body = {
        "prompt": "a person",
        "input_reference": {"image_url": data_uri(png_bytes())},
        "poses": EXAMPLE_POSES,
        "steps": 2,
        "size": "64x96",
    }
    r = client.post("/v1/videos", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == "64x96"


def test_multipart_files_for_the_motion_and_the_character(client):
    files = {
        "input_reference": ("me.png", png_bytes(), "image/png"),
        "poses": ("poses.json", json.dumps(EXAMPLE_POSES).encode(), "application/json"),
    }
    r = client.post("/v1/videos", data={"prompt": "a person", "steps": "2", "size": "64"}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == "64x64"
    storage = client.app.state.services.storage
    assert json.loads(storage.get_bytes(f"inputs/{r.json()['id']}/poses.json"))["frames"]


def test_seconds_caps_the_motion(client):
    poses = {**EXAMPLE_POSES, "frames": EXAMPLE_POSES["frames"] * 8}  # 16 frames
    r = create(client, poses=json.dumps(poses), fps="4", transition_frames="1", seconds="2")
    assert r.status_code == 200, r.text
    job = client.get(f"/animations/{r.json()['id']}").json()
    assert job["num_frames"] == 1 + 1 + 8  # source + transition + 2 s at 4 fps


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"model": "sora-2"}, "model_not_found", "model"),
        ({"size": "big"}, "size_invalid", "size"),
        ({"seconds": "-1"}, "seconds_invalid", "seconds"),
        ({"poses": json.dumps({"frames": [[[1, 2, 1]]]})}, "pose_keypoint_count", "poses"),
        ({"steps": "100000"}, "parameter_out_of_range", "steps"),
        ({"unknown_knob": "1"}, "validation_error", "unknown_knob"),
    ],
)
def test_refusals_are_openai_errors_with_our_codes(client, fields, code, param):
    error = assert_openai_error(create(client, **fields), 400, code)
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"] == param


def test_the_same_bad_input_gets_the_same_code_through_both_apis(client):
    """One intake: the pose file, the image and the parameters are refused by the same checks."""
    bad = [
        ({"poses": json.dumps({"frames": [[[1, 2, 1]]]})}, {}),
        ({"prompt": "   "}, {}),
        ({"steps": "100000"}, {}),
        ({}, {"input_reference": ("x.png", b"not an image", "image/png")}),
    ]
    for fields, files in bad:
        v1 = create(client, files=files or None, **fields)
        ours_files = (
            {"image": files["input_reference"]} if files else {"image": ("me.png", png_bytes(), "image/png")}
        )
        data = {
            "prompt": "a person",
            "steps": "2",
            "size": "64",
            "poses": json.dumps(EXAMPLE_POSES),
            **fields,
        }
        animations = client.post("/animations", data=data, files=ours_files)
        assert animations.headers["content-type"] == "application/problem+json", animations.text
        assert v1.json()["error"]["code"] == animations.json()["code"], (fields, v1.text, animations.text)


def test_auth_not_found_and_other_keys_videos(make_client, client):
    video_id = create(client).json()["id"]
    anonymous = make_client(key=None)
    assert (
        assert_openai_error(anonymous.get("/v1/videos"), 401, "unauthorized")["type"]
        == "authentication_error"
    )
    assert_openai_error(make_client(key=KEY_B).get(f"/v1/videos/{video_id}"), 404, "not_found")
    assert_openai_error(client.get("/v1/videos/anim_nope"), 404, "not_found")
    assert_openai_error(client.get("/v1/nowhere"), 404, "not_found")
    # the rest of the API keeps problem+json
    assert_problem(anonymous.get("/animations"), 401, "unauthorized")


def test_rate_limit_is_a_rate_limit_error_with_retry_after(make_settings, make_client):
    client = make_client(make_settings(rate_limit_submissions_per_minute=1))
    create(client)
    error = assert_openai_error(r := create(client), 429, "rate_limited")
    assert error["type"] == "rate_limit_error" and int(r.headers["retry-after"]) >= 1


def test_status_mapping_shows_canceled_as_failed():
    record = JobRecord(
        id="anim_X", owner="o", status=JobStatus.CANCELED, params={"prompt": "p", "width": 64, "height": 32, "fps": 4},
        num_frames=8, created_at=100.0, finished_at=110.0,
    )  # fmt: skip
    video = oa.video_of(record, retention_s=60)
    assert video.status == "failed" and video.error is not None and video.error.code == "canceled"
    assert (
        video.size == "64x32"
        and video.seconds == "2"
        and video.completed_at == 110
        and video.expires_at is None
    )
    assert [oa.video_status(s) for s in JobStatus] == [
        "queued",
        "in_progress",
        "completed",
        "failed",
        "failed",
    ]


def test_list_pages_with_after_and_order(client):
    ids = [create(client).json()["id"] for _ in range(3)]
    first = client.get("/v1/videos", params={"limit": 2}).json()
    assert [v["id"] for v in first["data"]] == ids[::-1][:2] and first["has_more"] is True
    second = client.get("/v1/videos", params={"limit": 2, "after": first["last_id"]}).json()
    assert [v["id"] for v in second["data"]] == [ids[0]] and second["has_more"] is False
    ascending = client.get("/v1/videos", params={"order": "asc", "limit": 2}).json()
    assert [v["id"] for v in ascending["data"]] == ids[:2] and ascending["has_more"] is True
    assert_openai_error(client.get("/v1/videos", params={"limit": 0}), 400, "validation_error")


def _mp4(frames: int = 6, size: int = 64) -> bytes:
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            array = np.full((size, size, 3), i * 40, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def test_content_variants_and_the_sprite_sheet_made_once(client):
    video_id = create(client).json()["id"]
    assert_openai_error(client.get(f"/v1/videos/{video_id}/content"), 409, "video_not_ready")
    finish_with_outputs(client, video_id)
    storage = client.app.state.services.storage
    storage.put_bytes(f"outputs/{video_id}/animation.mp4", _mp4(), "video/mp4")
    r = client.get(f"/v1/videos/{video_id}/content")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.content == _mp4()
    assert (
        client.get(f"/v1/videos/{video_id}/content", params={"variant": "thumbnail"}).content == b"png-bytes"
    )
    sheet = client.get(f"/v1/videos/{video_id}/content", params={"variant": "spritesheet"})
    assert sheet.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(sheet.content))
    assert image.size == (4 * 128, 2 * 128)  # 6 frames: 4 per row
    assert storage.get_bytes(f"outputs/{video_id}/spritesheet.jpg") == sheet.content  # kept: made once
    video = client.get(f"/v1/videos/{video_id}").json()
    assert (
        video["status"] == "completed"
        and video["progress"] == 100
        and video["expires_at"] > video["completed_at"]
    )


def test_spritesheet_samples_evenly_across_the_clip():
    image = Image.open(io.BytesIO(spritesheet(_mp4(frames=6), max_tiles=3, tile_width=32)))
    assert image.size == (3 * 32, 32)
    first, last = image.getpixel((16, 16)), image.getpixel((80, 16))
    assert first[0] < 20 and last[0] > 180  # the first and the last frame


def test_remix_reuses_character_and_motion_or_409_when_they_are_gone(make_settings, make_client):
    client = make_client(make_settings(keep_inputs=True))
    source = create(client, seed="7", subject_words="person", prompt="a person").json()
    r = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "a robot"})
    assert r.status_code == 200, r.text
    remix = r.json()
    assert remix["remixed_from_video_id"] == source["id"] and remix["prompt"] == "a robot"
    job = client.get(f"/animations/{remix['id']}").json()
    assert job["params"]["seed"] == 7 and job["params"]["subject_words"] is None
    storage = client.app.state.services.storage
    assert storage.get_bytes(f"inputs/{remix['id']}/poses.json") == storage.get_bytes(
        f"inputs/{source['id']}/poses.json"
    )
    assert_openai_error(
        client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "x", "poses": EXAMPLE_POSES}),
        400,
        "validation_error",
    )
    storage.delete_prefix(f"inputs/{source['id']}")
    r = client.post(f"/v1/videos/{source['id']}/remix", json={"prompt": "a robot"})
    assert_openai_error(r, 409, "inputs_not_kept")
    assert r.headers["x-should-retry"] == "false"


def test_delete_then_404(client):
    video_id = create(client).json()["id"]
    r = client.delete(f"/v1/videos/{video_id}")
    assert r.json() == {"id": video_id, "object": "video.deleted", "deleted": True}
    assert_openai_error(client.get(f"/v1/videos/{video_id}"), 404, "not_found")
    assert client.delete(f"/v1/videos/{video_id}").status_code == 200  # idempotent for its owner


def test_models(client):
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [oa.SERVED_MODEL]
    assert client.get(f"/v1/models/{oa.SERVED_MODEL}").json()["object"] == "model"
    assert_openai_error(client.get("/v1/models/sora-2"), 404, "not_found")  # one code, one status


def test_openai_webhook_body_and_flavour():
    body = json.loads(oa.webhook_body("anim_X", WebhookEvent.COMPLETED, at=5) or b"")
    assert (
        body["object"] == "event" and body["type"] == "video.completed" and body["data"] == {"id": "anim_X"}
    )
    assert body["created_at"] == 5 and body["id"].startswith("evt_")
    assert json.loads(oa.webhook_body("anim_X", WebhookEvent.CANCELED) or b"")["type"] == "video.failed"
    assert oa.webhook_body("anim_X", WebhookEvent.PROGRESS) is None


def test_openapi_documents_the_v1_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content", "/v1/models"):
        assert path in paths
    assert job_body()  # the JSON body of /animations is unchanged


def test_idempotency_key_replays_through_the_same_api_only(client):
    """The same key and body replays the video; another `seconds`, or the same body through
    `/animations`, is another request (422 idempotency_key_reused)."""
    headers = {"Idempotency-Key": "k-1"}
    data = {"prompt": "a person", "steps": "2", "size": "64x64", "poses": json.dumps(EXAMPLE_POSES)}

    def post(path, image_field, **more):
        files = {image_field: ("me.png", png_bytes(), "image/png")}
        return client.post(path, data={**data, **more}, files=files, headers=headers)

    first = post("/v1/videos", "input_reference", seconds="1")
    again = post("/v1/videos", "input_reference", seconds="1")
    assert first.status_code == again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert_openai_error(post("/v1/videos", "input_reference", seconds="2"), 400, "idempotency_key_reused")
    ours = {"prompt": "a person", "steps": "2", "width": "64", "height": "64", "poses": data["poses"]}
    files = {"image": ("me.png", png_bytes(), "image/png")}
    assert_problem(
        client.post("/animations", data=ours, files=files, headers=headers), 422, "idempotency_key_reused"
    )
