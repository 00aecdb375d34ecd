"""Clips with sound for the audio tests: the astronaut clip (``tests/support/clips.py``) with an
audio track that is silent except for a short tone burst at a known clip time, and a detector that
finds the burst in a decoded file."""

from __future__ import annotations

from collections.abc import Callable, Collection
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.clips import astronaut_frames

BURST_HZ = 1000.0
BURST_S = 0.06


def burst_samples(duration: float, burst_at: float, rate: int, channels: int = 2) -> np.ndarray:
    """``(channels, n)`` float32: silence with a ``BURST_S`` 1 kHz tone (amplitude 0.6) at ``burst_at``."""
    n = round(duration * rate)
    out = np.zeros((channels, n), dtype=np.float32)
    a, b = round(burst_at * rate), min(n, round((burst_at + BURST_S) * rate))
    t = np.arange(b - a) / rate
    out[:, a:b] = 0.6 * np.sin(2 * np.pi * BURST_HZ * t)
    return out


def clip_with_audio(
    path: Path,
    *,
    frames: int = 16,
    fps: int = 8,
    fmt: str = "mp4",
    video_codec: str = "libx264",
    audio_codec: str | None = "aac",
    rate: int = 48_000,
    channels: int = 2,
    burst_at: float = 1.0,
    audio_duration: float | None = None,
    audio_start: float = 0.0,
    video_start: float = 0.0,
    empty_frames: Collection[int] = (),
) -> Path:
    """The astronaut sliding right (``frames`` frames at ``fps``) with, unless ``audio_codec`` is None,
    a burst track as long as the video (or ``audio_duration``). ``audio_start`` / ``video_start``:
    the streams' first timestamps (seconds; the burst is ``burst_at`` into the audio stream, so at
    clip time ``audio_start - video_start + burst_at``); the frames in ``empty_frames`` show nobody."""
    import av

    images = astronaut_frames(frames)
    for k in empty_frames:  # nobody in these: the grey canvas alone
        images[k] = Image.new("RGB", images[k].size, (120, 120, 120))
    duration = frames / fps if audio_duration is None else audio_duration
    with av.open(str(path), "w", format=fmt) as container:
        vs = container.add_stream(video_codec, rate=fps)
        vs.width, vs.height = images[0].size
        vs.pix_fmt = "yuv420p"
        aus = None
        if audio_codec is not None:
            aus = container.add_stream(audio_codec, rate=rate)
            aus.layout = "mono" if channels == 1 else "stereo"
        pcm = burst_samples(duration, burst_at, rate, channels)
        for k, image in enumerate(images):
            frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
            frame.pts = k + round(video_start * fps)
            container.mux(vs.encode(frame))
        container.mux(vs.encode(None))
        if aus is not None:
            size = aus.codec_context.frame_size or 1024
            for pos in range(0, pcm.shape[1], size):
                frame = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(pcm[:, pos : pos + size]), format="fltp", layout=aus.layout.name
                )
                frame.sample_rate = rate
                frame.pts = pos + round(audio_start * rate)
                frame.time_base = Fraction(1, rate)
                container.mux(aus.encode(frame))  # PyAV converts to the encoder's sample format
            container.mux(aus.encode(None))
    return path


def decoded_audio(path: Path) -> tuple[np.ndarray, int, float] | None:
    """(mono float32 samples, rate, time of the first sample) of ``path``'s first audio stream."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.codec_context.sample_rate)
        chunks, first = [], None
        for frame in container.decode(stream):
            if first is None:
                first = float(frame.time or 0.0)
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
        return np.concatenate(chunks), stream.codec_context.sample_rate, float(first or 0.0)


def burst_time(path: Path, threshold: float = 0.2) -> float | None:
    """Output time (s) at which the burst starts in ``path``'s audio, None if none is heard."""
    decoded = decoded_audio(path)
    if decoded is None:
        return None
    samples, rate, first = decoded
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return None if loud.size == 0 else first + loud[0] / rate


def audio_duration(path: Path) -> float | None:
    decoded = decoded_audio(path)
    return None if decoded is None else decoded[0].size / decoded[1]


def with_audio_packets(src: Path, dst: Path, change: Callable[[int, bytes], bytes | None]) -> Path:
    """``src`` remuxed into Matroska at ``dst`` with its k-th audio packet's bytes replaced by
    ``change(k, payload)`` (dropped when it returns None); the headers and the video are untouched,
    so only decoding the audio finds the damage."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format="matroska") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream_from_template(inp.streams.audio[0])
        k = 0
        for packet in inp.demux():
            if packet.size == 0:
                continue
            if packet.stream.type == "video":
                packet.stream = video
                out.mux(packet)
                continue
            payload = change(k, bytes(packet))
            k += 1
            if payload is not None:
                new = av.Packet(payload)
                new.pts, new.dts, new.time_base = packet.pts, packet.dts, packet.time_base
                new.stream = audio
                out.mux(new)
    return dst


def noise_packets(k: int, payload: bytes) -> bytes:
    """Every audio packet's bytes replaced by noise of its length (a damaged stream)."""
    return np.random.default_rng(k).integers(0, 256, len(payload), dtype=np.uint8).tobytes()


def cut_after(packets: int) -> Callable[[int, bytes], bytes | None]:
    """The first ``packets`` audio packets kept, the next one cut in half, the rest gone: a stream
    truncated mid-packet, as a download cut short leaves it."""

    def change(k: int, payload: bytes) -> bytes | None:
        return payload if k < packets else payload[: len(payload) // 2] if k == packets else None

    return change
