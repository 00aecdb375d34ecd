"""The playground's client-side PATA (api/static/poses.js) gives the engine's aligned poses
(engine.poses.alignment.align_poses), so the preview shows what the job will run. Run with node."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from engine.poses.alignment import align_poses
from engine.poses.pose import Pose, PoseSequence

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")


def _js_align(source: Path, targets: Path, transition: int, width: int, height: int) -> list:
    script = (
        (REPO / "api/static/poses.js").read_text()
        + f"""
const src = Poses.parse({source.read_text()});
const tgt = Poses.parse({targets.read_text()});
process.stdout.write(JSON.stringify(Poses.align(src, tgt, {transition}, {width}, {height}).frames));
"""
    )
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
@pytest.mark.parametrize(
    "motion,size",
    [("raise_arms.json", (512, 512)), ("wave_openpose.json", (512, 512)), ("raise_arms.json", (384, 256))],
)
def test_client_side_alignment_matches_the_engine(motion, size):
    source_path, motion_path = REPO / "examples/astronaut_pose.json", REPO / "examples" / motion
    engine = align_poses(
        Pose.from_json(source_path), PoseSequence.from_json(motion_path), 3, width=size[0], height=size[1]
    )
    js = np.array(_js_align(source_path, motion_path, 3, *size))
    expected = np.stack([p.keypoints for p in engine])
    assert js.shape == expected.shape
    visible = expected[..., 2] > 0
    assert ((js[..., 2] > 0) == visible).all()
    np.testing.assert_allclose(js[visible][:, :2], expected[visible][:, :2], atol=0.05)


def _js_align_parts(source: Path, targets: Path, transition: int, width: int, height: int) -> list:
    script = (
        (REPO / "api/static/poses.js").read_text()
        + f"""
const src = Poses.parse({source.read_text()});
const tgt = Poses.parse({targets.read_text()});
const out = Poses.align(src, tgt, {transition}, {width}, {height}).frames;
process.stdout.write(JSON.stringify(out.map((f) => ({{body: f, hands: f.hands || null, face: f.face || null}}))));
"""
    )
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_client_side_alignment_carries_hands_and_face_as_the_engine_does(tmp_path):
    from tests.support.wholebody import openpose_person, wholebody_frame

    frame = wholebody_frame()
    person = openpose_person(frame)
    # BODY_25 without a canvas, as the OpenPose binary writes it, with hands and face
    b = frame["body"]
    body25 = [
        *b[:8],
        [(b[8][0] + b[11][0]) / 2, (b[8][1] + b[11][1]) / 2, 0.9],
        *b[8:],
        *([[0.0, 0.0, 0.0]] * 6),
    ]
    moved = [[x * 0.8 + 30, y * 0.8 + 20, c] if c > 0 else [0, 0, 0] for x, y, c in body25]
    person = {**person, "pose_keypoints_2d": [v for p in moved for v in p]}
    for key in ("hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d"):
        pts = np.array(person[key]).reshape(-1, 3)
        pts[:, :2] = np.where(pts[:, 2:] > 0, pts[:, :2] * 0.8 + (30, 20), 0)
        person[key] = pts.reshape(-1).tolist()
    targets = tmp_path / "t.json"
    targets.write_text(json.dumps([{"people": [person]}] * 2))
    source = REPO / "examples/astronaut_pose.json"
    engine = align_poses(Pose.from_json(source), PoseSequence.from_json(targets), 3, width=512, height=512)
    js = _js_align_parts(source, targets, 3, 512, 512)
    assert len(js) == len(engine)
    for got, want in zip(js, engine, strict=True):
        np.testing.assert_allclose(np.array(got["body"]), want.keypoints, atol=0.05)
        for name in ("hands", "face"):
            expected = getattr(want, name)
            if expected is None:
                assert got[name] is None
                continue
            value = got[name] if name == "face" else [h if h else [[0, 0, 0]] * 21 for h in got[name]]
            np.testing.assert_allclose(np.array(value), expected, atol=0.05)
