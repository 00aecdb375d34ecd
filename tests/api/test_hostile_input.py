"""Issue 6's hostile-input classes that test_validation.py does not already cover, over the real app
(TestClient on a real Redis): each is a 4xx problem+json with a stable code and nothing is enqueued;
unusual-but-valid images are accepted and normalised."""

from __future__ import annotations

import http.server
import io
import json
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from PIL import Image

from jobs.contract import EXAMPLE_POSES
from jobs.intake import ssrf
from tests.support.api import assert_problem, fake_dns, nothing_enqueued
from tests.support.payloads import data_uri, job_body, png_bomb, png_bytes

FRAME = EXAMPLE_POSES["frames"][0]


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kwargs)
    return out.getvalue()


def jpeg_bomb(side: int = 65000) -> bytes:
    """A 64x64 JPEG whose frame header (SOF0) claims ``side`` x ``side`` pixels."""
    data = bytearray(encode(Image.new("RGB", (64, 64), "blue"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, side, side)  # height, width
    return bytes(data)


def webp_bomb() -> bytes:
    """A lossy WebP whose VP8 frame header claims 16383 x 16383 pixels (268 Mpx)."""
    data = bytearray(encode(Image.new("RGB", (64, 64), "green"), "WEBP", quality=50))
    vp8 = data.index(b"VP8 ")
    start = data.index(b"\x9d\x01\x2a", vp8)  # the key frame start code; width, height follow
    struct.pack_into("<HH", data, start + 3, 16383, 16383)
    return bytes(data)


def apng() -> bytes:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    return encode(frames[0], "PNG", save_all=True, append_images=frames[1:])


def sixteen_bit_rgb_png() -> bytes:
    # Pillow cannot write 16-bit RGB: build it by hand (IHDR bit depth 16, colour type 2).
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    width = height = 32  # the smallest side the engine takes
    rows = b"".join(b"\0" + b"\xff\xff\x00\x00\x80\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
REFUSED_IMAGES = {
    "jpeg bomb": (jpeg_bomb(), 413, "image_too_many_pixels"),
    "webp bomb": (webp_bomb(), 413, "image_too_many_pixels"),
    "png bomb": (png_bomb(), 413, "image_too_many_pixels"),
    "bmp": (encode(Image.new("RGB", (8, 8)), "BMP"), 415, "image_unsupported_format"),
    "tiff": (encode(Image.new("RGB", (8, 8)), "TIFF"), 415, "image_unsupported_format"),
    "svg": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        415,
        "image_unsupported_format",
    ),
    "html": (b"<!doctype html><html></html>", 415, "image_unsupported_format"),
    "empty file": (b"", 415, "image_unsupported_format"),
    "png magic only": (b"\x89PNG\r\n\x1a\n", 422, "image_corrupt"),
    "jpeg magic only": (b"\xff\xd8\xff\xe0" + b"\0" * 20, 422, "image_corrupt"),
}


@pytest.mark.parametrize("data,status,code", REFUSED_IMAGES.values(), ids=list(REFUSED_IMAGES))
def test_hostile_image_uploads_are_refused_in_json_and_multipart(make_client, data, status, code):
    client = make_client()
    assert_problem(client.post("/animations", json=job_body(image=data_uri(data))), status, code)
    files = {
        "image": ("cat.png", data, "image/png"),  # the claimed name and type are not trusted
        "poses": ("p.json", json.dumps(EXAMPLE_POSES).encode(), "application/json"),
    }
    assert_problem(client.post("/animations", files=files, data={"prompt": "p"}), status, code)
    nothing_enqueued(client)


def test_hostile_mask_is_refused_like_an_image(client):
    assert_problem(
        client.post("/animations", json=job_body(mask=data_uri(jpeg_bomb()))), 413, "image_too_many_pixels"
    )
    assert_problem(
        client.post("/animations", json=job_body(mask=data_uri(b"GIF89a..."))),
        415,
        "image_unsupported_format",
    )
    assert_problem(
        client.post("/animations", json=job_body(mask="ftp://x/m.png")), 422, "mask_reference_invalid"
    )
    nothing_enqueued(client)


ACCEPTED_IMAGES = {
    "grayscale": (encode(Image.new("L", (32, 32), 128), "PNG"), "RGB"),
    "rgba alpha": (encode(Image.new("RGBA", (32, 32), (255, 0, 0, 128)), "PNG"), "RGBA"),
    "palette with transparency": (
        encode(Image.new("P", (32, 32)), "PNG", transparency=0),
        "RGBA",
    ),
    "16-bit rgb": (sixteen_bit_rgb_png(), "RGB"),
    "cmyk jpeg": (encode(Image.new("CMYK", (32, 32), (0, 255, 0, 0)), "JPEG"), "RGB"),
    "animated png": (apng(), "RGB"),
    "animated webp": (
        encode(
            Image.new("RGB", (32, 32), "red"),
            "WEBP",
            save_all=True,
            append_images=[Image.new("RGB", (32, 32), "blue")],
            lossless=True,
        ),
        "RGB",
    ),
}


@pytest.mark.parametrize("data,mode", ACCEPTED_IMAGES.values(), ids=list(ACCEPTED_IMAGES))
def test_unusual_images_are_accepted_and_stored_as_plain_png(client, data, mode):
    r = client.post("/animations", json=job_body(image=data_uri(data)))
    assert r.status_code == 202, r.text
    stored = client.app.state.services.storage.get_bytes(f"inputs/{r.json()['id']}/image.png")
    image = Image.open(io.BytesIO(stored))
    assert image.format == "PNG" and image.mode == mode and getattr(image, "n_frames", 1) == 1


# --------------------------------------------------------------------------------------------
# Poses: raw-JSON literals and the multipart pose file
# --------------------------------------------------------------------------------------------
def raw_body(poses_json: str) -> bytes:
    body = job_body()
    body.pop("poses")
    return (json.dumps(body)[:-1] + f', "poses": {poses_json}}}').encode()


def compact(first_point: str) -> str:
    rest = ",".join(json.dumps(p) for p in FRAME[1:])
    return f'{{"width": 512, "height": 512, "frames": [[{first_point}, {rest}]]}}'


@pytest.mark.parametrize(
    "poses_json,code",
    [
        (compact("[NaN, 1, 1]"), "pose_not_finite"),
        (compact("[Infinity, 1, 1]"), "pose_not_finite"),
        (compact("[1, -Infinity, 1]"), "pose_not_finite"),
        (compact("[1e999, 1, 1]"), "pose_not_finite"),
        (compact("[1" + "0" * 400 + ", 1, 1]"), "pose_not_finite"),
        (compact("[true, 1, 1]"), "pose_not_numeric"),
        (compact("[null, 1, 1]"), "pose_not_numeric"),
        (compact('{"x": 1}'), "pose_malformed"),
        (compact("[1, 1, 2]"), "pose_confidence"),
        # One valid frame, so the canvas is the only fault (the frame count is checked first).
        ('{"width": 0, "height": 512, "frames": [' + json.dumps(FRAME) + "]}", "pose_canvas_invalid"),
        ('{"width": 1e9, "height": 512, "frames": [' + json.dumps(FRAME) + "]}", "pose_canvas_invalid"),
        # Target pixels without a canvas get a derived one; 18 copies of one point still size nothing.
        ('{"frames": [[' + ",".join(["[300, 200, 1]"] * 18) + "]]}", "pose_degenerate"),
        ('{"people": []}', "pose_empty_frame"),
        (
            '{"width": 512, "height": 512, "frames": [[[300, 200, 0.00001]' + ",[0, 0, 0]" * 17 + "]]}",
            "pose_empty_frame",
        ),
        (
            '{"width": 512, "height": 512, "frames": ['
            + ",".join(["[" + "[0,0,0]," * 17 + "[0,0,0]]"])
            + "]}",
            "pose_empty_frame",
        ),
    ],
    ids=[
        "NaN literal",
        "Infinity literal",
        "-Infinity literal",
        "overflow to inf",
        "integer beyond float range",
        "boolean",
        "null",
        "object keypoint",
        "confidence above 1",
        "zero canvas",
        "huge canvas",
        "pixels without canvas",
        "no people",
        "only a vanishing confidence",
        "no confident keypoint",
    ],
)
def test_hostile_pose_literals_in_the_raw_body_are_refused(client, poses_json, code):
    r = client.post("/animations", content=raw_body(poses_json), headers={"content-type": "application/json"})
    assert_problem(r, 422, code)
    nothing_enqueued(client)


@pytest.mark.parametrize(
    "pose_file,status,code",
    [
        (b"[" * 100_000 + b"]" * 100_000, 422, "pose_malformed"),
        (b"\xff\xfe not utf-8 json", 422, "pose_malformed"),
        (compact("[NaN, 1, 1]").encode(), 422, "pose_not_finite"),
        (json.dumps({"width": 512, "height": 512, "frames": [FRAME] * 65}).encode(), 422, "pose_frame_count"),
    ],
    ids=["deeply nested", "not utf-8", "NaN", "too many frames"],
)
def test_hostile_pose_files_in_multipart_are_refused(client, pose_file, status, code):
    files = {"image": ("a.png", png_bytes(), "image/png"), "poses": ("p.json", pose_file, "application/json")}
    assert_problem(client.post("/animations", files=files, data={"prompt": "p"}), status, code)
    nothing_enqueued(client)


def test_pose_file_over_the_size_limit_is_refused(make_settings, make_client):
    client = make_client(make_settings(max_pose_bytes=2048))
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "poses": ("p.json", json.dumps(EXAMPLE_POSES).encode() + b" " * 4096, "application/json"),
    }
    r = client.post("/animations", files=files, data={"prompt": "p"})
    assert r.status_code in (400, 413, 422) and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] in ("malformed_multipart", "pose_too_large", "body_too_large")
    nothing_enqueued(client)


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/x-www-form-urlencoded", "", "image/png"]
)
def test_bodies_of_other_content_types_are_refused(client, content_type):
    r = client.post("/animations", content=b"image=x&prompt=p", headers={"content-type": content_type})
    assert r.status_code in (415, 422) and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] in ("unsupported_media_type", "validation_error", "motion_missing")
    nothing_enqueued(client)


# --------------------------------------------------------------------------------------------
# URLs: every SSRF class of the issue, for image and webhook URLs alike
# --------------------------------------------------------------------------------------------
SSRF_URLS = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://[::1]/",
    "http://10.1.2.3/",
    "http://172.16.5.4/",
    "http://172.31.0.1/",
    "http://192.168.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://100.64.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f000001/",
    "http://intranet.corp/",  # a hostname resolving to a private address
    "http://rebind.example/",  # one public and one private answer
]
SCHEMES = ["file:///etc/passwd", "gopher://example.com:70/_x", "ftp://example.com/a.png", "dict://x:11211/"]


def hostile_dns(host: str, port: int) -> list[str]:
    if host == "rebind.example":
        return ["93.184.216.34", "10.0.0.7"]
    return fake_dns(host, port)


@pytest.mark.parametrize("url", SSRF_URLS)
@pytest.mark.parametrize("field", ["image", "webhook_url"])
def test_ssrf_addresses_are_refused_for_image_and_webhook_urls(make_client, field, url):
    client = make_client(resolver=hostile_dns)
    assert_problem(client.post("/animations", json=job_body(**{field: url})), 422, "url_address_not_allowed")
    nothing_enqueued(client)


@pytest.mark.parametrize("url", SCHEMES)
@pytest.mark.parametrize("field", ["image", "webhook_url"])
def test_non_http_schemes_are_refused_for_image_and_webhook_urls(make_client, field, url):
    client = make_client(resolver=hostile_dns)
    code = "image_reference_invalid" if field == "image" else "url_scheme_not_allowed"
    assert_problem(client.post("/animations", json=job_body(**{field: url})), 422, code)
    nothing_enqueued(client)


@contextmanager
def http_host(ip: str, status: int, body: bytes = b"", location: str = "") -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server on ``ip`` answering every GET with ``status`` (and ``body`` or a
    ``Location``); yields its base URL and the paths it was asked for."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((ip, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{ip}:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_image_url_redirecting_to_a_private_address_is_refused(make_client, monkeypatch):
    # A "public" image host (127.0.0.1, made public for the test) redirects to a private one.
    with (
        http_host("127.0.0.2", 200, png_bytes()) as (private, private_hits),
        http_host("127.0.0.1", 302, location=f"{private}/internal/avatar.png") as (public, _),
    ):
        original = ssrf.is_public_address
        monkeypatch.setattr(ssrf, "is_public_address", lambda ip: str(ip) == "127.0.0.1" or original(ip))
        client = make_client(resolver=lambda host, port: ["127.0.0.1"] if host == "images.example" else [])
        url = public.replace("127.0.0.1", "images.example") + "/avatar.png"
        assert_problem(client.post("/animations", json=job_body(image=url)), 422, "url_address_not_allowed")
        assert private_hits == []  # the private host was never contacted
        nothing_enqueued(client)


def test_image_url_serving_a_bomb_is_refused(make_settings, make_client):
    with http_host("127.0.0.1", 200, jpeg_bomb()) as (host, _):
        client = make_client(make_settings(allow_private_urls=True))
        assert_problem(
            client.post("/animations", json=job_body(image=f"{host}/a.jpg")), 413, "image_too_many_pixels"
        )
        nothing_enqueued(client)


# --------------------------------------------------------------------------------------------
# Auth
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Bearer",
        "Bearer ",
        "Basic c2stdGVzdC1hOg==",
        "sk-test-a",
        "Bearer sk-test-a-but-longer",
        "bearer\tsk",
    ],
)
def test_malformed_or_wrong_credentials_are_401_on_every_route(make_client, authorization):
    client = make_client(key=None)
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (
        ("POST", "/animations"),
        ("GET", "/animations"),
        ("GET", "/animations/anim_00000000000000000000000000"),
        ("POST", "/animations/anim_00000000000000000000000000/cancel"),
        ("GET", "/animations/anim_00000000000000000000000000/events"),
    ):
        r = client.request(method, path, headers=headers, json=job_body() if method == "POST" else None)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"
    nothing_enqueued(client)
