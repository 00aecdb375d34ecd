"""The driving clip's sound: decode a segment, place it on the output timeline, store it (issue 21).

A driven output frame shows the clip at the instant it was sampled at (``ExtractionResult.times``);
the output starts with a lead-in (the source frame and ``transition_frames`` transition frames) the
clip never had. :func:`read_audio` decodes the clip's first audio stream over the same segment
(``start``/``end``, seconds from the first video frame, as the pose sampler counts them) into planar
float32 PCM; :func:`place_audio` puts it on the output timeline so that the sound the clip had at the
first driven frame's sampling time plays when that frame is shown. The default lead-in is silence
(``lead_in="silence"``); ``lead_in="clip"`` fills it with the clip's sound from just before the segment
where the clip has any (the rest stays silent). ``Mp4Writer(..., audio=track)`` encodes it as AAC,
interleaved with the video, padded with silence or cut to the video's length.

Bounded like the video: at most ``max_channels`` channels, ``max_sample_rate`` Hz and ``max_duration``
seconds are decoded; a stream that breaks those or whose first packets do not decode raises
:class:`AudioError` (a ``ValueError`` with a stable ``code``). A stream that stops decoding later (cut
mid-packet, damaged further on) keeps the samples before the damage: ``AudioTrack.damaged_at`` says
where, ``AudioTrack.note`` says it for the job view, and the output plays silence from there. PyAV and numpy only (no torch); PyAV imported on use.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.inputs.audioprobe import MAX_CHANNELS, MAX_SAMPLE_RATE

__all__ = [
    "AUDIO_RATE",
    "AudioError",
    "AudioTrack",
    "LeadIn",
    "audio_from_wav",
    "audio_to_wav",
    "clip_audio",
    "place_audio",
    "read_audio",
]

AUDIO_RATE = 48_000
"""Output sample rate (AAC's usual rate; 44.1 kHz sources keep theirs)."""
LeadIn = Literal["silence", "clip"]


class AudioError(ValueError):
    """The clip's audio cannot be used; ``code``: ``audio_unreadable`` or ``audio_too_large``."""

    def __init__(self, message: str, code: str = "audio_unreadable") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AudioTrack:
    """Planar float32 PCM (``samples``: ``(channels, n)``, in [-1, 1]) at ``sample_rate``, that starts
    playing ``offset`` seconds into the output (silence before it). ``clip_start``: the clip time of
    ``samples[:, 0]`` (seconds from the clip's first video frame)."""

    samples: np.ndarray
    sample_rate: int
    offset: float = 0.0
    clip_start: float = 0.0
    damaged_at: float | None = None
    """The clip time at which the stream stopped decoding (truncated or damaged there): the samples
    end there and the output plays silence after it; None for a sound stream."""

    @property
    def note(self) -> str | None:
        """What the job view and the CLI say about a damaged stream (None when it decoded whole)."""
        if self.damaged_at is None:
            return None
        return f"audio damaged after {self.damaged_at:.2f} s of the clip; silence from there"

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    def span(self, start_s: float, stop_s: float) -> np.ndarray:
        """Samples of output time ``[start_s, stop_s)`` (silence where the track has none), ``(c, n)``."""
        a = round(start_s * self.sample_rate)
        b = round(stop_s * self.sample_rate)
        out = np.zeros((self.channels, max(0, b - a)), dtype=np.float32)
        first = round(self.offset * self.sample_rate)
        lo, hi = max(a, first), min(b, first + self.samples.shape[1])
        if hi > lo:
            out[:, lo - a : hi - a] = self.samples[:, lo - first : hi - first]
        return out


def _open(video: str | Path | bytes | bytearray | memoryview) -> Any:
    import av

    if isinstance(video, bytes | bytearray | memoryview):
        return av.open(io.BytesIO(bytes(video)), mode="r")
    return av.open(str(video), mode="r")


def read_audio(
    video: str | Path | bytes | bytearray | memoryview,
    *,
    start: float | None = None,
    end: float | None = None,
    max_duration: float = 120.0,
    max_channels: int = MAX_CHANNELS,
    max_sample_rate: int = MAX_SAMPLE_RATE,
    pre_roll: float = 0.0,
) -> AudioTrack | None:
    """The clip's first audio stream over ``[start - pre_roll, end)`` (clip seconds from the first
    video frame), resampled to float32 mono or stereo at 48 kHz (44.1 kHz kept); ``None`` when the clip
    has no audio stream. ``clip_start`` of the result is where its first sample is on the clip's clock
    (``start - pre_roll``, at least 0). Raises :class:`AudioError` for a stream over the limits or one
    that does not decode."""
    import av

    start = float(start or 0.0)
    want_from = max(0.0, start - max(0.0, pre_roll))
    try:
        container = _open(video)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"the clip cannot be opened: {exc}") from exc
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None:  # a codec id FFmpeg has no codec for
            raise AudioError("the audio stream's codec is unknown to FFmpeg")
        channels = int(ctx.channels or 0)
        rate = int(ctx.sample_rate or 0)
        if channels < 1 or rate < 1:
            raise AudioError("the audio stream declares no channels or sample rate")
        if channels > max_channels:
            raise AudioError(f"the audio has {channels} channels; at most {max_channels}", "audio_too_large")
        if rate > max_sample_rate:
            raise AudioError(
                f"the audio is sampled at {rate} Hz; at most {max_sample_rate}", "audio_too_large"
            )
        t0, video_s = _video_clock(container)
        out_rate = rate if rate == 44_100 else AUDIO_RATE
        layout = "mono" if channels == 1 else "stereo"
        # Sound past the video's last frame is never played: not decoded (music longer than the dance).
        limit = min(end if end is not None else (video_s or max_duration), max_duration)
        chunks, first_t, damaged_at = _decode(container, stream, t0, limit, out_rate, layout)
    if first_t is None or not chunks:
        raise AudioError("the audio stream holds no decodable samples")
    samples = np.concatenate(chunks, axis=1)
    n_channels = 1 if layout == "mono" else 2
    samples = samples.reshape(n_channels, -1)
    # Sample i plays at clip time first_t + i / out_rate; keep [want_from, limit).
    lo = round((want_from - first_t) * out_rate)
    hi = round((limit - first_t) * out_rate)
    pad = max(0, -lo)  # the stream starts after want_from: silence up to it
    samples = samples[:, max(0, lo) : max(0, hi)]
    if pad:
        samples = np.concatenate([np.zeros((n_channels, pad), dtype=np.float32), samples], axis=1)
    track = AudioTrack(np.ascontiguousarray(np.clip(samples, -1.0, 1.0)), out_rate, 0.0, want_from)
    return replace(track, damaged_at=damaged_at) if damaged_at is not None and damaged_at < limit else track


def _video_clock(container: Any) -> tuple[float, float]:
    """(the clip time 0 on the stream clock: the first video frame's, as the pose sampler counts;
    the video's own declared duration, 0 when unknown)."""
    from engine.inputs.videoprobe import declared_duration, stream_start

    if not container.streams.video:
        return 0.0, 0.0
    video = container.streams.video[0]
    return stream_start(video), declared_duration(container, video)


def _decode(
    container: Any, stream: Any, t0: float, limit: float, out_rate: int, layout: str
) -> tuple[list[np.ndarray], float | None, float | None]:
    """(planar float32 chunks, the clip time of their first sample, the clip time where the stream
    stopped decoding or None): packets decoded until ``limit``. A packet that does not decode after
    some did (a stream truncated mid-packet, damage further on) ends the decoding there; the samples
    before it are kept. One before any sample decoded is an :class:`AudioError`."""
    import av

    resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_rate)
    codec = stream.codec_context
    chunks: list[np.ndarray] = []
    first_t: float | None = None
    total = 0

    def take(frames: Any) -> None:
        nonlocal first_t, total
        for frame in frames:
            if first_t is None:
                first_t = (float(frame.time) - t0) if frame.time is not None else 0.0
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().astype(np.float32, copy=False))
                total += chunks[-1].shape[1]

    damaged_at: float | None = None
    try:
        for packet in container.demux(stream):
            try:
                take(codec.decode(packet if packet.size else None))
            except (av.FFmpegError, ValueError) as exc:
                if first_t is None:
                    raise AudioError(f"the audio stream does not decode: {exc}") from exc
                damaged_at = first_t + total / out_rate
                break
            if first_t is not None and first_t + total / out_rate > limit + 0.1:
                return chunks, first_t, None
        chunks.extend(out.to_ndarray().astype(np.float32, copy=False) for out in resampler.resample(None))
    except (av.FFmpegError, ValueError, MemoryError) as exc:
        raise AudioError(f"the audio stream does not decode: {exc}") from exc
    return chunks, first_t, damaged_at


def place_audio(
    track: AudioTrack,
    *,
    first_driven_clip_time: float,
    first_driven_frame: int,
    fps: float,
    lead_in: LeadIn = "silence",
) -> AudioTrack:
    """``track`` on the output timeline: the sound at clip time ``first_driven_clip_time`` plays at
    output time ``first_driven_frame / fps``, when the first driven frame is shown. ``lead_in="silence"``
    cuts whatever the track has before that instant (the lead-in is silent); ``"clip"`` keeps it (the
    track was read with a pre-roll)."""
    shown_at = first_driven_frame / fps
    before = first_driven_clip_time - track.clip_start  # track seconds before the first driven instant
    keep_before = 0.0 if lead_in == "silence" else shown_at
    drop = max(0, round((before - keep_before) * track.sample_rate))
    kept_before = before - drop / track.sample_rate
    return replace(
        track,
        samples=track.samples[:, drop:],
        clip_start=track.clip_start + drop / track.sample_rate,
        offset=shown_at - kept_before,
    )


def audio_to_wav(track: AudioTrack) -> bytes:
    """16-bit PCM WAV of ``track`` from output time 0 (its ``offset`` as leading silence): how the io
    worker hands the placed sound track to the GPU job."""
    lead = np.zeros((track.channels, max(0, round(track.offset * track.sample_rate))), dtype=np.float32)
    pcm = (np.clip(np.concatenate([lead, track.samples], axis=1), -1.0, 1.0) * 32767.0).round().astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(track.channels)
        w.setsampwidth(2)
        w.setframerate(track.sample_rate)
        w.writeframes(pcm.T.tobytes())
    return out.getvalue()


def audio_from_wav(data: bytes, *, clip_start: float = 0.0) -> AudioTrack:
    """The inverse of :func:`audio_to_wav` (16-bit PCM WAV only): a track that starts at output time 0."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            if width != 2 or not 1 <= channels <= MAX_CHANNELS or not 1 <= rate <= MAX_SAMPLE_RATE:
                raise AudioError("unsupported WAV (16-bit PCM, at most 8 channels)")
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"not a WAV file: {exc}") from exc
    pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels).T.astype(np.float32) / 32767.0
    return AudioTrack(np.ascontiguousarray(pcm), rate, 0.0, clip_start)


def clip_audio(
    video: str | Path | bytes | bytearray | memoryview,
    *,
    clip_times: Sequence[float],
    lead_in_frames: int,
    fps: float,
    end: float | None = None,
    lead_in: LeadIn = "silence",
    max_duration: float = 120.0,
) -> AudioTrack | None:
    """The output's sound track for an animation driven by ``video``: the clip's audio from the first
    driven pose's clip time (``clip_times[0]``) to ``end``, placed so that it plays from output frame
    ``lead_in_frames`` (the source and transition frames before it; :func:`place_audio`). ``None``
    when the clip has no audio stream; :class:`AudioError` when it has one that cannot be used."""
    if not clip_times:
        return None
    first = float(clip_times[0])
    pre_roll = lead_in_frames / fps if lead_in == "clip" else 0.0
    track = read_audio(video, start=first, end=end, max_duration=max_duration, pre_roll=pre_roll)
    if track is None:
        return None
    return place_audio(
        track, first_driven_clip_time=first, first_driven_frame=lead_in_frames, fps=fps, lead_in=lead_in
    )
