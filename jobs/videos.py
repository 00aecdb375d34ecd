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

from engine.inputs.errors import InvalidInput
from engine.inputs.videoprobe import ExtractionError, VideoInfo, probe_video
from jobs.images import ImageValidationError, decode_data_uri
from jobs.limits import ServiceLimits
from jobs.ssrf import FetchError, Resolver, fetch_bytes

UPLOADED = "upload:"
_EBML = b"\x1a\x45\xdf\xa3"
TOO_LARGE_CODES = frozenset({"video_too_large", "video_too_long"})
"""Refusals of a video that are size limits: 413; every other video refusal is 422."""


class VideoRefused(InvalidInput):
    """A driving video refused at intake, with its HTTP status."""

    def __init__(self, message: str, *, code: str, status: int = 422) -> None:
        super().__init__(message, code=code)
        self.status = status


def video_frame_budget(limits: ServiceLimits, transition_frames: int) -> int:
    """The most target frames a driving video may give a job: the service's frame cap and what fits
    the engine's output-frame limit next to the source and transition frames."""
    return max(1, min(limits.max_frames, limits.max_output_frames - 1 - transition_frames))


def sniff_video(data: bytes) -> str:
    """The container of ``data`` from its first bytes: ``mp4`` (ISO BMFF ``ftyp``, MP4 and MOV),
    ``mov`` (QuickTime without ``ftyp``), ``webm`` (EBML, Matroska too) or ``gif``; else
    ``VideoRefused(video_type_unsupported, 415)``."""
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mov" if data[8:12] == b"qt  " else "mp4"
    if len(data) >= 8 and data[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"
    if data.startswith(_EBML):
        return "webm"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    raise VideoRefused(
        "the video is not MP4/MOV, WebM or an animated GIF (judged by its first bytes)",
        code="video_type_unsupported",
        status=415,
    )


def load_video_bytes(
    ref: str,
    upload: bytes | None,
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    max_redirects: int,
    resolver: Resolver,
    what: str = "driving_video",
) -> bytes:
    """The video's bytes from an upload, a data URI or an http(s) URL (SSRF-guarded), at most
    ``max_bytes``; ``video_too_large`` (413) beyond."""
    too_large = VideoRefused(f"{what} is larger than {max_bytes} bytes", code="video_too_large", status=413)
    if ref == UPLOADED and upload is not None:
        data = upload
    elif ref.startswith("data:"):
        try:
            data = decode_data_uri(ref, max_bytes=max_bytes, what=what)
        except ImageValidationError as exc:
            if exc.code == "image_too_large":
                raise too_large from exc
            raise VideoRefused(exc.message, code="video_data_uri_invalid") from exc
    elif ref.lower().startswith(("http://", "https://")):
        try:
            data = fetch_bytes(
                ref,
                max_bytes=max_bytes,
                timeout_s=timeout_s,
                allow_private=allow_private,
                max_redirects=max_redirects,
                resolver=resolver,
            )
        except FetchError as exc:
            if exc.code == "image_too_large":
                raise too_large from exc
            raise
    else:
        raise VideoRefused(
            f"{what} must be an uploaded file, an http(s) URL or a data URI", code="video_reference_invalid"
        )
    if len(data) > max_bytes:
        raise too_large
    if not data:
        raise VideoRefused(f"{what} is empty", code="video_unreadable")
    return data


def check_video(
    data: bytes,
    limits: ServiceLimits,
    *,
    fps: float | None,
    start: float | None,
    end: float | None,
    max_frames: int,
    what: str = "driving_video",
) -> VideoInfo:
    """Probe ``data`` (header and packets, no decoding beyond the first frame) against the service's
    video limits and the sampling the job asks for; a refusal is ``VideoRefused`` with the probe's
    code (413 for the size limits, 422 otherwise)."""
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
        raise VideoRefused(
            message, code=exc.code, status=413 if exc.code in TOO_LARGE_CODES else 422
        ) from None
