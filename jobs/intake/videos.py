"""Driving videos at intake: bytes loaded (upload, data URI or URL through the SSRF guard) under
``POSEANIMATE_MAX_VIDEO_BYTES``, the container sniffed from its magic bytes, then the header and
packets probed without decoding (:func:`check_video`, ``engine.inputs.videoprobe``: resolution, duration,
the frames the job's sampling gives, truncation, a first frame that decodes), all before anything
is stored or queued. Pose extraction (the decoding) happens on an io worker (``worker.extraction``
with ``engine.poses.extract``), which checks the same limits again while decoding.

Codes: ``video_too_large`` (413: bytes or pixels per frame), ``video_too_long`` (413: seconds or
sampled frames), ``video_type_unsupported`` (415), ``video_unreadable`` (422: not a video, damaged,
truncated), ``video_invalid`` (422: e.g. a start past the end), ``video_reference_invalid`` and
``video_data_uri_invalid`` (422), and the SSRF guard's codes for URLs.
"""

from __future__ import annotations

from engine.inputs.audioprobe import check_audio_header
from engine.inputs.errors import declare_codes
from engine.inputs.videoprobe import ExtractionError, VideoInfo, open_video, probe_video, sniff_container
from jobs.intake.limits import ServiceLimits
from jobs.intake.sources import FetchPolicy, VideoRefused, load_reference

__all__ = ["VideoRefused", "check_video", "load_video_bytes", "sniff_video", "video_frame_budget"]

VIDEO_CODES = declare_codes({"video_type_unsupported": 415}, owner="jobs.intake.videos")
"""The probe's codes (``video_too_large``, ...) are ``engine.inputs.videoprobe``'s; the loader's
(``video_reference_invalid``, ``video_data_uri_invalid``) ``jobs.intake.sources``'."""


def video_frame_budget(limits: ServiceLimits, transition_frames: int) -> int:
    """The most target frames a driving video may give a job: the service's frame cap and what fits
    the engine's output-frame limit next to the source and transition frames."""
    return max(1, min(limits.max_frames, limits.max_output_frames - 1 - transition_frames))


def sniff_video(data: bytes) -> str:
    """The container of ``data`` from its first bytes: ``mp4`` (ISO BMFF ``ftyp``, MP4 and MOV),
    ``mov`` (QuickTime without ``ftyp``), ``webm`` (EBML, Matroska too) or ``gif``; else
    ``VideoRefused(video_type_unsupported)`` (415)."""
    container = sniff_container(data[:16])
    if container is not None:
        return container
    raise VideoRefused(
        "the video is not MP4/MOV, WebM or an animated GIF (judged by its first bytes)",
        code="video_type_unsupported",
    )


def load_video_bytes(
    ref: str, upload: bytes | None, *, max_bytes: int, fetch: FetchPolicy, what: str = "driving_video"
) -> bytes:
    """The video's bytes from an upload, a data URI or an http(s) URL (SSRF-guarded), at most
    ``max_bytes``; ``video_too_large`` (413) beyond."""
    data = load_reference(ref, upload, what=what, family="video", max_bytes=max_bytes, fetch=fetch)
    if len(data) > max_bytes:
        raise VideoRefused(f"{what} is larger than {max_bytes} bytes", code="video_too_large")
    if not data:
        raise VideoRefused(f"{what} is empty", code="video_unreadable")
    return data


def check_clip_audio(data: bytes, limits: ServiceLimits, *, what: str = "driving_video") -> None:
    """The header of ``data``'s audio stream, if it has one (a container PyAV cannot open is left
    to the video probe, which refuses it)."""
    try:
        container, _ = open_video(data)
    except ExtractionError:
        return
    try:
        check_audio_header(container, max_duration=limits.max_video_seconds, label=what)
    finally:
        container.close()


def check_video(
    data: bytes,
    limits: ServiceLimits,
    *,
    fps: float | None,
    start: float | None,
    end: float | None,
    max_frames: int,
    what: str = "driving_video",
    audio: bool = False,
) -> VideoInfo:
    """Probe ``data`` (header and packets, no decoding beyond the first frame) against the service's
    video limits and the sampling the job asks for; a refusal is ``VideoRefused`` with the probe's
    code (413 for the size limits, 422 otherwise). ``audio``: the job keeps the clip's sound, so its
    audio stream's header is checked too (``engine.inputs.audioprobe``: ``audio_too_large`` 413,
    ``audio_unreadable`` 422)."""
    if audio:
        check_clip_audio(data, limits, what=what)
    try:
        return probe_video(
            data,
            fps=fps,
            start=start,
            end=end,
            max_frames=max_frames,
            max_pixels=limits.max_video_pixels,
            max_duration=limits.max_video_seconds,
        )
    except ExtractionError as exc:
        message = str(exc).replace("the video", what, 1)
        raise VideoRefused(message, code=exc.code) from None
