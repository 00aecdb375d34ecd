"""`poseanimate poses extract` and `poseanimate animate --video` on a clip made from the astronaut photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main
from engine.poses.pose import PoseSequence
from engine.poses.video import encode_mp4, probe_mp4
from tests.support.audio import audio_duration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLIP_FRAMES, CLIP_FPS = 10, 24  # 0.417 s


@pytest.fixture(scope="module")
def astronaut_clip(tmp_path_factory) -> Path:
    """The astronaut at 192 px sliding right 6 px per frame on a grey 320 x 256 canvas."""
    pytest.importorskip("mediapipe")
    small = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((192, 192))
    frames = []
    for k in range(CLIP_FRAMES):
        canvas = Image.new("RGB", (320, 256), (120, 120, 120))
        canvas.paste(small, (16 + 6 * k, 64))
        frames.append(canvas)
    return encode_mp4(frames, tmp_path_factory.mktemp("clips") / "astronaut.mp4", fps=CLIP_FPS)


def fails_with(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("poseanimate: error: ") and message in err[-1], err


def test_poses_extract_writes_json_and_a_skeleton_preview(astronaut_clip, tmp_path, capsys):
    out, preview = tmp_path / "poses.json", tmp_path / "skeleton.mp4"
    argv = [
        "poses",
        "extract",
        str(astronaut_clip),
        "--out",
        str(out),
        "--fps",
        "12",
        "--preview",
        str(preview),
    ]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    poses = PoseSequence.from_json(out)  # the compact form animate --poses and the API read
    assert len(poses) == 5 and (poses.width, poses.height) == (320, 256)  # ceil(0.417 s * 12 fps)
    doc = json.loads(out.read_text())
    assert doc["fps"] == 12 and doc["extraction"]["frames_sampled"] == 5
    extraction = doc["extraction"]  # the default is the whole body
    assert extraction["detector"] == "mediapipe-holistic" and extraction["parts"] == "full"
    assert extraction["frames_without_person"] == []
    info = probe_mp4(preview)
    assert (info["frames"], info["width"], info["height"], info["codec"]) == (5, 320, 256, "h264")


def test_poses_extract_parts_full_puts_a_face_on_the_face_and_body_leaves_it_out(
    astronaut_clip, tmp_path, capsys
):
    out = tmp_path / "full.json"
    assert main(["poses", "extract", str(astronaut_clip), "--out", str(out), "--parts", "full"]) == 0
    assert "a face in" in capsys.readouterr().out
    poses = PoseSequence.from_json(out)
    with_face = [p for p in poses if p.face is not None]
    assert len(with_face) >= 0.8 * len(poses)
    for pose in with_face:
        kp, face = pose.keypoints, pose.face
        seen = face[:, 2] > 0
        assert seen.sum() >= 60
        ears_x = sorted([kp[16, 0], kp[17, 0]])  # the face lies within the ears' span, around the nose
        assert (face[seen, 0] > ears_x[0] - 8).all() and (face[seen, 0] < ears_x[1] + 8).all()
        assert np.hypot(*(face[30, :2] - kp[0, :2])) < 6  # nose tip on the body's nose
        assert np.hypot(*(face[68, :2] - kp[14, :2])) < 6 and np.hypot(*(face[69, :2] - kp[15, :2])) < 6
        assert face[8, 1] > face[30, 1] > face[27, 1]  # chin below the nose tip below the bridge
    body = tmp_path / "body.json"
    assert main(["poses", "extract", str(astronaut_clip), "--out", str(body), "--parts", "body"]) == 0
    doc = json.loads(body.read_text())
    assert "faces" not in doc and "hands" not in doc and doc["extraction"]["detector"] == "mediapipe"
    assert doc["extraction"]["frames_with_face"] == 0


def test_poses_extract_refuses_an_unknown_parts_value(astronaut_clip, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["poses", "extract", str(astronaut_clip), "--out", str(tmp_path / "p.json"), "--parts", "hands"])
    assert "invalid choice: 'hands'" in capsys.readouterr().err


def test_poses_extract_keeps_the_source_rate_and_trims(astronaut_clip, tmp_path):
    out = tmp_path / "poses.json"
    assert main(["poses", "extract", str(astronaut_clip), "--out", str(out), "--start", "0.125"]) == 0
    assert len(PoseSequence.from_json(out)) == CLIP_FRAMES - 3  # frames at 3/24 s onwards


def test_poses_extract_max_frames_keeps_the_first_frames(astronaut_clip, tmp_path, capsys):
    out = tmp_path / "p.json"
    argv = ["poses", "extract", str(astronaut_clip), "--out", str(out), "--max-frames", "3"]
    assert main(argv) == 0  # a 10-frame clip: the first 3 (issue 21; it used to be refused)
    assert "trimmed to the first 3 frames" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == 3 and doc["extraction"]["trimmed"] is True
    assert main([*argv[:-1], "20"]) == 0  # more than the clip has: nothing trimmed
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == CLIP_FRAMES and doc["extraction"]["trimmed"] is False


def test_poses_extract_refuses_bad_input_in_one_line(astronaut_clip, tmp_path, capsys):
    out = str(tmp_path / "p.json")
    fails_with(capsys, ["poses", "extract", str(EXAMPLES / "raise_arms.json"), "--out", out], "not a video")
    fails_with(capsys, ["poses", "extract", str(tmp_path / "nope.mp4"), "--out", out], "no such video file")
    fails_with(capsys, ["poses", "extract", str(astronaut_clip), "--out", str(tmp_path / "p.txt")], ".json")
    blank = encode_mp4([Image.new("RGB", (128, 128), (200, 30, 30))] * 4, tmp_path / "red.mp4", fps=8)
    fails_with(capsys, ["poses", "extract", str(blank), "--out", out], "no person found")


def test_animate_from_a_video_gives_clip_plus_source_plus_transition_frames(
    astronaut_clip, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "a.mp4"
    argv = [
        "animate", "--model", str(tiny_model_dir),
        "--image", str(EXAMPLES / "astronaut.jpg"),
        "--source-pose", str(EXAMPLES / "astronaut_pose.json"),
        "--video", str(astronaut_clip),
        "--prompt", "an astronaut", "--out", str(out),
        "--steps", "2", "--size", "64", "--transition-frames", "3", "--fps", "12", "--previews",
        "--retarget", "bones",
    ]  # fmt: skip
    assert main(argv) == 0
    resampled = 5  # the 0.417 s clip at the output rate, 12 fps
    assert probe_mp4(out)["frames"] == resampled + 1 + 3
    err = capsys.readouterr().err
    assert "extracted 5 poses at 12 fps" in err
    assert "the clip has no audio stream" in err and audio_duration(out) is None
    doc = json.loads((tmp_path / "a.poses.json").read_text())
    assert len(doc["frames"]) == 9 and doc["roles"] == {
        "source": [0, 1],
        "transition": [1, 4],
        "targets": [4, 9],
    }
    assert (doc["width"], doc["height"]) == (64, 64)
    # the clip is extracted with the job's parts (full by default): the driven frames have a face
    assert "a face in 5 of them" in err and all(face is not None for face in doc["faces"][4:9])
    skeleton = probe_mp4(tmp_path / "a.skeleton.mp4")
    assert (skeleton["frames"], skeleton["width"]) == (9, 64)
    side = probe_mp4(tmp_path / "a.side_by_side.mp4")
    assert side["frames"] == 9 and side["width"] == 3 * 64 + 2 * 4 and side["height"] == 64


def test_animate_takes_exactly_one_of_poses_and_video(astronaut_clip, tmp_path, capsys):
    base = [
        "animate",
        "--image",
        str(EXAMPLES / "astronaut.jpg"),
        "--prompt",
        "x",
        "--out",
        str(tmp_path / "a.mp4"),
    ]
    with pytest.raises(SystemExit) as both:
        main([*base, "--poses", str(EXAMPLES / "raise_arms.json"), "--video", str(astronaut_clip)])
    assert both.value.code == 2 and "not allowed with" in capsys.readouterr().err
    with pytest.raises(SystemExit) as neither:
        main(base)
    assert neither.value.code == 2 and "--poses --video" in capsys.readouterr().err.replace("/", " ")
