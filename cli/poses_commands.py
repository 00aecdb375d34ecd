"""``poseanimate poses extract``: a driving video to pose JSON (and a skeleton preview).

Torch-free: extraction needs PyAV, numpy, PIL and a pose detector (MediaPipe, the ``detect`` extra).
User errors raise ``ValueError`` with one line; ``cli.main`` prints it and exits 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# numpy + PIL (the engine extra): without them cli.main registers a stub that names the extra.
from engine.inputs.rules import POSE_PARTS
from engine.poses.extract import DEFAULT_MAX_GAP, DEFAULT_WINDOW

# The skeleton preview of a full-HD clip need not be full HD to be read.
PREVIEW_MAX_SIDE = 768


def add_poses_commands(subparsers: Any) -> None:
    """Register ``poses extract``, ``poses convert`` and ``poses render`` on an argparse sub-parser set."""
    from cli.pose_file_commands import add_pose_file_commands

    poses = subparsers.add_parser(
        "poses", help="pose sequences: extract from a video, convert, render", description=__doc__
    )
    sub = poses.add_subparsers(dest="poses_command", required=True)
    add_pose_file_commands(sub)
    extract = sub.add_parser(
        "extract",
        help="extract a pose sequence (compact JSON, COCO-18 body, hands, face) from a driving video",
        description="Decode VIDEO (MP4/H.264, WebM/VP9, MOV, animated GIF), sample it at --fps, find one "
        "person's pose per frame (MediaPipe BlazePose mapped to OpenPose COCO-18; with --parts, the hands "
        "and face MediaPipe Holistic finds, in OpenPose's 21-point hand and 70-point face layouts), "
        "bridge short gaps, smooth, and write the compact pose JSON that `animate --poses` and the API "
        "accept.",
    )
    add_extraction_arguments(extract)
    extract.add_argument("video", type=Path, help="driving video file")
    extract.add_argument("--out", required=True, type=Path, help="output pose JSON path")
    extract.add_argument(
        "--fps", type=float, default=None, help="sample rate (default: keep the video's own frame rate)"
    )
    extract.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="keep the first N sampled frames of a longer clip (without it: refuse clips over 300)",
    )
    extract.add_argument(
        "--parts",
        choices=list(POSE_PARTS),
        default="full",
        help="what of the person to extract (default: full: body, hands and face; body alone is faster)",
    )
    extract.add_argument("--preview", type=Path, help="also write the skeleton frames as an H.264 MP4 here")
    extract.set_defaults(func=extract_command)


def add_extraction_arguments(parser: argparse.ArgumentParser, prefix: str = "") -> None:
    """The trimming, smoothing and policy options, shared with ``animate --video`` (``prefix``:
    ``"video-"`` there, so ``--video-start`` cannot be mistaken for something else)."""
    parser.add_argument(
        f"--{prefix}start", type=float, default=None, help="start at this second of the video"
    )
    parser.add_argument(f"--{prefix}end", type=float, default=None, help="stop at this second of the video")
    parser.add_argument(
        f"--{prefix}smoothing",
        choices=["savgol", "one_euro", "none"],
        default="savgol",
        help=f"temporal smoothing of the keypoints (default: savgol, {DEFAULT_WINDOW} frames)",
    )
    parser.add_argument(
        f"--{prefix}max-gap",
        type=int,
        default=DEFAULT_MAX_GAP,
        help=f"bridge a keypoint lost for at most this many frames (default: {DEFAULT_MAX_GAP})",
    )
    parser.add_argument(
        f"--{prefix}no-person",
        choices=["drop", "keep", "hold", "error"],
        default="drop",
        help="frames where nobody is found: drop them (default), keep them empty, hold the last pose "
        "(every frame keeps its clip time), or fail",
    )
    parser.add_argument(f"--{prefix}detector", default="auto", help="pose detector backend (default: auto)")


def extraction_options(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """``extract_poses`` keyword arguments from the options of :func:`add_extraction_arguments`."""
    key = prefix.replace("-", "_")
    return {
        "start": getattr(args, f"{key}start"),
        "end": getattr(args, f"{key}end"),
        "smoothing": getattr(args, f"{key}smoothing"),
        "max_gap": getattr(args, f"{key}max_gap"),
        "no_person": getattr(args, f"{key}no_person"),
        "detector": getattr(args, f"{key}detector"),
    }


def describe(result: Any) -> str:
    """One line about an :class:`engine.poses.extract.ExtractionResult`."""
    missing = len(result.frames_without_person)
    text = (
        f"{len(result.poses)} poses at {result.fps:g} fps from {result.frames_sampled} sampled "
        f"of {result.frames_decoded} decoded frames ({result.width}x{result.height}, "
        f"detector {result.detector}, smoothing {result.smoothing})"
    )
    parts = result.settings.get("parts", "body")
    if parts != "body":
        report = result.report()
        found = [f"hands in {report['frames_with_hands']}"] if parts in ("body+hands", "full") else []
        found += [f"a face in {report['frames_with_face']}"] if parts in ("body+face", "full") else []
        text += f"; {' and '.join(found)} of them"
    if missing:
        text += (
            f"; nobody found in {missing} frames: {len(result.frames_bridged)} bridged, "
            f"{len(result.frames_dropped)} dropped"
            + (f", {len(result.frames_held)} held" if result.frames_held else "")
        )
    return text


def preview_size(width: int, height: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """``width`` x ``height`` shrunk (aspect kept) so the longer side is at most ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(round(width * scale), 2), max(round(height * scale), 2)


def extract_command(args: argparse.Namespace) -> int:
    from engine.poses.extract import extract_poses
    from engine.poses.pose import DEFAULT_MAX_FRAMES
    from engine.poses.previews import poses_document, write_poses_json, write_skeleton_video

    if args.out.suffix.lower() != ".json":
        raise ValueError("--out must end in .json")
    if args.preview is not None and args.preview.suffix.lower() != ".mp4":
        raise ValueError("--preview must end in .mp4")
    result = extract_poses(
        args.video,
        fps=args.fps,
        max_frames=args.max_frames or DEFAULT_MAX_FRAMES,
        trim=args.max_frames is not None,
        parts=args.parts,
        **extraction_options(args),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_poses_json(poses_document(result.poses, fps=result.fps, extraction=result.report()), args.out)
    trimmed = f"; trimmed to the first {args.max_frames} frames" if result.settings.get("trimmed") else ""
    print(f"wrote {args.out}: {describe(result)}{trimmed}")
    if args.preview is not None:
        args.preview.parent.mkdir(parents=True, exist_ok=True)
        w, h = preview_size(result.width, result.height)
        write_skeleton_video(result.poses, args.preview, min(max(result.fps, 1), 60), width=w, height=h)
        print(f"wrote {args.preview} ({len(result.poses)} skeleton frames, {w}x{h})")
    return 0
