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
