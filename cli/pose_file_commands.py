"""``poseanimate poses convert`` and ``poses render``: pose files as they come, in and out.

``convert`` turns any accepted pose file (OpenPose COCO-18 or BODY_25 with or without hands, face
and canvas, ComfyUI ``POSE_KEYPOINT``, COCO-17, COCO-WholeBody-133, COCO annotations, MMPose
instances, the compact form) into OpenPose JSON or the compact form. ``render`` writes each frame's
ControlNet conditioning image as a PNG: the exact image the ControlNet sees. Both need numpy and PIL
only (no torch). User errors raise ``ValueError`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MAX_FRAMES = 100_000


def add_pose_file_commands(sub: Any) -> None:
    convert = sub.add_parser(
        "convert",
        help="convert any accepted pose file to OpenPose JSON or the compact form",
        description="Read FILE in any accepted pose format (docs/poses.md: OpenPose COCO-18/BODY_25 with "
        "hands and face, ComfyUI POSE_KEYPOINT, COCO-17, COCO-WholeBody-133, COCO annotations, MMPose) and "
        "write it as OpenPose JSON (a list of frames with canvas_width/canvas_height and the hand/face "
        "arrays) or as the compact form. Pixel poses without a canvas get the smallest one holding them.",
    )
    convert.add_argument("file", type=Path, help="pose JSON file")
    convert.add_argument("--to", choices=["openpose", "compact"], required=True, help="output format")
    convert.add_argument("--out", type=Path, help="output path (default: standard output)")
    convert.set_defaults(func=convert_command)

    render = sub.add_parser(
        "render",
        help="write each frame's ControlNet conditioning image (PNG)",
        description="Draw every frame of POSES as the OpenPose ControlNet sees it (the v1.1 annotator's "
        "body, hands and face) and write DIR/frame_00000.png, ...",
    )
    render.add_argument("poses", type=Path, help="pose JSON file (any accepted format)")
    render.add_argument("--out", type=Path, required=True, help="output directory")
    render.add_argument("--width", type=int, help="image width (default: the poses' canvas)")
    render.add_argument("--height", type=int, help="image height (default: the poses' canvas)")
    render.add_argument("--no-hands", action="store_true", help="leave the hands out")
    render.add_argument("--no-face", action="store_true", help="leave the face out")
    render.set_defaults(func=render_command)


def _read(path: Path) -> dict[str, Any]:
    from engine.inputs.poseformat import normalize_poses

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return normalize_poses(path, max_frames=MAX_FRAMES)


def convert_command(args: argparse.Namespace) -> int:
    from engine.poses.pose import PoseSequence

    compact = _read(args.file)
    document: Any = compact if args.to == "compact" else PoseSequence.from_compact(compact).to_openpose()
    text = json.dumps(document, separators=(",", ":"))
    if args.out is None:
        sys.stdout.write(text + "\n")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    parts = [name for name in ("hands", "faces") if name in compact]
    print(
        f"wrote {args.out}: {len(compact['frames'])} frames, {compact['width']}x{compact['height']}, "
        f"{args.to}" + (f" with {' and '.join(parts)}" if parts else "")
    )
    return 0


def render_command(args: argparse.Namespace) -> int:
    from engine.poses.pose import PoseSequence
    from engine.poses.render import render_pose

    poses = PoseSequence.from_compact(_read(args.poses))
    if (args.width is None) != (args.height is None):
        raise ValueError("give both --width and --height, or neither")
    width, height = (args.width, args.height) if args.width is not None else (poses.width, poses.height)
    if not (1 <= width <= 4096 and 1 <= height <= 4096):
        raise ValueError("--width and --height must be in 1..4096")
    args.out.mkdir(parents=True, exist_ok=True)
    for i, pose in enumerate(poses):
        image = render_pose(pose, width, height, hands=not args.no_hands, face=not args.no_face)
        image.save(args.out / f"frame_{i:05d}.png")
    print(f"wrote {len(poses)} conditioning images ({width}x{height}) to {args.out}")
    return 0
