"""Every refused input answers 4xx problem+json with a stable code, and nothing is enqueued."""

import io
import json

import pytest
from PIL import Image

from jobs.contract import EXAMPLE_POSES
from tests.support.api import assert_problem, fake_dns, nothing_enqueued
from tests.support.payloads import data_uri, job_body, png_bomb, png_bytes, truncated_png

FRAME = EXAMPLE_POSES["frames"][0]


CASES = {
    "not an image": ({"image": data_uri(b"hello, I am text")}, 415, "image_unsupported_format"),
    "gif": ({"image": data_uri(png_bytes(fmt="GIF"), "image/gif")}, 415, "image_unsupported_format"),
    "truncated image": ({"image": data_uri(truncated_png())}, 422, "image_corrupt"),
    "image bomb": ({"image": data_uri(png_bomb())}, 413, "image_too_many_pixels"),
    "bad data uri": ({"image": "data:image/png;base64,@@@"}, 422, "image_data_uri_invalid"),
    "image not a url": ({"image": "C:/x.png"}, 422, "image_reference_invalid"),
    "16 keypoints": (
        {"poses": {"width": 512, "height": 512, "frames": [FRAME[:16]]}},
        422,
        "pose_keypoint_count",
    ),
    "nan": (
        {"poses": {"width": 512, "height": 512, "frames": [[["NaN", 1, 1], *FRAME[1:]]]}},
        422,
        "pose_not_numeric",
    ),
    "string coord": (
        {"poses": {"width": 512, "height": 512, "frames": [[["1", 1, 1], *FRAME[1:]]]}},
        422,
        "pose_not_numeric",
    ),
    "huge coord": (
        {"poses": {"width": 512, "height": 512, "frames": [[[1e12, 1, 1], *FRAME[1:]]]}},
        422,
        "pose_out_of_bounds",
    ),
    "negative coord": (
        {"poses": {"width": 512, "height": 512, "frames": [[[-5000, 1, 1], *FRAME[1:]]]}},
        422,
        "pose_out_of_bounds",
    ),
    "empty sequence": ({"poses": {"width": 512, "height": 512, "frames": []}}, 422, "pose_frame_count"),
    "too many frames": (
        {"poses": {"width": 512, "height": 512, "frames": [FRAME] * 65}},
        422,
        "pose_frame_count",
    ),
    "canvas mismatch": (
        {
            "poses": [
                {
                    "people": [{"pose_keypoints_2d": [v for p in FRAME for v in p]}],
                    "canvas_width": 512,
                    "canvas_height": 512,
                },
                {
                    "people": [{"pose_keypoints_2d": [v for p in FRAME for v in p]}],
                    "canvas_width": 640,
                    "canvas_height": 480,
                },
            ]
        },
        422,
        "pose_canvas_inconsistent",
    ),
    "pose json text malformed": ({"poses": "{not json"}, 422, "pose_malformed"),
    "deeply nested poses": ({"poses": "[" * 50000 + "]" * 50000}, 422, "pose_malformed"),
    "source pose with 2 frames": ({"source_pose": EXAMPLE_POSES}, 422, "pose_frame_count"),
    "prompt too long": ({"prompt": "x" * 501}, 422, "prompt_too_long"),
    "empty prompt": ({"prompt": ""}, 422, "prompt_blank"),
    "steps above server max": ({"steps": 101}, 422, "parameter_out_of_range"),
    "size above server max": ({"size": 2048}, 422, "parameter_out_of_range"),
    # One code per kind of violation: every parameter bound is parameter_out_of_range.
    "size not multiple of 8": ({"size": 100}, 422, "parameter_out_of_range"),
    "fps zero": ({"fps": 0}, 422, "parameter_out_of_range"),
    "unknown field": ({"colour": "red"}, 422, "validation_error"),
    "unknown webhook event": ({"webhook_events": ["exploded"]}, 422, "validation_error"),
    "ssrf image loopback": ({"image": "http://127.0.0.1:6379/"}, 422, "url_address_not_allowed"),
    "ssrf image metadata": (
        {"image": "http://169.254.169.254/latest/meta-data/"},
        422,
        "url_address_not_allowed",
    ),
    "ssrf image ipv6 metadata": ({"image": "http://[fd00:ec2::254]/"}, 422, "url_address_not_allowed"),
    "ssrf image decimal ip": ({"image": "http://2130706433/"}, 422, "url_address_not_allowed"),
    "ssrf image mapped ipv6": ({"image": "http://[::ffff:10.0.0.1]/"}, 422, "url_address_not_allowed"),
    "ssrf image cgnat": ({"image": "http://100.64.1.1/"}, 422, "url_address_not_allowed"),
    "file scheme image": ({"image": "file:///etc/passwd"}, 422, "image_reference_invalid"),
    "gopher webhook": ({"webhook_url": "gopher://example.com/"}, 422, "url_scheme_not_allowed"),
    "webhook private": ({"webhook_url": "http://192.168.1.10/hook"}, 422, "url_address_not_allowed"),
    "webhook localhost name": ({"webhook_url": "http://localhost:8080/hook"}, 422, "url_address_not_allowed"),
    "webhook hostname to private": (
        {"webhook_url": "http://intranet.corp/hook"},
        422,
        "url_address_not_allowed",
    ),
    "webhook ftp": ({"webhook_url": "ftp://example.com/"}, 422, "url_scheme_not_allowed"),
}


@pytest.mark.parametrize("overrides,status,code", CASES.values(), ids=list(CASES))
def test_bad_input_is_refused_before_enqueueing(make_client, overrides, status, code):
    client = make_client(resolver=fake_dns)
    assert_problem(client.post("/animations", json=job_body(**overrides)), status, code)
    nothing_enqueued(client)


def test_body_over_the_limit_is_413(make_settings, make_client):
    client = make_client(make_settings(max_body_bytes=50_000, max_image_bytes=40_000))
    big = job_body(image=data_uri(b"\x89PNG\r\n\x1a\n" + b"\0" * 60_000))
    assert_problem(client.post("/animations", json=big), 413, "body_too_large")
    # chunked upload without Content-Length is counted too
    chunks = (b"x" * 10_000 for _ in range(10))
    assert_problem(
        client.post("/animations", content=chunks, headers={"content-type": "application/json"}),
        413,
        "body_too_large",
    )
    nothing_enqueued(client)


def test_image_over_the_byte_limit_is_413(make_settings, make_client):
    client = make_client(make_settings(max_image_bytes=2000))
    assert_problem(
        client.post("/animations", json=job_body(image=data_uri(truncated_png()))), 413, "image_too_large"
    )


def test_image_over_the_pixel_limit_is_413(make_settings, make_client):
    client = make_client(make_settings(max_image_pixels=64 * 64))
    assert_problem(
        client.post("/animations", json=job_body(image=data_uri(png_bytes(size=65)))),
        413,
        "image_too_many_pixels",
    )


def test_wrong_content_type_is_415(client):
    assert_problem(
        client.post("/animations", content=b"image=x", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )


def test_malformed_json_is_400(client):
    assert_problem(
        client.post("/animations", content=b'{"image": ', headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    assert_problem(client.post("/animations", json=[1, 2]), 422, "validation_error")


def test_deeply_nested_json_body_is_400(client):
    body = b'{"poses": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_problem(
        client.post("/animations", content=body, headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )


def test_malformed_multipart_is_400(client):
    r = client.post(
        "/animations", content=b"--x\r\nbroken", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"


def test_multipart_without_image_is_422(client):
    r = client.post("/animations", data={"prompt": "p", "poses": json.dumps(EXAMPLE_POSES)})
    assert_problem(r, 422, "validation_error")
    assert any(e["loc"][-1] == "image" for e in r.json()["errors"])


def test_validation_errors_do_not_echo_input(client):
    r = client.post("/animations", json=job_body(fps="sk-secret-looking-value"))
    assert_problem(r, 422, "validation_error")
    assert "sk-secret-looking-value" not in r.text


def test_unusual_but_valid_images_are_accepted(client):
    for img, fmt in (
        (Image.new("CMYK", (32, 32)), "JPEG"),
        (Image.new("LA", (32, 32)), "PNG"),
        (Image.new("I;16", (32, 32)), "PNG"),
    ):
        out = io.BytesIO()
        img.save(out, format=fmt)
        assert client.post("/animations", json=job_body(image=data_uri(out.getvalue()))).status_code == 202
