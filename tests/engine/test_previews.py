"""Job previews: poses.json, the skeleton video (ControlNet conditioning frames) and [source | pose | result]."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from engine.poses.alignment import align_poses
from engine.poses.pose import Pose, PoseSequence
from engine.poses.previews import (
    poses_document,
    preview_paths,
    read_frames,
    side_by_side_frames,
    write_poses_json,
    write_previews,
    write_side_by_side,
    write_skeleton_video,
)
from engine.poses.render import render_pose
from engine.poses.video import VideoError, encode_mp4, probe_mp4

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def sequence() -> PoseSequence:
    source = Pose.from_json(EXAMPLES / "astronaut_pose.json")
    targets = PoseSequence.from_json(EXAMPLES / "raise_arms.json")[:6]
    return align_poses(source, targets, 2, width=128, height=128)  # 1 + 2 + 6 poses


def test_skeleton_video_holds_the_controlnet_conditioning_frames(sequence, tmp_path):
    path = write_skeleton_video(sequence, tmp_path / "skeleton.mp4", fps=8)
    info = probe_mp4(path)
    assert (info["frames"], info["width"], info["height"], info["fps"]) == (9, 128, 128, 8.0)
    for decoded, pose in zip(read_frames(path), sequence, strict=True):
        want = np.asarray(render_pose(pose, 128, 128), dtype=float)
        got = np.asarray(decoded, dtype=float)
        assert np.abs(got - want).mean() < 4.0  # H.264 at CRF 18 on thin coloured sticks
        assert want.max() > 0


def test_side_by_side_puts_columns_in_order_at_one_height(tmp_path):
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    greens = [Image.new("RGB", (32, 32), (0, 255, 0))] * 3  # scaled up to 64 px
    blues = [Image.new("RGB", (64, 64), (0, 0, 255))] * 5  # longer: the output stops at 3
    frames = list(side_by_side_frames([red, greens, blues]))
    assert len(frames) == 3 and frames[0].size == (64 + 4 + 64 + 4 + 64, 64)
    px = np.asarray(frames[0])
    assert (
        tuple(px[32, 10]) == (255, 0, 0)
        and tuple(px[32, 100]) == (0, 255, 0)
        and tuple(px[32, 180]) == (0, 0, 255)
    )
    info = probe_mp4(write_side_by_side([red, greens, blues], tmp_path / "sbs.mp4"))
    assert (info["frames"], info["width"], info["height"]) == (3, 200, 64)
    with pytest.raises(VideoError, match="column of frames"):
        list(side_by_side_frames([red]))


def test_poses_document_reads_back_with_frame_roles(sequence, tmp_path):
    doc = poses_document(sequence, fps=8, transition_frames=2)
    assert doc["roles"] == {"source": [0, 1], "transition": [1, 3], "targets": [3, 9]}
    path = write_poses_json(doc, tmp_path / "poses.json")
    back = PoseSequence.from_json(path)
    assert len(back) == len(sequence) and (back.width, back.height) == (128, 128)
    np.testing.assert_allclose(
        back.keypoints(), sequence.keypoints(), atol=1e-3
    )  # the parser keeps 3 decimals
    assert json.loads(path.read_text())["fps"] == 8.0


def test_write_previews_names_three_files_next_to_the_output(sequence, tmp_path):
    out = tmp_path / "job.mp4"
    frames = [Image.new("RGB", (128, 128), (10 * k, 0, 0)) for k in range(len(sequence))]
    encode_mp4(frames, out, fps=8)
    image = Image.open(EXAMPLES / "astronaut.jpg")
    result = SimpleNamespace(poses=sequence, frames=[])  # streamed: frames are read back from out
    paths = write_previews(result, out, image=image, fps=8, transition_frames=2)
    assert paths == preview_paths(out)
    assert {p.name for p in paths.values()} == {"job.poses.json", "job.skeleton.mp4", "job.side_by_side.mp4"}
    assert len(json.loads(paths["poses"].read_text())["frames"]) == 9
    assert probe_mp4(paths["skeleton"])["frames"] == 9
    side = probe_mp4(paths["side_by_side"])
    assert (side["frames"], side["width"], side["height"]) == (9, 3 * 128 + 8, 128)
