"""The driving clip's sound (engine.poses.audio) and its AAC track in the output MP4 (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.poses.audio import AudioError, audio_from_wav, audio_to_wav, place_audio, read_audio
from engine.poses.video import encode_mp4, probe_mp4
from tests.support.audio import audio_duration, burst_time, clip_with_audio

FPS = 8
PERIOD = 1 / FPS

# (container, video codec, audio codec): PyAV's encoders here (the native Vorbis encoder is
# experimental and refuses to open, so Vorbis is not made here).
CLIPS = [
    ("mp4", "libx264", "aac"),
    ("mp4", "libx264", "libmp3lame"),
    ("mov", "libx264", "aac"),
    ("mov", "libx264", "pcm_s16le"),
    ("webm", "libvpx-vp9", "libopus"),
    ("matroska", "libx264", "pcm_s16le"),
    ("matroska", "libx264", "libmp3lame"),
]


def _frames(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (64, 64), (10 * k % 255, 80, 120)) for k in range(n)]


@pytest.mark.parametrize(("fmt", "vcodec", "acodec"), CLIPS)
@pytest.mark.parametrize("start", [None, 0.5])
def test_burst_plays_with_the_driven_frame_sampled_at_its_clip_time(tmp_path, fmt, vcodec, acodec, start):
    clip = clip_with_audio(tmp_path / f"clip.{fmt}", fmt=fmt, video_codec=vcodec, audio_codec=acodec)
    track = read_audio(clip, start=start)
    assert track is not None
    lead_in = 1 + 4  # source + transition frames
    placed = place_audio(track, first_driven_clip_time=start or 0.0, first_driven_frame=lead_in, fps=FPS)
    driven = round((2.0 - (start or 0.0)) * FPS)
    out = encode_mp4(_frames(lead_in + driven), tmp_path / "out.mp4", FPS, audio=placed)
    # The driven frame k shows clip time start + k / fps and the burst is at clip time 1.0.
    k = round((1.0 - (start or 0.0)) * FPS)
    expected = (lead_in + k) / FPS
    heard = burst_time(out)
    assert heard is not None and abs(heard - expected) < PERIOD, (heard, expected)
    # As long as the video, and the lead-in is silent.
    assert abs(audio_duration(out) - (lead_in + driven) / FPS) < PERIOD
    assert probe_mp4(out)["frames"] == lead_in + driven


def test_lead_in_from_the_clip_keeps_the_sync(tmp_path):
    clip = clip_with_audio(tmp_path / "clip.mp4", burst_at=0.3)
    # Segment from 1.0 s; a 5-frame lead-in (0.625 s) is filled with the clip's sound from 0.375 s.
    track = read_audio(clip, start=1.0, pre_roll=5 / FPS)
    placed = place_audio(track, first_driven_clip_time=1.0, first_driven_frame=5, fps=FPS, lead_in="clip")
    out = encode_mp4(_frames(5 + 8), tmp_path / "out.mp4", FPS, audio=placed)
    assert burst_time(out) is None  # 0.3 s is before the pre-roll: not heard
    clip2 = clip_with_audio(tmp_path / "clip2.mp4", burst_at=0.75)
    track = read_audio(clip2, start=1.0, pre_roll=5 / FPS)
    placed = place_audio(track, first_driven_clip_time=1.0, first_driven_frame=5, fps=FPS, lead_in="clip")
    out = encode_mp4(_frames(5 + 8), tmp_path / "out2.mp4", FPS, audio=placed)
    heard = burst_time(out)  # 0.25 s before the first driven frame (output 0.625 s)
    assert heard is not None and abs(heard - (5 / FPS - 0.25)) < PERIOD
    silent = place_audio(
        read_audio(clip2, start=1.0), first_driven_clip_time=1.0, first_driven_frame=5, fps=FPS
    )
    out = encode_mp4(_frames(5 + 8), tmp_path / "out3.mp4", FPS, audio=silent)
    assert burst_time(out) is None


def test_no_audio_stream_gives_none_and_a_video_only_mp4(tmp_path):
    clip = clip_with_audio(tmp_path / "clip.mp4", audio_codec=None)
    assert read_audio(clip) is None
    out = encode_mp4(_frames(4), tmp_path / "out.mp4", FPS)
    assert audio_duration(out) is None


def test_mono_44k_is_kept_mono_at_its_rate(tmp_path):
    clip = clip_with_audio(
        tmp_path / "clip.mkv", fmt="matroska", audio_codec="pcm_s16le", rate=44_100, channels=1
    )
    track = read_audio(clip)
    assert track.sample_rate == 44_100 and track.channels == 1
    assert abs(track.duration - 2.0) < 0.01


def test_limits_refuse_before_decoding(tmp_path):
    clip = clip_with_audio(tmp_path / "clip.mkv", fmt="matroska", audio_codec="pcm_s16le", rate=48_000)
    with pytest.raises(AudioError) as err:
        read_audio(clip, max_sample_rate=44_100)
    assert err.value.code == "audio_too_large"
    with pytest.raises(AudioError) as err:
        read_audio(clip, max_channels=1)
    assert err.value.code == "audio_too_large"


def test_duration_bound_stops_decoding(tmp_path):
    clip = clip_with_audio(tmp_path / "clip.mkv", fmt="matroska", audio_codec="pcm_s16le")
    track = read_audio(clip, max_duration=0.5)
    assert track.duration <= 0.5 + 1e-3


def test_garbage_is_an_audio_error():
    with pytest.raises(AudioError):
        read_audio(b"\x00" * 1000)


def test_a_codec_ffmpeg_does_not_know_is_an_audio_error_not_a_crash(tmp_path):
    """The stream's codec id renamed in place (Matroska ``A_PCM/INT/LIT``): PyAV gives the stream no
    codec context; that is an :class:`AudioError` (the job's note), not an AttributeError."""
    clip = clip_with_audio(tmp_path / "clip.mkv", fmt="matroska", audio_codec="pcm_s16le").read_bytes()
    with pytest.raises(AudioError) as err:
        read_audio(clip.replace(b"A_PCM/INT/LIT", b"A_ZZZ/INT/LIT", 1))
    assert err.value.code == "audio_unreadable" and "unknown" in str(err.value)


def test_wav_round_trip():
    samples = (np.linspace(-1, 1, 2 * 4800, dtype=np.float32).reshape(2, -1)) * 0.5
    from engine.poses.audio import AudioTrack

    track = AudioTrack(samples, 48_000, 0.0, 1.5)
    back = audio_from_wav(audio_to_wav(track), clip_start=1.5)
    assert back.sample_rate == 48_000 and back.channels == 2 and back.clip_start == 1.5
    assert np.max(np.abs(back.samples - samples)) < 1e-4
    with pytest.raises(AudioError):
        audio_from_wav(b"RIFF1234")


def test_frame_timeline_roles_times_and_clip_times():
    from engine.inputs.timing import frame_timeline

    timeline = frame_timeline(7, 8, 2, [0.5, 0.625, 0.875, 1.0])
    assert [f["role"] for f in timeline] == ["source", "transition", "transition"] + ["driven"] * 4
    assert [f["time"] for f in timeline] == [i / 8 for i in range(7)]
    assert [f.get("clip_time") for f in timeline] == [None, None, None, 0.5, 0.625, 0.875, 1.0]
    assert all("clip_time" not in f for f in frame_timeline(5, 8, 1))


def test_clip_audio_places_the_first_driven_clip_time_at_the_first_driven_frame(tmp_path):
    from engine.poses.audio import clip_audio

    clip = clip_with_audio(tmp_path / "clip.mp4", burst_at=1.0)
    # A frame with nobody at 0.5 s was dropped: the first driven pose is at 0.625 s.
    track = clip_audio(clip, clip_times=[0.625, 0.75], lead_in_frames=3, fps=FPS)
    assert track.offset == pytest.approx(3 / FPS) and track.clip_start == pytest.approx(0.625)
    assert clip_audio(clip, clip_times=[], lead_in_frames=3, fps=FPS) is None


def test_a_long_clip_stays_in_sync_to_the_end(tmp_path):
    """20 s at 8 fps, a burst 0.25 s before the end: heard within a frame period of its frame."""
    clip = clip_with_audio(tmp_path / "long.mp4", frames=160, fps=FPS, burst_at=19.75)
    lead_in = 5
    placed = place_audio(read_audio(clip), first_driven_clip_time=0.0, first_driven_frame=lead_in, fps=FPS)
    out = encode_mp4(_frames(lead_in + 160), tmp_path / "out.mp4", FPS, audio=placed)
    expected = (lead_in + round(19.75 * FPS)) / FPS
    heard = burst_time(out)
    assert heard is not None and abs(heard - expected) < PERIOD / 2, (heard, expected)
    assert probe_mp4(out)["fps"] == FPS


@pytest.mark.parametrize(
    ("fmt", "vcodec", "acodec"),
    [
        ("matroska", "libx264", "pcm_s16le"),
        ("webm", "libvpx-vp9", "libopus"),
        ("mp4", "libx264", "aac"),
        ("mov", "libx264", "aac"),
    ],
)
def test_audio_twice_as_long_as_the_video_is_probed_by_the_video_and_trimmed_to_it(
    tmp_path, fmt, vcodec, acodec
):
    """Matroska declares one duration, its longest stream's: music running 4 s over a 2 s dance was
    refused as a truncated video. The probe now counts the video's own frames, and the output's
    sound stops with its last frame."""
    from engine.inputs.videoprobe import probe_video

    clip = clip_with_audio(
        tmp_path / f"clip.{fmt}", fmt=fmt, video_codec=vcodec, audio_codec=acodec, audio_duration=4.0
    )
    info = probe_video(clip, fps=FPS, max_frames=20)
    assert info.frames == 16 and info.duration_s == pytest.approx(2.0, abs=0.01)
    lead_in = 5
    track = read_audio(clip, start=0.5)
    assert track.duration == pytest.approx(1.5, abs=0.03)  # the sound after the last frame is not read
    placed = place_audio(track, first_driven_clip_time=0.5, first_driven_frame=lead_in, fps=FPS)
    out = encode_mp4(_frames(lead_in + 12), tmp_path / "out.mp4", FPS, audio=placed)
    assert audio_duration(out) == pytest.approx((lead_in + 12) / FPS, abs=PERIOD / 2)
    heard = burst_time(out)
    assert heard is not None and abs(heard - (lead_in + 4) / FPS) < PERIOD, heard


def test_a_truncated_matroska_with_long_audio_is_still_refused(tmp_path):
    """The longest stream's packets stopping well short of the container's duration is truncation."""
    from engine.inputs.videoprobe import VideoUnreadable, probe_video

    data = clip_with_audio(
        tmp_path / "clip.mkv", fmt="matroska", audio_codec="pcm_s16le", audio_duration=4.0
    ).read_bytes()
    for fraction in (0.3, 0.5):
        with pytest.raises(VideoUnreadable, match="truncated"):
            probe_video(data[: int(len(data) * fraction)], fps=FPS, max_frames=20)


@pytest.mark.parametrize("start", [None, 0.25])
def test_audio_cut_mid_packet_keeps_what_decodes_and_says_where_it_stops(tmp_path, start):
    """An AAC stream cut in the middle of its 41st packet (about 0.85 s): the decoder fails there.
    The sound before the cut plays in sync (the burst at 0.5 s), silence follows to the video's end,
    and the track says where the damage is (was: an AudioError, the whole sound dropped)."""
    from engine.poses.audio import clip_audio
    from tests.support.audio import cut_after, with_audio_packets

    clip = clip_with_audio(tmp_path / "clip.mkv", fmt="matroska", audio_codec="aac", burst_at=0.5)
    damaged = with_audio_packets(clip, tmp_path / "cut.mkv", cut_after(40))
    first = start or 0.0
    times = [first + k / FPS for k in range(round((2.0 - first) * FPS))]
    lead_in = 3
    track = clip_audio(damaged, clip_times=times, lead_in_frames=lead_in, fps=FPS)
    assert track is not None and track.damaged_at == pytest.approx(40 * 1024 / 48_000, abs=0.05)
    assert track.note is not None and "audio damaged after 0.8" in track.note and "silence" in track.note
    out = encode_mp4(_frames(lead_in + len(times)), tmp_path / "out.mp4", FPS, audio=track)
    heard = burst_time(out)
    expected = (lead_in + round((0.5 - first) * FPS)) / FPS
    assert heard is not None and abs(heard - expected) < PERIOD, (heard, expected)
    assert audio_duration(out) == pytest.approx((lead_in + len(times)) / FPS, abs=PERIOD / 2)
    assert read_audio(clip).damaged_at is None and read_audio(clip).note is None


@pytest.mark.parametrize(("fmt", "vcodec", "acodec"), [CLIPS[0], CLIPS[3], CLIPS[4], CLIPS[5]])
@pytest.mark.parametrize(("audio_start", "video_start"), [(0.5, 0.0), (0.0, 0.5), (0.75, 0.25)])
def test_streams_that_start_apart_keep_the_burst_with_its_frame(
    tmp_path, fmt, vcodec, acodec, audio_start, video_start
):
    """Audio that starts after the video (a positive start time; an MP4 edit list), or a video that
    starts after its audio: the pose sampler counts from the first video frame, and so does the
    sound. The burst, ``audio_start - video_start + 0.5`` s after the first frame, plays with the
    driven frame sampled there."""
    from engine.poses.audio import clip_audio
    from engine.poses.extract import extract_poses
    from tests.engine.test_videoprobe import EveryFrame

    clip = clip_with_audio(
        tmp_path / f"clip.{fmt}",
        fmt=fmt,
        video_codec=vcodec,
        audio_codec=acodec,
        burst_at=0.5,
        audio_start=audio_start,
        video_start=video_start,
    )
    from engine.inputs.videoprobe import probe_video

    assert probe_video(clip, fps=FPS, max_frames=20).frames == 16
    result = extract_poses(clip, fps=FPS, detector=EveryFrame(), smoothing="none")
    assert len(result.times) == 16
    lead_in = 3
    track = clip_audio(clip, clip_times=result.times, lead_in_frames=lead_in, fps=FPS)
    out = encode_mp4(_frames(lead_in + 16), tmp_path / "out.mp4", FPS, audio=track)
    at = audio_start - video_start + 0.5
    k = next(i for i, t in enumerate(result.times) if t == pytest.approx(at))
    heard = burst_time(out)
    assert heard is not None and abs(heard - (lead_in + k) / FPS) < PERIOD, (heard, lead_in + k)
    assert audio_duration(out) == pytest.approx((lead_in + 16) / FPS, abs=PERIOD / 2)


@pytest.mark.parametrize(("fmt", "vcodec"), [("matroska", "libx264"), ("webm", "libvpx-vp9")])
@pytest.mark.parametrize("audio_codec", [None, "pcm_s16le"])
def test_a_matroska_video_starting_late_counts_its_own_frames(tmp_path, fmt, vcodec, audio_codec):
    """Matroska's durations are end times on a clock from 0: a 2 s video whose first frame is at 5 s
    declares 7 s. It was refused as truncated (2 s of 7); it gives its 16 frames."""
    from engine.inputs.videoprobe import probe_video

    if audio_codec is not None and fmt == "webm":
        audio_codec = "libopus"
    clip = clip_with_audio(
        tmp_path / f"clip.{fmt}", fmt=fmt, video_codec=vcodec, audio_codec=audio_codec, video_start=5.0
    )
    info = probe_video(clip, fps=FPS, max_frames=20)
    assert info.frames == 16 and info.duration_s == pytest.approx(2.0, abs=0.01)
