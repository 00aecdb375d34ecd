"""Output encoding: streaming H.264 MP4 (yuv420p, faststart) and the PNG poster (DESIGN 2.6).

PyAV is imported when a writer opens, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from engine.poses.audio import AudioTrack

__all__ = ["DEFAULT_CRF", "FPS_RANGE", "Mp4Writer", "VideoError", "encode_mp4", "probe_mp4", "save_poster"]

# x264's CRF 18 is visually lossless for most content; the animation is the product, keep it clean.
DEFAULT_CRF = 18
FPS_RANGE = (1, 60)
_CRF_RANGE = (0, 51)
_AUDIO_FRAME = 1024  # AAC's frame size, samples
_AUDIO_BITRATE = 160_000


class VideoError(ValueError):
    """Bad encoding arguments or frames."""


def _fps_fraction(fps: float) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps):
        raise VideoError(f"fps must be a number, got {fps!r}")
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        raise VideoError(f"fps must be between {FPS_RANGE[0]} and {FPS_RANGE[1]}, got {fps}")
    # NTSC-style rates (29.97 = 30000/1001) survive; arbitrary floats get a tidy fraction.
    return Fraction(fps).limit_denominator(1001)


def _even(n: int) -> int:
    return n + (n % 2)


class Mp4Writer:
    """Stream frames into an H.264 MP4 one at a time, so long animations never sit in memory.

    ``with Mp4Writer(path, fps=8) as w: w.write(frame)``. Frames are PIL images of one size (the
    first frame's); odd sizes are padded to even by repeating the last row/column, as yuv420p needs.
    The file is yuv420p with ``movflags=+faststart`` (index first, so players start before the
    download ends), which requires a real file path. If the block raises, the partial file is removed.

    ``audio`` (an :class:`engine.poses.audio.AudioTrack` placed on the output timeline): an AAC
    stream is added, encoded as the frames arrive (interleaved), as long as the video: silence where
    the track has none, cut at the last frame's end.
    """

    def __init__(
        self, path: str | Path, fps: float = 8, *, crf: int = DEFAULT_CRF, audio: AudioTrack | None = None
    ) -> None:
        self.path = Path(path)
        self._rate = _fps_fraction(fps)
        if isinstance(crf, bool) or not isinstance(crf, int) or not _CRF_RANGE[0] <= crf <= _CRF_RANGE[1]:
            raise VideoError(
                f"crf must be an integer between {_CRF_RANGE[0]} and {_CRF_RANGE[1]}, got {crf!r}"
            )
        self.crf = crf
        self.frames_written = 0
        self._size: tuple[int, int] | None = None
        self._container: Any = None
        self._stream: Any = None
        self._closed = False
        self.audio = audio
        self._audio_stream: Any = None
        self._audio_pos = 0  # samples encoded

    @property
    def fps(self) -> Fraction:
        return self._rate

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open(self, width: int, height: int) -> None:
        import av

        self._container = av.open(str(self.path), mode="w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=self._rate)
        stream.width, stream.height = _even(width), _even(height)
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(self.crf)}
        self._stream = stream
        if self.audio is not None:
            audio = self._container.add_stream("aac", rate=self.audio.sample_rate)
            audio.layout = "mono" if self.audio.channels == 1 else "stereo"
            audio.bit_rate = _AUDIO_BITRATE
            self._audio_stream = audio

    def _encode_audio_until(self, seconds: float, *, final: bool = False) -> None:
        """Encode the audio track up to output time ``seconds`` (whole AAC frames unless ``final``)."""
        import av

        track = self.audio
        if track is None or self._audio_stream is None:
            return
        target = round(seconds * track.sample_rate)
        layout = "mono" if track.channels == 1 else "stereo"
        while self._audio_pos < target:
            n = min(_AUDIO_FRAME, target - self._audio_pos)
            if n < _AUDIO_FRAME and not final:
                break
            rate = track.sample_rate
            chunk = track.span(self._audio_pos / rate, (self._audio_pos + n) / rate)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = self._audio_pos
            frame.time_base = Fraction(1, rate)
            for packet in self._audio_stream.encode(frame):
                self._container.mux(packet)
            self._audio_pos += n
        if final:
            for packet in self._audio_stream.encode(None):
                self._container.mux(packet)

    def write(self, frame: Image.Image) -> None:
        """Encode one frame (any PIL mode; converted to RGB)."""
        import av

        if self._closed:
            raise VideoError("writer is closed")
        if not isinstance(frame, Image.Image):
            raise VideoError(f"frames must be PIL images, got {type(frame).__name__}")
        if self._size is None:
            self._size = frame.size
            self._open(*frame.size)
        elif frame.size != self._size:
            raise VideoError(
                f"frame {self.frames_written} is {frame.size[0]}x{frame.size[1]}, "
                f"expected {self._size[0]}x{self._size[1]}"
            )
        rgb = np.asarray(frame.convert("RGB"))  # (H, W, 3) uint8
        width, height = self._size
        if (width, height) != (_even(width), _even(height)):
            rgb = np.pad(rgb, ((0, _even(height) - height), (0, _even(width) - width), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self._rate
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames_written += 1
        self._encode_audio_until(self.frames_written / self._rate)

    def close(self) -> Path:
        """Flush the encoder and finish the file (the faststart pass rewrites it here)."""
        if self._closed:
            return self.path
        self._closed = True
        if self._container is None:
            raise VideoError("no frames were written")
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._encode_audio_until(self.frames_written / self._rate, final=True)
        finally:
            self._container.close()
        return self.path

    def abort(self) -> None:
        """Stop without finishing the file and remove what was written."""
        self._closed = True
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
        self.path.unlink(missing_ok=True)


def encode_mp4(
    frames: Iterable[Image.Image],
    path: str | Path,
    fps: float = 8,
    *,
    crf: int = DEFAULT_CRF,
    audio: AudioTrack | None = None,
) -> Path:
    """Encode ``frames`` (consumed one at a time) to an H.264 MP4 at ``path`` (with ``audio`` as AAC,
    see :class:`Mp4Writer`); returns the path."""
    with Mp4Writer(path, fps, crf=crf, audio=audio) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path


def save_poster(frame: Image.Image, path: str | Path) -> Path:
    """Save ``frame`` as an RGB PNG poster; returns the path."""
    if not isinstance(frame, Image.Image):
        raise VideoError(f"poster must be a PIL image, got {type(frame).__name__}")
    path = Path(path)
    frame.convert("RGB").save(path, format="PNG", optimize=True)
    return path


def probe_mp4(path: str | Path) -> dict[str, Any]:
    """Describe an MP4's first video stream.

    Returns ``frames`` (decoded count), ``width``, ``height`` (pixels), ``fps`` (float, average
    rate), ``codec`` (e.g. ``"h264"``), ``pix_fmt`` (e.g. ``"yuv420p"``) and ``faststart`` (the
    ``moov`` index precedes the ``mdat`` payload).
    """
    import av

    path = Path(path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        info = {
            "frames": frames,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "fps": float(stream.average_rate) if stream.average_rate else 0.0,
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
        }
    info["faststart"] = _moov_before_mdat(path)
    return info


def _moov_before_mdat(path: Path) -> bool:
    """Walk the top-level MP4 boxes: True when ``moov`` comes before ``mdat``."""
    with path.open("rb") as f:
        size = f.seek(0, 2)
        offset = 0
        while offset + 8 <= size:
            f.seek(offset)
            header = f.read(16)
            box_size = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if box_size == 1:  # 64-bit size follows the type
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:  # box runs to the end of the file
                break
            if box_size < 8:
                break
            offset += box_size
    return False
