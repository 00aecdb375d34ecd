"""One definition of a valid job (issue 9): every input the engine would refuse on the worker, after
minutes of GPU work, is refused by ``POST /animations`` with 4xx problem+json and a stable code, and
nothing is queued; the OpenAPI schema publishes exactly the bounds the server enforces."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from jobs.contract import EXAMPLE_POSES
from jobs.intake.limits import ServiceLimits
from tests.support.api import assert_problem, nothing_enqueued
from tests.support.payloads import data_uri, job_body, png_bytes

FRAME = EXAMPLE_POSES["frames"][0]


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _image(width: int, height: int) -> str:
    return data_uri(_png(Image.new("RGB", (width, height), "red")))


# Each of these reached a worker before (issue 9's list) and failed there, some after minutes.
LATE_REFUSALS = {
    "image 8x8": ({"image": _image(8, 8)}, 422, "image_too_small"),
    "image 1x4000": ({"image": _image(1, 4000)}, 422, "image_too_small"),
    "image 1x1": ({"image": _image(1, 1)}, 422, "image_too_small"),
    "all-black mask": ({"mask": data_uri(_png(Image.new("L", (64, 64), 0)))}, 422, "mask_empty"),
    "fully transparent mask": (
        {"mask": data_uri(_png(Image.new("RGBA", (64, 64), (255, 255, 255, 0))))},
        422,
        "mask_empty",
    ),
    "prompt of spaces": ({"prompt": "    "}, 422, "prompt_blank"),
    "subject word not in the prompt": (
        {"prompt": "a person", "subject_words": ["astronaut"]},
        422,
        "subject_not_in_prompt",
    ),
    "all keypoints at one point": (
        {"poses": {"width": 512, "height": 512, "frames": [[[200, 200, 1.0]] * 18]}},
        422,
        "pose_degenerate",
    ),
    "openpose frame without people": (
        {"poses": {"people": [], "canvas_width": 512, "canvas_height": 512}},
        422,
        "pose_empty_frame",
    ),
    "all-zero-confidence frame": (
        {"poses": {"width": 512, "height": 512, "frames": [[[10, 10, 0]] * 18]}},
        422,
        "pose_empty_frame",
    ),
    "webhook events without a url": ({"webhook_events": ["completed"]}, 422, "webhook_events_without_url"),
}


@pytest.mark.parametrize("overrides,status,code", LATE_REFUSALS.values(), ids=list(LATE_REFUSALS))
def test_inputs_the_engine_refuses_are_refused_at_the_door(client, overrides, status, code):
    assert_problem(client.post("/animations", json=job_body(**overrides)), status, code)
    nothing_enqueued(client)


def test_a_size_that_is_a_multiple_of_8_but_not_of_64_is_accepted(client):
    # The engine renders it (tests/engine: token grids follow the U-Net's ceil down-sampling).
    r = client.post("/animations", json=job_body(size=72))
    assert r.status_code == 202, r.text
    assert r.json()["params"]["width"] == 72 and r.json()["params"]["height"] == 72


def test_the_job_records_the_values_it_runs_with(client):
    body = job_body()
    for name in ("steps", "size"):
        body.pop(name)
    params = client.post("/animations", json=body).json()["params"]
    assert params["steps"] == 50 and params["guidance"] == 7.5 and params["transition_frames"] == 4
    assert params["fps"] == 8 and params["size"] == params["width"] == params["height"] == 512


def _schema_bounds(client) -> dict[str, dict]:
    schema = client.get("/openapi.json").json()
    props = schema["components"]["schemas"]["AnimationCreate"]["properties"]
    out = {}
    for name, prop in props.items():
        branch = next((b for b in prop.get("anyOf", []) if b.get("type") != "null"), prop)
        if "maximum" in branch:
            out[name] = branch
    return out


def test_openapi_maxima_are_the_enforced_maxima(make_settings, make_client):
    settings = make_settings(max_steps=30, max_size=512, max_active_jobs=100)
    client = make_client(settings)
    limits = ServiceLimits.from_settings(settings)
    bounds = _schema_bounds(client)
    assert set(limits.params) <= set(bounds)
    assert (
        bounds["steps"]["maximum"] == 30 and bounds["size"]["maximum"] == 512
    )  # the operator's, not 1000/2048
    for name, bound in limits.params.items():
        published = bounds[name]
        assert (published["minimum"], published["maximum"]) == (bound.minimum, bound.maximum), name
        step = published.get("multipleOf", 1 if bound.integer else 0.5)
        for value, accepted in (
            (published["maximum"], True),
            (published["minimum"], True),
            (published["maximum"] + step, False),
            (published["minimum"] - step, False),
        ):
            r = client.post("/animations", json=job_body(**{name: value}))
            if accepted:
                assert r.status_code == 202, (name, value, r.text)
            else:
                assert_problem(r, 422, "parameter_out_of_range")
    # The multipart form is documented with the same bounds.
    form = client.get("/openapi.json").json()["paths"]["/animations"]["post"]["requestBody"]["content"]
    multipart = form["multipart/form-data"]["schema"]["properties"]
    assert multipart["steps"]["maximum"] == 30 and multipart["size"]["multipleOf"] == 8


def test_a_size_off_the_multiple_is_out_of_range(client):
    assert_problem(client.post("/animations", json=job_body(size=70)), 422, "parameter_out_of_range")
    nothing_enqueued(client)


def test_multipart_refuses_the_same_inputs(client):
    r = client.post(
        "/animations",
        files={"image": ("a.png", png_bytes(8), "image/png")},
        data={"poses": '{"width": 512, "height": 512, "frames": [[[1, 1, 1]]]}', "prompt": "a person"},
    )
    assert r.status_code == 422 and r.json()["code"] in ("pose_keypoint_count", "image_too_small")
    nothing_enqueued(client)


def test_error_texts_say_what_is_wrong(client):
    r = client.post("/animations", files={"image": ("a.png", png_bytes(), "image/png")}, data={
        "poses": '{"width": 512, "height": 512, "frames": []}', "prompt": ""})  # fmt: skip
    assert r.json()["code"] in ("prompt_blank", "pose_frame_count") and "Field required" not in r.text
    r = client.post(
        "/animations",
        files={"image": ("a.png", png_bytes(), "image/png")},
        data={"poses": __import__("json").dumps(EXAMPLE_POSES), "prompt": ""},
    )
    assert_problem(r, 422, "prompt_blank")
    r = client.post("/animations", json=job_body(image="data:image/png;base64,iVBOR!!"))
    assert_problem(r, 422, "image_data_uri_invalid")
    assert "not valid base64" in r.json()["detail"] and r.json()["detail"].startswith("image:")
    r = client.post("/animations", json=job_body(mask="data:image/png;base64,%%%"))
    assert r.json()["detail"].startswith("mask:")
    r = client.post("/animations", json=job_body(webhook_url="http://127.0.0.1:9/hook"))
    assert_problem(r, 422, "url_address_not_allowed")
    assert (
        r.json()["detail"].startswith("webhook_url:")
        and "POSEANIMATE_ALLOW_PRIVATE_URLS" in r.json()["detail"]
    )
    nothing_enqueued(client)


def test_the_limits_are_built_once_per_app(make_settings, make_client, monkeypatch):
    """One limits table per process: built with the app, not per request (nor twice per request)."""
    built = []
    original = ServiceLimits.from_settings.__func__  # type: ignore[attr-defined]

    def counting(cls, settings):
        built.append(settings)
        return original(cls, settings)

    monkeypatch.setattr(ServiceLimits, "from_settings", classmethod(counting))
    client = make_client(make_settings())
    assert len(built) == 1
    for _ in range(2):
        assert client.post("/animations", json=job_body()).status_code == 202
        assert_problem(
            client.post("/poses", json={"video": "ftp://x", "max_frames": 10**6}),
            422,
            "parameter_out_of_range",
        )
    assert client.get("/openapi.json").status_code == 200 and len(built) == 1
