"""Whole-body pose files through POST /animations (issue 20): BODY_25, COCO-WholeBody and OpenPose
files with hands and face are accepted and stored with them; ``parts`` is a job parameter."""

import json

import pytest

from tests.support.clips import astronaut_mp4
from tests.support.payloads import STANDING, data_uri, job_body, png_bytes
from tests.support.wholebody import openpose_person, wholebody_frame

CLIP = astronaut_mp4(2, fps=8, side=64, canvas=(96, 80))


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
        "/animations",
        json=job_body(poses={"people": [{"pose_keypoints_2d": [v for p in body25 for v in p]}]}),
    )
    assert r.status_code == 202, r.text
    coco17 = [STANDING[i] for i in (0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10)]
    r = client.post("/animations", json=job_body(poses={"width": 512, "height": 512, "frames": [coco17]}))
    assert r.status_code == 202, r.text


# --- POST /poses: which parts of the person to extract ----------------------------------------------------


def queued_extraction_params(client, monkeypatch, **kwargs) -> dict:
    import api.routes.poses as poses
    from api.submissions import extractions

    monkeypatch.setattr(poses, "POSES_WAIT_S", 0.0)  # no worker here: answered 202 at once
    r = client.post("/poses", **kwargs)
    assert r.status_code == 202, r.text
    record = extractions(client.app.state.services).get(r.json()["id"])
    return record["params"]


@pytest.mark.parametrize("parts", ["body", "body+hands", "body+face", "full"])
def test_poses_takes_parts_in_json_and_multipart(client, monkeypatch, parts):
    json_params = queued_extraction_params(
        client, monkeypatch, json={"video": data_uri(CLIP), "parts": parts}
    )
    assert json_params["parts"] == parts
    files = {"video": ("clip.mp4", CLIP, "video/mp4")}
    form_params = queued_extraction_params(client, monkeypatch, files=files, data={"parts": parts})
    assert form_params["parts"] == parts


def test_poses_extracts_the_whole_body_by_default_and_refuses_unknown_parts(client, monkeypatch):
    assert queued_extraction_params(client, monkeypatch, json={"video": data_uri(CLIP)})["parts"] == "full"
    bad = client.post("/poses", json={"video": data_uri(CLIP), "parts": "hands"})
    assert bad.status_code == 422 and "parts" in json.dumps(bad.json()["errors"])
    bad = client.post("/poses", files={"video": ("c.mp4", CLIP, "video/mp4")}, data={"parts": "face"})
    assert bad.status_code == 422 and "parts" in json.dumps(bad.json()["errors"])


def test_the_openapi_documents_parts_on_post_poses(client):
    body = client.get("/openapi.json").json()["paths"]["/poses"]["post"]["requestBody"]["content"]
    for form in ("application/json", "multipart/form-data"):
        parts = body[form]["schema"]["properties"]["parts"]
        assert "body+hands" in json.dumps(parts) and "full" in parts["description"], form
