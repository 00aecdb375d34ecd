"""A whole-body pose file reaches the conditioning with its hands and face: the job's poses.json
and skeleton.mp4 carry them, and ``parts`` leaves them out (issue 20). Noop backend, real Redis."""

import io
import json

import av
import numpy as np
import pytest

from engine.inputs.poseformat import normalize_poses
from engine.poses.pose import PoseSequence
from tests.support.jobs import noop_runner, submit
from tests.support.wholebody import openpose_person, wholebody_frame


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
