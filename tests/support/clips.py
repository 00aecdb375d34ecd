"""Driving clips made in the test from the real astronaut photo (``examples/astronaut.jpg``): the
photo scaled to ``side`` px, sliding right ``step`` px per frame on a grey canvas. MediaPipe finds
her in every frame (``tests/engine/test_extract.py`` pins how closely it follows the motion)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def astronaut_frames(
    count: int = 8, *, side: int = 192, canvas=(320, 256), step: int = 6
) -> list[Image.Image]:
    photo = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")
    small = photo.resize((side, side), Image.Resampling.LANCZOS)
    frames = []
    for k in range(count):
        frame = Image.new("RGB", canvas, (120, 120, 120))
        frame.paste(small, (16 + step * k, canvas[1] - side))
        frames.append(frame)
    return frames


def astronaut_mp4(count: int = 8, fps: int = 8, **kwargs) -> bytes:
    """An H.264 MP4 of :func:`astronaut_frames` (``count`` frames at ``fps``)."""
    from engine.poses.video import encode_mp4

    with tempfile.TemporaryDirectory() as tmp:
        path = encode_mp4(astronaut_frames(count, **kwargs), Path(tmp) / "clip.mp4", fps=fps)
        return path.read_bytes()


def blank_mp4(width: int, height: int, frames: int = 1, rate: int = 8, pts: list[int] | None = None) -> bytes:
    """An all-black H.264 MP4 (ultrafast: a 4K frame encodes in a fraction of a second) of
    ``frames`` frames, or one frame per timestamp of ``pts`` (in 1/``rate`` s)."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for p in range(frames) if pts is None else pts:
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts = p
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


def encode_clip(
    frames: list[Image.Image], path: Path, fps: int = 24, fmt: str = "mp4", codec: str = "libx264"
) -> Path:
    """``frames`` as a video file: MP4 through the engine's encoder, any other container (``webm``,
    ``mov``) with ``codec``, one frame per 1/``fps`` s."""
    import av

    if fmt == "mp4":
        from engine.poses.video import encode_mp4

        return encode_mp4(frames, path, fps=fps)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        for k, image in enumerate(frames):
            frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def astronaut_webm(count: int = 8, fps: int = 8, **kwargs) -> bytes:
    """A WebM/VP9 of :func:`astronaut_frames`."""
    with tempfile.TemporaryDirectory() as tmp:
        frames = astronaut_frames(count, **kwargs)
        return encode_clip(frames, Path(tmp) / "clip.webm", fps, "webm", "libvpx-vp9").read_bytes()


def astronaut_gif(count: int = 8, fps: int = 8, **kwargs) -> bytes:
    """An animated GIF of :func:`astronaut_frames`."""
    import io

    frames = astronaut_frames(count, **kwargs)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps))
    return buf.getvalue()
