"""A driving video's header and packets checked without decoding it: what the API runs at submission
(``jobs.intake.videos.check_video``) and what :func:`engine.poses.extract.extract_poses` runs before decoding.

:func:`probe_video` opens the container (PyAV), checks the declared resolution, duration and the
number of frames the requested sampling gives, then *demuxes* every packet of the video stream
(reads, does not decode: milliseconds for a short clip) to find truncation and damage the header
hides, and decodes packets only until the first frame comes out (so a stream whose codec cannot
decode it is refused too). A torch-free engine leaf: stdlib and PyAV only, so the torch-free API
image can refuse a hostile clip with a 4xx before anything is stored or queued.

Errors are :class:`ExtractionError` subclasses (``ValueError``) with a stable ``code``:
``video_unreadable`` (not a video, no video stream, a still image, damaged, truncated),
``video_too_large`` (resolution), ``video_too_long`` (duration or sampled frames over the cap),
``video_invalid`` (bad arguments, a ``start`` past the end).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.inputs.errors import Refusal, declare_codes

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_MAX_PIXELS",
    "DEMUXERS",
    "LOCAL_ONLY",
    "VIDEO_CODECS",
    "ExtractionError",
    "Sampling",
    "VideoInfo",
    "VideoTooLarge",
    "VideoTooLong",
    "VideoUnreadable",
    "check_rate",
    "open_untrusted",
    "probe_video",
    "sniff_container",
]

# 4K UHD: bigger frames cost seconds each to convert and say nothing more about a pose.
DEFAULT_MAX_PIXELS = 3840 * 2160
# Decoding is cheap next to detection, but a clip is a motion, not a film.
DEFAULT_MAX_DURATION_S = 120.0
# No real clip runs faster than this; more frames per second of timestamps is a hostile file.
MAX_SOURCE_FPS = 240.0
# Codecs with frame reordering hold a few packets before the first frame comes out.
_FIRST_FRAME_PACKETS = 64
# Timestamps are rationals rounded to the container's time base; compare with this slack.
EPS = 1e-6

VideoSource = str | Path | bytes | bytearray | memoryview


EXTRACTION_CODES = declare_codes(
    {
        "video_invalid": 422,
        "video_unreadable": 422,
        "video_too_large": 413,
        "video_too_long": 413,
        "no_person": 422,
    },
    owner="engine.inputs.videoprobe",
)
"""A video refused by the probe or the extractor (``engine.poses.extract``: ``no_person``): the
size limits are 413, the rest 422."""


class ExtractionError(Refusal):
    """The video cannot be turned into poses; ``code`` is stable for clients."""

    code = "video_invalid"


class VideoUnreadable(ExtractionError):
    """Not a video PyAV can decode, or a damaged / truncated one."""

    code = "video_unreadable"


class VideoTooLarge(ExtractionError):
    """The frames exceed the resolution limit."""

    code = "video_too_large"


class VideoTooLong(ExtractionError):
    """The clip is longer than the duration limit or gives more frames than the cap."""

    code = "video_too_long"


@dataclass(frozen=True)
class VideoInfo:
    """What the header and the packets say about a clip."""

    container: str
    """The demuxer the file was opened with (:data:`DEMUXERS`: ``mov``, ``matroska``, ``gif``)."""
    codec: str
    width: int
    height: int
    duration_s: float
    """The video stream's declared duration, or its packets' span when it declares none."""
    source_fps: float
    packets: int
    """Video packets in the file (about one per frame)."""
    frames: int
    """Frames the requested sampling (``fps``, ``start``, ``end``) gives: what extraction yields
    when the detector finds someone in each."""


# The only demuxers an untrusted file is ever opened with, chosen by its first bytes (FFmpeg is never
# left to guess: its probe would pick SDP, HLS, concat, RTP/RTSP or MPEG-TS from text hidden behind
# a WebM or MP4 magic and open network sockets or other files). ISO BMFF (MP4, MOV, ``ftyp``) and
# QuickTime atoms -> ``mov``; EBML (WebM, Matroska) -> ``matroska``; GIF87a/89a -> ``gif``.
DEMUXERS = {"mp4": "mov", "mov": "mov", "webm": "matroska", "gif": "gif"}
# FFmpeg options for every untrusted open: no protocol but local reading for anything a demuxer
# opens on its own (the file itself comes through PyAV's reader for bytes, ``file`` for paths), and
# no demuxer but the chosen one; the MOV demuxer's external data references stay off.
LOCAL_ONLY = {"protocol_whitelist": "file,pipe"}
# Codecs cameras, phones and browsers write; FFmpeg's other few hundred decoders (old, rare, less
# fuzzed) never see untrusted bytes.
VIDEO_CODECS = frozenset({"av1", "gif", "h264", "hevc", "mjpeg", "mpeg4", "prores", "vp8", "vp9"})
_DEMUXER_OPTIONS = {"mov": {"enable_drefs": "0", "use_absolute_path": "0"}}
_EBML = b"\x1a\x45\xdf\xa3"
_MAGIC_BYTES = 12
_STILL_IMAGES = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG", "png"), (b"RIFF", "webp"), (b"BM", "bmp"))


def sniff_container(head: bytes) -> str | None:
    """The container ``head`` (a file's first bytes) claims: ``mp4`` (ISO BMFF ``ftyp``), ``mov``
    (QuickTime atoms without ``ftyp``), ``webm`` (EBML: WebM and Matroska) or ``gif``; ``None``
    for anything else."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"
    if head.startswith(_EBML):
        return "webm"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


def open_untrusted(source: Any, head: bytes, label: str) -> Any:
    """Open ``source`` (a path string or a binary file object whose first bytes are ``head``) with
    the one demuxer its magic names and FFmpeg restricted to local reading (:data:`LOCAL_ONLY`,
    ``format_whitelist`` = that demuxer). A file with no accepted magic, or whose contents are not
    the container its magic claims, is :class:`VideoUnreadable`."""
    import av

    claimed = sniff_container(head)
    if claimed is None:
        still = next((name for magic, name in _STILL_IMAGES if head.startswith(magic)), None)
        if still is not None:
            raise VideoUnreadable(f"{label} is a still image ({still}), not a video")
        raise VideoUnreadable(
            f"{label} is not a video PyAV can read (not MP4/MOV, WebM/Matroska or an animated GIF "
            "by its first bytes)"
        )
    demuxer = DEMUXERS[claimed]
    options = {**LOCAL_ONLY, "format_whitelist": demuxer, **_DEMUXER_OPTIONS.get(demuxer, {})}
    try:
        container = av.open(source, mode="r", format=demuxer, container_options=options)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoUnreadable(f"{label} is not a readable {claimed.upper()} file ({why(exc)})") from None
    if demuxer not in (container.format.name or "").split(","):
        container.close()
        raise VideoUnreadable(f"{label} is not the {claimed.upper()} file its first bytes claim")
    return container


def open_video(video: VideoSource) -> tuple[Any, str]:
    """The PyAV container of ``video`` (a path or the file's bytes) and a label for messages, opened
    by :func:`open_untrusted` (explicit demuxer, local reading only)."""
    if isinstance(video, bytes | bytearray | memoryview):
        if len(video) == 0:
            raise VideoUnreadable("the video is empty (0 bytes)")
        data = bytes(video)
        source: Any = io.BytesIO(data)
        head, label = data[:_MAGIC_BYTES], "the video"
    elif isinstance(video, str | Path):
        path = Path(video)
        if not path.is_file():
            raise VideoUnreadable(f"no such video file: {path}")
        with path.open("rb") as file:
            head = file.read(_MAGIC_BYTES)
        source, label = f"file:{path}", str(path)
    else:
        raise ExtractionError(f"video must be a path or bytes, got {type(video).__name__}")
    container = open_untrusted(source, head, label)
    if not container.streams.video:
        container.close()
        raise VideoUnreadable(f"{label} has no video stream")
    codec = container.streams.video[0].codec_context.codec.canonical_name
    if codec not in VIDEO_CODECS:
        container.close()
        raise VideoUnreadable(
            f"{label} is {codec} video; accepted: {', '.join(sorted(VIDEO_CODECS))} (re-encode it, e.g. as H.264)"
        )
    return container, label


def why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def source_rate(stream: Any) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) <= 1000:
            return float(rate)
    return 0.0


def declared_duration(container: Any, stream: Any) -> float:
    """The video stream's own declared duration: its header's, else its ``DURATION`` tag's (what
    FFmpeg and mkvmerge write per Matroska track), else the container's when the video is its only
    stream; 0 when unknown. A container's duration is its longest stream's (Matroska/WebM declare no
    other): audio longer than the video must not pass for missing frames (issue 21)."""
    if stream.duration and stream.time_base:
        return max(float(stream.duration * stream.time_base), 0.0)
    # Matroska's tag and segment duration are end times on a clock from 0 (FFmpeg writes them so): a
    # video whose first frame is at 0.5 s and lasts 2 s says 2.5 s.
    start = stream_start(stream)
    tagged = _tag_seconds((stream.metadata or {}).get("DURATION"))
    if tagged is not None:
        return max(tagged - start, 0.0)
    if container.duration and len(container.streams) == 1:
        return container_duration(container)
    return 0.0


def stream_start(stream: Any) -> float:
    """The stream's first timestamp in seconds (0 when it declares none)."""
    return float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0


def _tag_seconds(text: object) -> float | None:
    """``HH:MM:SS.fraction`` (a Matroska ``DURATION`` tag) in seconds; None when it is not one."""
    if not isinstance(text, str):
        return None
    parts = text.strip().split(":")
    try:
        if len(parts) != 3:
            return None
        seconds = int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def container_duration(container: Any) -> float:
    """The container's declared duration (its longest stream's, from its first timestamp), 0 when it
    declares none."""
    if not container.duration:
        return 0.0
    whole = container.duration / 1_000_000
    if "matroska" in (container.format.name or "") and container.start_time:
        whole -= container.start_time / 1_000_000  # an end time on a clock from 0
    return max(whole, 0.0)


def expected_frames(start: float, end: float, fps: float) -> int:
    """Sample times ``start + k / fps`` that fall before ``end``."""
    if end <= start:
        return 0
    return max(math.ceil((end - start) * fps - EPS), 0)


def looks_truncated(covered_s: float, duration_s: float) -> bool:
    """Frames that stop well short of the declared duration: the rest of the file is missing."""
    return duration_s > 0 and covered_s < 0.9 * duration_s - 0.5


@dataclass(frozen=True)
class Sampling:
    """What is asked of a clip: sample at ``fps`` (``None``: every source frame) from ``start`` to
    ``end`` seconds, at most ``max_frames`` samples, frames of at most ``max_pixels``, at most
    ``max_duration`` seconds decoded."""

    fps: float | None
    start: float
    end: float | None
    max_frames: int
    max_pixels: int
    max_duration: float


def check_header(
    container: Any, stream: Any, label: str, sampling: Sampling, *, duration: float | None = None
) -> int:
    """Resolution, duration and sampled-frame checks from what the container declares (or the
    given ``duration``); returns the frames the sampling gives (0 when it cannot tell)."""
    fps, start, end = sampling.fps, sampling.start, sampling.end
    max_frames, max_pixels, max_duration = sampling.max_frames, sampling.max_pixels, sampling.max_duration
    width, height = stream.codec_context.width, stream.codec_context.height
    if width and height and width * height > max_pixels:
        raise VideoTooLarge(
            f"{label} is {width}x{height}; at most {max_pixels:,} pixels per frame are allowed"
        )
    duration = declared_duration(container, stream) if duration is None else duration
    if duration > max_duration + EPS and (end is None or end > max_duration):
        raise VideoTooLong(
            f"{label} lasts {duration:.1f} s; at most {max_duration:g} s are decoded (trim it with start/end)"
        )
    expected = 0
    if duration > 0:
        stop = min(end, duration) if end is not None else duration
        rate = fps or source_rate(stream)
        expected = expected_frames(start, stop, rate) if rate else 0
        if not rate and stream.frames:
            expected = stream.frames
        if expected > max_frames:
            raise VideoTooLong(
                f"{label} gives {expected} frames at {rate:g} fps between {start:g} s and {stop:.2f} s; "
                f"at most {max_frames} are allowed (lower fps or trim with start/end)"
            )
    if start >= duration > 0:
        raise ExtractionError(f"start ({start:g} s) is past the end of the video ({duration:.2f} s)")
    return expected


def check_rate(stream: Any, label: str, packets: int, covered_s: float) -> None:
    """Refuse a clip faster than :data:`MAX_SOURCE_FPS`, by its declared rate or by its packets'
    timestamps (``video_invalid``): no camera films a motion at 1,000 fps; such a file only multiplies
    the frames decoded per second of clip."""
    measured = packets / covered_s if covered_s > 0 and packets > 1 else 0.0
    declared = max((float(r) for r in (stream.average_rate, stream.guessed_rate) if r), default=0.0)
    rate = max(measured, declared)
    if rate > MAX_SOURCE_FPS * 1.01:
        raise ExtractionError(
            f"{label} runs at {rate:.0f} frames per second; at most {MAX_SOURCE_FPS:g} are accepted"
        )


@dataclass
class _Scan:
    """What demuxing every packet found: the video's ``packets`` and the seconds they span
    (``covered``: first timestamp to the end of the last), a packet flagged ``corrupt``, and the
    span of every stream's packets together (``all_covered``: what a container's duration, its
    longest stream's, is compared with)."""

    packets: int = 0
    covered: float = 0.0
    corrupt: bool = False
    all_covered: float = 0.0


def _span(spans: dict[int, tuple[float, float]], index: int, packet: Any) -> None:
    if packet.pts is None or not packet.time_base:
        return
    t = float(packet.pts * packet.time_base)
    end = t + float((packet.duration or 0) * packet.time_base)
    first, last = spans.get(index, (t, end))
    spans[index] = (min(first, t), max(last, end))


def _scan(container: Any, stream: Any, label: str, max_packets: int) -> _Scan:
    """Demux every packet of every stream (decoding only the video's first frame)."""
    import av

    codec = stream.codec_context
    scan, decoded, others = _Scan(), False, 0
    spans: dict[int, tuple[float, float]] = {}
    try:
        for packet in container.demux():
            if packet.size == 0:  # the demuxer's flush packet
                continue
            _span(spans, packet.stream.index, packet)
            if packet.stream.index != stream.index:
                others += 1
                if others > 16 * max_packets:
                    raise VideoTooLong(f"{label} holds more than {16 * max_packets} audio or other packets")
                continue
            scan.packets += 1
            if scan.packets > max_packets:
                raise VideoTooLong(f"{label} holds more than {max_packets} frames; it is not a short clip")
            scan.corrupt = scan.corrupt or bool(packet.is_corrupt)
            if not decoded and scan.packets <= _FIRST_FRAME_PACKETS:
                decoded = bool(codec.decode(packet))
        if not decoded:
            decoded = bool(codec.decode(None))  # frames held back by reordering
    except av.FFmpegError as exc:
        raise VideoUnreadable(f"{label} is damaged or truncated ({why(exc)})") from None
    if scan.packets == 0:
        raise VideoUnreadable(f"{label} holds no complete video frame: it is damaged or truncated")
    if not decoded:
        raise VideoUnreadable(f"{label} is damaged: its first frame does not decode")
    if stream.index in spans:
        scan.covered = spans[stream.index][1] - spans[stream.index][0]
    if spans:
        scan.all_covered = max(b for _, b in spans.values()) - min(a for a, _ in spans.values())
    return scan


def probe_video(
    video: VideoSource,
    *,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_frames: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_duration: float = DEFAULT_MAX_DURATION_S,
) -> VideoInfo:
    """Check ``video`` (a path or bytes) for what :func:`engine.poses.extract.extract_poses` would refuse
    before detecting anything, without decoding it: not a video, a still image, damaged or truncated
    (``video_unreadable``), frames over ``max_pixels`` (``video_too_large``), longer than
    ``max_duration`` or more than ``max_frames`` sampled frames at ``fps`` between ``start`` and
    ``end`` (``video_too_long``). ``fps=None`` samples every source frame."""
    sampling = Sampling(fps, start or 0.0, end, max_frames, max_pixels, max_duration)
    container, label = open_video(video)
    try:
        stream = container.streams.video[0]
        check_header(container, stream, label, sampling)
        scan = _scan(container, stream, label, int(MAX_SOURCE_FPS * max_duration))
        packets, covered = scan.packets, scan.covered
        declared = declared_duration(container, stream)
        if scan.corrupt or (stream.frames and packets < stream.frames) or looks_truncated(covered, declared):
            shown = f"{packets} of its {stream.frames} frames" if stream.frames else f"{covered:.2f} s"
            raise VideoUnreadable(f"{label} is truncated or damaged: only {shown} are in the file")
        whole = container_duration(container)
        if looks_truncated(scan.all_covered, whole):  # the longest stream (video or audio) cut short
            raise VideoUnreadable(
                f"{label} is truncated: its packets stop at {scan.all_covered:.2f} s of its declared {whole:.2f} s"
            )
        duration = declared or covered
        check_rate(stream, label, packets, covered)
        frames = check_header(container, stream, label, sampling, duration=duration)
        return VideoInfo(
            container=container.format.name or "",
            codec=stream.codec_context.name or "",
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration_s=duration,
            source_fps=source_rate(stream),
            packets=packets,
            frames=frames if frames else packets,
        )
    finally:
        container.close()
