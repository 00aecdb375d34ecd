"""A whole-body pose file reaches the conditioning with its hands and face: the job's poses.json
and skeleton.mp4 carry them, and ``parts`` leaves them out (issue 20). Noop backend, real Redis."""

import io
import json

import av
import numpy as np
import pytest

from engine.inputs.poseformat import normalize_poses
from engine.poses.pose import PoseSequence
from jobs.extractions import ExtractionStore, new_extraction_id, video_key
from tests.support.clips import astronaut_mp4
from tests.support.jobs import noop_runner, submit
from tests.support.wholebody import openpose_person, wholebody_frame
from worker.extraction import run_extraction, run_job_extraction


@pytest.fixture
def env(store, redis_srv, tmp_path):
    settings, storage, runner = noop_runner(store, redis_srv.url, tmp_path)
    return settings, store, storage, runner


def whole_body_poses() -> dict:
    frame = wholebody_frame()
    doc = [{"people": [openpose_person(frame)], "canvas_width": 512, "canvas_height": 512}] * 2
    return normalize_poses(doc, max_frames=4)


def outputs(env, **params):
    _, store, storage, runner = env
    record = submit(env, poses=whole_body_poses(), size=256, transition_frames=1, **params)
    assert runner.run(record.id) == "succeeded"
    done = store.get(record.id)
    doc = json.loads(storage.get_bytes(done.outputs["poses"]))
    with av.open(io.BytesIO(storage.get_bytes(done.outputs["skeleton"]))) as container:
        skeleton = [np.asarray(f.to_image()) for f in container.decode(video=0)]
    return done, doc, skeleton


def test_hands_and_face_reach_poses_json_and_the_skeleton_and_parts_body_leaves_them_out(env):
    done, doc, skeleton = outputs(env)
    assert done.params["parts"] == "full"
    poses = PoseSequence.from_json(doc)
    assert all(p.hands is not None and p.face is not None for p in poses[-2:])
    _, body_doc, body_skeleton = outputs(env, parts="body")
    assert "hands" not in body_doc and "faces" not in body_doc
    # the targets' skeleton frames differ (hands and face drawn), the body alone is the same drawing
    last, last_body = skeleton[-1].astype(int), body_skeleton[-1].astype(int)
    assert np.abs(last - last_body).max() > 100
    _, hands_doc, _ = outputs(env, parts="body+hands")
    assert "hands" in hands_doc and "faces" not in hands_doc


# --- a driving video: the extraction stage and POST /poses extract the parts asked for --------------------


@pytest.fixture(scope="module")
def clip() -> bytes:
    pytest.importorskip("mediapipe")
    return astronaut_mp4(4, fps=8, side=192, canvas=(256, 224))


def extracted(env, clip, **params):
    _, _, storage, runner = env
    record = submit(env, driving_video=clip, **params)
    assert run_job_extraction(record.id, runner.services) == "sent"
    return record, json.loads(storage.get_bytes(f"inputs/{record.id}/poses.json"))


def test_a_driving_video_job_extracts_the_face_for_full_and_leaves_it_out_for_body(env, clip):
    record, doc = extracted(env, clip, transition_frames=1)  # parts: full, the default
    assert len(doc["frames"]) == 4 and "faces" in doc
    assert sum(face is not None for face in doc["faces"]) >= 3
    assert env[3].run(record.id) == "succeeded"  # the noop GPU run keeps them in the job's poses.json
    done = env[1].get(record.id)
    out = PoseSequence.from_json(json.loads(env[2].get_bytes(done.outputs["poses"])))
    assert sum(p.face is not None for p in out[-4:]) >= 3
    _, body_doc = extracted(env, clip, parts="body")
    assert len(body_doc["frames"]) == 4 and "faces" not in body_doc and "hands" not in body_doc


@pytest.mark.parametrize(
    ("params", "face"), [({"parts": "body+face"}, True), ({"parts": "body"}, False), ({}, True)]
)
def test_a_pose_extraction_request_extracts_its_parts(env, clip, params, face):
    _, store, storage, runner = env
    extraction_id = new_extraction_id()
    key = video_key(extraction_id, "mp4")
    storage.put_bytes(key, clip, "video/mp4")
    records = ExtractionStore(store.r, store.p)
    # {}: a request queued before parts existed extracts the default, full
    records.create(extraction_id, "key_a", {"fps": None, "max_frames": 64, **params}, key)
    assert run_extraction(extraction_id, runner.services) == "succeeded"
    done = records.get(extraction_id)
    assert done["report"]["parts"] == params.get("parts", "full")
    assert ("faces" in done["poses"]) == face and "hands" not in done["poses"]  # no hand in this clip
    assert (done["report"]["frames_with_face"] >= 3) == face
