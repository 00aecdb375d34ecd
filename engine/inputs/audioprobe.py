"""A driving video's audio stream checked from its header at submission (issue 21), without decoding.

The output keeps a driving clip's sound (``engine.poses.audio`` decodes it on the io worker); what
the API can refuse cheaply is a stream whose header already says it is out of bounds: more than
:data:`MAX_CHANNELS` channels, a sample rate over :data:`MAX_SAMPLE_RATE`, none of either, a codec
FFmpeg has no decoder for, or a declared duration past the video limit. Those are refused with
``audio_too_large`` (413) or ``audio_unreadable`` (422), and the message says ``audio=false`` drops
the sound instead. A stream whose header passes but whose packets do not decode (truncated,
damaged) is not found here: the io worker keeps what decodes up to the damage (silence after it) or,
when nothing does, drops the sound with a note; the video still animates. A torch-free engine leaf: stdlib and PyAV only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.inputs.errors import Refusal, declare_codes

__all__ = ["MAX_CHANNELS", "MAX_SAMPLE_RATE", "AudioInfo", "AudioRefused", "check_audio_header"]

MAX_CHANNELS = 8
"""7.1 surround; more is not a dance clip's soundtrack."""
MAX_SAMPLE_RATE = 192_000
"""The highest rate studio audio uses."""
_DURATION_SLACK_S = 1.0
"""Audio may run a little past the last frame (encoder padding) without being refused."""

AUDIO_CODES = declare_codes(
    {"audio_unreadable": 422, "audio_too_large": 413}, owner="engine.inputs.audioprobe"
)
"""A driving video's audio stream refused at submission (send ``audio=false`` to drop it instead)."""


class AudioRefused(Refusal):
    """The clip's audio stream is out of bounds; ``code``: ``audio_unreadable`` or ``audio_too_large``."""

    code = "audio_unreadable"


@dataclass(frozen=True)
class AudioInfo:
    codec: str
    channels: int
    sample_rate: int
    duration_s: float
    """Declared duration (0 when the container does not say)."""


def check_audio_header(container: Any, *, max_duration: float, label: str = "the video") -> AudioInfo | None:
    """The first audio stream of an open PyAV ``container`` checked from its header (nothing is
    decoded); ``None`` when it has none. Raises :class:`AudioRefused`."""
    import av

    if not container.streams.audio:
        return None
    stream = container.streams.audio[0]
    hint = "; send audio=false to animate it without its sound"
    ctx = stream.codec_context  # None when FFmpeg knows no codec for the stream's id
    codec = (ctx.name if ctx is not None else "") or ""
    try:
        known = bool(codec) and av.Codec(codec, "r") is not None
    except (av.FFmpegError, ValueError):
        known = False
    if not known or ctx is None:
        raise AudioRefused(f"{label}'s audio codec {codec or '(none)'!r} cannot be decoded{hint}")
    channels, rate = int(ctx.channels or 0), int(ctx.sample_rate or 0)
    if channels < 1 or rate < 1:
        raise AudioRefused(f"{label}'s audio declares no channels or no sample rate{hint}")
    if channels > MAX_CHANNELS:
        raise AudioRefused(
            f"{label}'s audio has {channels} channels; at most {MAX_CHANNELS}{hint}", code="audio_too_large"
        )
    if rate > MAX_SAMPLE_RATE:
        raise AudioRefused(
            f"{label}'s audio is sampled at {rate} Hz; at most {MAX_SAMPLE_RATE}{hint}",
            code="audio_too_large",
        )
    duration = 0.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    if duration > max_duration + _DURATION_SLACK_S:
        raise AudioRefused(
            f"{label}'s audio runs {duration:.1f} s; at most {max_duration:g} s{hint}", code="audio_too_large"
        )
    return AudioInfo(codec=codec, channels=channels, sample_rate=rate, duration_s=duration)
