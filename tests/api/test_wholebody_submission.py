"""Whole-body pose files through POST /animations (issue 20): BODY_25, COCO-WholeBody and OpenPose
files with hands and face are accepted and stored with them; ``parts`` is a job parameter."""

import json

import pytest

from tests.support.payloads import STANDING, job_body, png_bytes
from tests.support.wholebody import openpose_person, wholebody_frame


def whole_body_file() -> list:
    # as the OpenPose binary writes it: no canvas
    return [{"version": 1.3, "people": [openpose_person(wholebody_frame())]}] * 2


def test_a_canvas_less_whole_body_openpose_file_is_stored_with_hands_and_face(client):
    r = client.post("/animations", json=job_body(poses=whole_body_file()))
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["params"]["parts"] == "full"
    stored = json.loads(client.app.state.services.storage.get_bytes(f"inputs/{job['id']}/poses.json"))
    assert len(stored["hands"]) == 2 and len(stored["faces"][0]) == 70 and len(stored["frames"][0]) == 18


@pytest.mark.parametrize("parts", ["body", "body+hands", "body+face", "full"])
def test_parts_is_a_job_parameter_in_json_and_multipart(client, parts):
    r = client.post("/animations", json=job_body(parts=parts))
    assert r.status_code == 202 and r.json()["params"]["parts"] == parts
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "poses": ("p.json", json.dumps(whole_body_file()).encode(), "application/json"),
    }
    r = client.post("/animations", files=files, data={"prompt": "a dancer", "parts": parts})
    assert r.status_code == 202 and r.json()["params"]["parts"] == parts


def test_bad_parts_and_the_openapi_enum(client):
    bad = client.post("/animations", json=job_body(parts="hands"))
    assert bad.status_code == 422 and "parts" in json.dumps(bad.json()["errors"])
    schema = client.get("/openapi.json").json()["components"]["schemas"]["AnimationCreate"]
    assert "body+hands" in json.dumps(schema["properties"]["parts"])


def test_body_25_and_coco_17_files_are_accepted(client):
    body25 = [*STANDING[:8], [256, 282, 0.9], *STANDING[8:], *([[0, 0, 0]] * 6)]
    r = client.post(
        "/animations", json=job_body(poses={"people": [{"pose_keypoints_2d": [v for p in body25 for v in p]}]})
    )
    assert r.status_code == 202, r.text
    coco17 = [STANDING[i] for i in (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)]
    r = client.post("/animations", json=job_body(poses={"width": 512, "height": 512, "frames": [coco17]}))
    assert r.status_code == 202, r.text
