"""``poseanimate poses convert`` and ``poses render`` (issue 20)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from engine.poses.pose import Pose
from engine.poses.render import render_pose
from tests.support.payloads import STANDING
from tests.support.wholebody import openpose_person, wholebody_frame


def body25_file(tmp_path):
    frame = wholebody_frame()
    person = openpose_person(frame)
    body = [p for p in frame["body"]]
    # BODY_25: COCO-18 order with MidHip inserted at 8 and six feet points appended
    mid_hip = [(body[8][0] + body[11][0]) / 2, (body[8][1] + body[11][1]) / 2, 0.9]
    body25 = body[:8] + [mid_hip] + body[8:] + [[0.0, 0.0, 0.0]] * 6
    person["pose_keypoints_2d"] = [v for p in body25 for v in p]
    path = tmp_path / "body25.json"
    path.write_text(json.dumps({"version": 1.3, "people": [person]}))  # as the OpenPose binary writes it
    return path, frame


def test_convert_a_canvas_less_body_25_file_to_openpose_with_hands_and_face(tmp_path, capsys):
    path, _ = body25_file(tmp_path)
    out = tmp_path / "op.json"
    assert main(["poses", "convert", str(path), "--to", "openpose", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert isinstance(doc, list) and len(doc) == 1
    person = doc[0]["people"][0]
    assert len(person["pose_keypoints_2d"]) == 54 and person["pose_keypoints_2d"][:3] == [256.0, 96.0, 1.0]
    assert len(person["hand_left_keypoints_2d"]) == 63 and len(person["face_keypoints_2d"]) == 210
    assert doc[0]["canvas_width"] >= 331 and doc[0]["canvas_height"] >= 457
    assert "with hands and faces" in capsys.readouterr().out


def test_convert_to_compact_on_stdout(tmp_path, capsys):
    path, _ = body25_file(tmp_path)
    assert main(["poses", "convert", str(path), "--to", "compact"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["units"] == "pixels" and len(doc["frames"][0]) == 18 and "hands" in doc and "faces" in doc


def test_convert_refuses_an_unknown_file_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"skeleton": [1, 2]}))
    assert main(["poses", "convert", str(bad), "--to", "openpose"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("poseanimate: error: unrecognised pose JSON") and err.count("\n") == 1


def test_render_writes_the_exact_conditioning_images(tmp_path):
    frame = wholebody_frame()
    src = tmp_path / "p.json"
    src.write_text(
        json.dumps([{"people": [openpose_person(frame)], "canvas_width": 512, "canvas_height": 512}] * 2)
    )
    out = tmp_path / "frames"
    assert main(["poses", "render", str(src), "--out", str(out)]) == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["frame_00000.png", "frame_00001.png"]
    pose = Pose(
        np.array(frame["body"]), 512, 512, hands=np.array(frame["hands"]), face=np.array(frame["face"])
    )
    assert np.array_equal(np.asarray(Image.open(files[0])), np.asarray(render_pose(pose, 512, 512)))
    assert main(["poses", "render", str(src), "--out", str(tmp_path / "b"), "--no-hands", "--no-face",
                 "--width", "256", "--height", "256"]) == 0  # fmt: skip
    body = np.asarray(Image.open(tmp_path / "b" / "frame_00000.png"))
    assert body.shape == (256, 256, 3)
    assert np.array_equal(
        body, np.asarray(render_pose(Pose(np.array(STANDING, dtype=float), 512, 512), 256, 256))
    )


@pytest.mark.parametrize("args", [["--width", "100"], ["--width", "0", "--height", "0"]])
def test_render_refuses_bad_sizes(tmp_path, args, capsys):
    src = tmp_path / "p.json"
    src.write_text(json.dumps({"width": 512, "height": 512, "frames": [STANDING]}))
    assert main(["poses", "render", str(src), "--out", str(tmp_path / "o"), *args]) == 2
