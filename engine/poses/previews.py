"""Previews of a job: the pose sequence as JSON, the skeleton video, and [source | pose | result].

- ``poses.json``: :func:`poses_document`, the whole sequence used (source pose, transition, aligned
  targets) on the output canvas, in the compact form ``PoseSequence.from_json`` reads back.
- ``skeleton.mp4``: :func:`write_skeleton_video`, the OpenPose ControlNet conditioning frames
  (:func:`engine.poses.render.render_pose`), exactly what the model was conditioned on.
- ``side_by_side.mp4``: :func:`write_side_by_side`, columns side by side, each a still image or a
  frame sequence, e.g. the character image, the skeleton and the result.

Frames are streamed into the encoder one at a time (:class:`engine.poses.video.Mp4Writer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from engine.poses.pose import PoseSequence
from engine.poses.render import render_pose
from engine.poses.video import Mp4Writer, VideoError

if TYPE_CHECKING:
    from engine.poses.audio import AudioTrack

__all__ = [
    "poses_document",
    "preview_paths",
    "read_frames",
    "side_by_side_frames",
    "skeleton_frames",
    "write_poses_json",
    "write_previews",
    "write_side_by_side",
    "write_skeleton_video",
]

# A thin dark rule between columns, so a black skeleton background does not merge into a dark photo.
_GUTTER = 4
_GUTTER_COLOR = (32, 32, 32)


def skeleton_frames(
    poses: PoseSequence, width: int | None = None, height: int | None = None
) -> Iterator[Image.Image]:
    """The ControlNet conditioning image of each pose, ``width`` x ``height`` (default: the poses'
    canvas), one at a time."""
    w, h = width or poses.width, height or poses.height
    for pose in poses:
        yield render_pose(pose, w, h)


def write_skeleton_video(
    poses: PoseSequence,
    path: str | Path,
    fps: float = 8,
    *,
    width: int | None = None,
    height: int | None = None,
) -> Path:
    """Encode :func:`skeleton_frames` as an H.264 MP4 at ``path``; returns the path."""
    with Mp4Writer(path, fps) as writer:
        for frame in skeleton_frames(poses, width, height):
            writer.write(frame)
    return writer.path


Column = Image.Image | Iterable[Image.Image]


def side_by_side_frames(columns: Sequence[Column], *, height: int | None = None) -> Iterator[Image.Image]:
    """Frames with ``columns`` side by side, each scaled to ``height`` (default: the first frame's
    height of the first column) keeping its aspect ratio.

    A column is a still image (shown in every frame) or an iterable of frames; the output stops with
    the shortest frame column. At least one column must be a frame sequence.
    """
    if not columns:
        raise VideoError("side by side needs at least one column")
    iterators: list[Iterator[Image.Image] | None] = []
    stills: list[Image.Image | None] = []
    for column in columns:
        if isinstance(column, Image.Image):
            stills.append(column.convert("RGB"))
            iterators.append(None)
        else:
            stills.append(None)
            iterators.append(iter(column))
    if all(it is None for it in iterators):
        raise VideoError("side by side needs at least one column of frames")
    while True:
        row: list[Image.Image] = []
        for still, it in zip(stills, iterators, strict=True):
            if it is None:
                assert still is not None
                row.append(still)
                continue
            try:
                row.append(next(it).convert("RGB"))
            except StopIteration:
                return
        target_h = height or row[0].height
        scaled = [
            image if image.height == target_h else ImageOps.contain(image, (10**6, target_h)) for image in row
        ]
        total_w = sum(image.width for image in scaled) + _GUTTER * (len(scaled) - 1)
        canvas = Image.new("RGB", (total_w, target_h), _GUTTER_COLOR)
        x = 0
        for image in scaled:
            canvas.paste(image, (x, (target_h - image.height) // 2))
            x += image.width + _GUTTER
        yield canvas


def write_side_by_side(
    columns: Sequence[Column],
    path: str | Path,
    fps: float = 8,
    *,
    height: int | None = None,
    audio: AudioTrack | None = None,
) -> Path:
    """Encode :func:`side_by_side_frames` as an H.264 MP4 at ``path`` (with ``audio`` as AAC);
    returns the path."""
    with Mp4Writer(path, fps, audio=audio) as writer:
        for frame in side_by_side_frames(columns, height=height):
            writer.write(frame)
    return writer.path


def poses_document(
    poses: PoseSequence, *, fps: float | None = None, transition_frames: int | None = None, **extra: Any
) -> dict[str, Any]:
    """The compact JSON of the whole sequence (:meth:`PoseSequence.to_compact`, pixels), with
    ``fps`` and the frame roles when known: frame 0 is the source pose, then ``transition_frames``
    transition poses, then the aligned targets. ``extra`` keys are added as they are."""
    doc = poses.to_compact()
    if fps is not None:
        doc["fps"] = float(fps)
    if transition_frames is not None:
        doc["roles"] = {
            "source": [0, 1],
            "transition": [1, 1 + transition_frames],
            "targets": [1 + transition_frames, len(poses)],
        }
    doc.update(extra)
    return doc


def write_poses_json(document: dict[str, Any], path: str | Path) -> Path:
    """Write a :func:`poses_document` (or any compact pose JSON) to ``path``; returns the path."""
    path = Path(path)
    path.write_text(json.dumps(document, separators=(",", ":")))
    return path


def read_frames(path: str | Path) -> Iterator[Image.Image]:
    """Decode a video's frames as RGB images, one at a time (e.g. the result MP4, for the side by side)."""
    import av

    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame.to_image()


def preview_paths(out: str | Path) -> dict[str, Path]:
    """Where :func:`write_previews` puts each preview next to the output ``out`` (``a.mp4`` ->
    ``a.poses.json``, ``a.skeleton.mp4``, ``a.side_by_side.mp4``)."""
    out = Path(out)
    stem = out.with_suffix("")
    return {
        "poses": stem.with_name(stem.name + ".poses.json"),
        "skeleton": stem.with_name(stem.name + ".skeleton.mp4"),
        "side_by_side": stem.with_name(stem.name + ".side_by_side.mp4"),
    }


def write_previews(
    result: Any,
    out: str | Path,
    *,
    image: Image.Image,
    fps: float = 8,
    transition_frames: int | None = None,
    paths: dict[str, Path] | None = None,
    audio: AudioTrack | None = None,
    clip_times: Sequence[float] | None = None,
) -> dict[str, Path]:
    """Write the three previews of an animation.

    ``result``: an :class:`engine.method.pipeline.AnimationResult` (its ``poses`` and, when kept, ``frames``;
    otherwise the frames are decoded back from the MP4 at ``out``). ``image``: the character image,
    shown fitted to the output canvas as the pipeline sees it. ``paths``: where to write (default
    :func:`preview_paths` of ``out``). Returns the paths by kind (``poses``, ``skeleton``,
    ``side_by_side``). ``audio``: the output's sound track, also muxed into the side by side.
    ``clip_times``: the clip time of each driven pose (an animation from a clip): ``poses.json`` then
    lists every frame's role and clip time (``"timeline"``, :func:`engine.inputs.timing.frame_timeline`).
    """
    poses: PoseSequence = result.poses
    paths = paths or preview_paths(out)
    extra: dict[str, Any] = {}
    if clip_times is not None:
        from engine.inputs.timing import frame_timeline

        extra["timeline"] = frame_timeline(len(poses), fps, transition_frames or 0, clip_times)
    document = poses_document(poses, fps=fps, transition_frames=transition_frames, **extra)
    write_poses_json(document, paths["poses"])
    write_skeleton_video(poses, paths["skeleton"], fps)
    frames: Iterable[Image.Image] = result.frames if getattr(result, "frames", None) else read_frames(out)
    source = ImageOps.fit(image.convert("RGB"), (poses.width, poses.height), centering=(0.5, 0.5))
    write_side_by_side([source, skeleton_frames(poses), frames], paths["side_by_side"], fps, audio=audio)
    return paths
