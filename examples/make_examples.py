"""Regenerate the example poses in this folder (the image is committed as is).

    .venv/bin/python examples/make_examples.py            # writes the three JSON files
    .venv/bin/python examples/make_examples.py --preview DIR   # also renders the poses as PNGs

``astronaut_pose.json`` is what the MediaPipe backend detects on ``astronaut.jpg``; the two motions
are written out from simple joint-angle curves so they are easy to read and to change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine.poses.pose import KEYPOINT_NAMES, NUM_KEYPOINTS, PoseSequence  # noqa: E402
from engine.poses.render import render_pose  # noqa: E402

IDX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


def _ease(u: float) -> float:
    return (1 - math.cos(math.pi * u)) / 2


def _arm(shoulder: np.ndarray, side: int, upper: float, fore: float, raise_deg: float, bend_deg: float):
    """Elbow and wrist for an arm lifted sideways by ``raise_deg`` (0 = hanging down, 180 = overhead).

    ``side`` is -1 for the person's right arm (image left when facing the camera), +1 for the left.
    """
    a = math.radians(raise_deg)
    elbow = shoulder + upper * np.array([side * math.sin(a), math.cos(a)])
    b = math.radians(raise_deg + bend_deg)
    wrist = elbow + fore * np.array([side * math.sin(b), math.cos(b)])
    return elbow, wrist


def raise_arms(frames: int = 14) -> dict:
    """A small figure right of centre (512 x 512) lifting both arms sideways from its hips into a V above its shoulders."""
    base = {
        "nose": (300, 150),
        "neck": (300, 190),
        "r_shoulder": (255, 192),
        "l_shoulder": (345, 192),
        "r_hip": (272, 310),
        "l_hip": (328, 310),
        "r_eye": (293, 142),
        "l_eye": (307, 142),
        "r_ear": (284, 147),
        "l_ear": (316, 147),
    }
    out = []
    for k in range(frames):
        u = _ease(k / (frames - 1))
        kp = np.zeros((NUM_KEYPOINTS, 3))
        for name, (x, y) in base.items():
            kp[IDX[name]] = (x, y, 1.0)
        # A slight lift of the chin as the arms go up keeps the head from looking frozen.
        for name in ("nose", "r_eye", "l_eye", "r_ear", "l_ear"):
            kp[IDX[name], 1] -= 4 * u
        for side, prefix in ((-1, "r"), (1, "l")):
            shoulder = kp[IDX[f"{prefix}_shoulder"], :2]
            elbow, wrist = _arm(
                shoulder, side, 62, 56, raise_deg=12 + 128 * u, bend_deg=20 * math.sin(math.pi * u)
            )
            kp[IDX[f"{prefix}_elbow"]] = (*elbow, 1.0)
            kp[IDX[f"{prefix}_wrist"]] = (*wrist, 1.0)
        kp[:, :2] = np.round(kp[:, :2], 1)
        out.append(kp.tolist())
    return {"width": 512, "height": 512, "units": "pixels", "frames": out}


def wave(frames: int = 8) -> list[dict]:
    """A full standing figure on a 640 x 480 canvas waving its right hand (OpenPose JSON frames)."""
    base = {
        "nose": (320, 70),
        "neck": (320, 112),
        "r_shoulder": (284, 114),
        "l_shoulder": (356, 114),
        "l_elbow": (366, 180),
        "l_wrist": (370, 240),
        "r_hip": (302, 240),
        "l_hip": (338, 240),
        "r_knee": (300, 330),
        "l_knee": (340, 330),
        "r_ankle": (298, 420),
        "l_ankle": (342, 420),
        "r_eye": (313, 62),
        "l_eye": (327, 62),
        "r_ear": (305, 67),
        "l_ear": (335, 67),
    }
    out = []
    for k in range(frames):
        kp = np.zeros((NUM_KEYPOINTS, 3))
        for name, (x, y) in base.items():
            kp[IDX[name]] = (x, y, 0.95)
        elbow = np.array([247.0, 160.0 - 3 * math.sin(2 * math.pi * k / 4)])
        swing = math.radians(28 * math.sin(2 * math.pi * k / 4))
        wrist = elbow + 56 * np.array([math.sin(swing), -math.cos(swing)])
        kp[IDX["r_elbow"]] = (*elbow, 0.9)
        kp[IDX["r_wrist"]] = (*wrist, 0.85)
        kp[:, :2] = np.round(kp[:, :2], 1)
        out.append(
            {
                "version": 1.3,
                "people": [{"pose_keypoints_2d": kp.reshape(-1).tolist()}],
                "canvas_width": 640,
                "canvas_height": 480,
            }
        )
    return out


def astronaut_pose() -> dict:
    from engine.poses.detect import MediaPipePoseDetector

    image = Image.open(HERE / "astronaut.jpg")
    pose = MediaPipePoseDetector().detect(image)
    if pose is None:
        raise SystemExit("no pose found in astronaut.jpg")
    frame = pose.to_openpose()
    frame["people"][0]["pose_keypoints_2d"] = [round(v, 2) for v in frame["people"][0]["pose_keypoints_2d"]]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preview", type=Path, help="also render every pose into this folder")
    args = parser.parse_args()
    files = {
        "astronaut_pose.json": astronaut_pose(),
        "raise_arms.json": raise_arms(),
        "wave_openpose.json": wave(),
    }
    for name, data in files.items():
        (HERE / name).write_text(json.dumps(data, separators=(",", ":")) + "\n")
    if args.preview:
        args.preview.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            seq = PoseSequence.from_json(data)
            tiles = [render_pose(p, seq.width, seq.height) for p in seq]
            sheet = Image.new("RGB", (seq.width * len(tiles), seq.height))
            for i, tile in enumerate(tiles):
                sheet.paste(tile, (i * seq.width, 0))
            sheet.save(args.preview / f"{Path(name).stem}.png")


if __name__ == "__main__":
    main()
