"""Request bodies (``api.body``, issue 24): a lone surrogate in JSON (M2), a multipart body cut before
its closing boundary (L3), big JSON bodies parsed off the event loop (M4)."""

from __future__ import annotations

import json

import httpx
import pytest

from api.body import PARSE_OFF_LOOP_BYTES, has_lone_surrogate
from jobs.contract import EXAMPLE_POSES
from tests.support.api import assert_problem, nothing_enqueued
from tests.support.payloads import job_body, png_bytes


def raw_json(value: dict) -> bytes:
    """JSON with a ``\\ud800`` escape (json.dumps writes it as is when asked to keep ASCII)."""
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    "prompt", ["\ud800", "a \udfff person", "ok \ud83d"], ids=["high", "low", "half-emoji"]
)
def test_a_lone_surrogate_in_the_prompt_is_400_and_nothing_is_queued(client, prompt):
    r = client.post(
        "/animations", content=raw_json(job_body(prompt=prompt)), headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")
    nothing_enqueued(client)
    listing = client.get("/animations")
    assert listing.status_code == 200 and listing.json()["data"] == []


def test_a_lone_surrogate_anywhere_in_the_body_is_refused(client):
    body = job_body(webhook={"url": "https://example.com/\udc00"})
    r = client.post("/animations", content=raw_json(body), headers={"content-type": "application/json"})
    assert_problem(r, 400, "malformed_json")
    r = client.post(
        "/poses", content=raw_json({"video": "\ud800"}), headers={"content-type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")


def test_a_surrogate_pair_is_a_real_character_and_passes(client):
    r = client.post(
        "/animations",
        content=raw_json(job_body(prompt="a person \U0001f600")),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 202, r.text
    assert client.get(f"/animations/{r.json()['id']}").json()["params"]["prompt"].endswith("\U0001f600")


def test_has_lone_surrogate():
    assert has_lone_surrogate({"a": ["x", {"b": "\ud800"}]}) and not has_lone_surrogate({"a": "\U0001f600"})


def multipart(files: dict, data: dict) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/animations", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_multipart_cut_before_its_closing_boundary_is_400(client):
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "poses": ("poses.json", json.dumps(EXAMPLE_POSES).encode(), "application/json"),
    }
    body, content_type = multipart(files, {"prompt": "a person", "steps": "2", "size": "64", "webhook": "x"})
    boundary = content_type.split("boundary=")[1].encode()
    assert body.rstrip().endswith(b"--" + boundary + b"--")
    cut = body[: body.rindex(b"--" + boundary + b"--")]  # the last field's value is cut off
    r = client.post("/animations", content=cut, headers={"content-type": content_type})
    body_json = assert_problem(r, 400, "malformed_multipart")
    assert "closing boundary" in body_json["detail"]
    nothing_enqueued(client)
    whole = client.post(
        "/animations",
        content=body.replace(b'name="webhook"\r\n\r\nx', b'name="size"\r\n\r\n64'),
        headers={"content-type": content_type},
    )
    assert whole.status_code == 202, whole.text


def test_a_multipart_epilogue_after_the_closing_boundary_is_fine(client):
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "poses": ("poses.json", json.dumps(EXAMPLE_POSES).encode(), "application/json"),
    }
    body, content_type = multipart(files, {"prompt": "a person", "steps": "2", "size": "64"})
    r = client.post("/animations", content=body + b"\r\n", headers={"content-type": content_type})
    assert r.status_code == 202, r.text


def test_big_json_bodies_are_parsed_off_the_event_loop(client, monkeypatch):
    import threading

    import api.body as bodies

    threads = []
    real = bodies.parse_json

    def spy(body):
        threads.append(threading.current_thread().name)
        return real(body)

    monkeypatch.setattr(bodies, "parse_json", spy)
    padding = "x" * PARSE_OFF_LOOP_BYTES
    r = client.post(
        "/animations",
        content=raw_json(job_body(prompt="a person", padding=padding)),
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (202, 422)
    small = client.post("/animations", json=job_body())
    assert small.status_code == 202
    assert len(threads) == 2 and threads[0] != threads[1]


def test_a_jpeg_uploaded_as_poses_says_it_looks_like_a_jpeg(client):
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "poses": ("poses.json", png_bytes(fmt="JPEG"), "application/json"),
    }
    r = client.post("/animations", files=files, data={"prompt": "a person"})
    assert r.status_code in (400, 422) and "looks like a JPEG image" in r.json()["detail"]


def test_at_most_two_big_json_bodies_are_read_and_parsed_at_once(client, monkeypatch):
    """M4: ten concurrent 32 MB bodies took the API from 199 MB to 1.21 GB."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    import api.body as bodies

    lock = threading.Lock()
    now = peak = 0
    real = bodies.parse_json

    def slow(body):
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.3)
        try:
            return real(body)
        finally:
            with lock:
                now -= 1

    monkeypatch.setattr(bodies, "parse_json", slow)
    body = raw_json(job_body(prompt="a person", padding="x" * PARSE_OFF_LOOP_BYTES))
    headers = {"content-type": "application/json"}
    with client, ThreadPoolExecutor(6) as pool:  # one event loop for all requests, as in the server
        codes = list(
            pool.map(
                lambda _: client.post("/animations", content=body, headers=headers).status_code, range(6)
            )
        )
    assert all(code in (202, 422, 429) for code in codes), codes
    assert peak == bodies.BIG_BODY_SLOTS
