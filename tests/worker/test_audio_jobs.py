"""A driving video's sound through the job path (issue 21): the io worker's extraction stage puts the
clip's audio on the output timeline, the noop GPU run muxes it into animation.mp4 and the side by
side; the job view lists every frame's role and clip time, and notes audio it left out. Real Redis,
local storage, the real detector (MediaPipe) over the astronaut clip."""

from __future__ import annotations

import pytest

from engine.poses.video import probe_mp4
from jobs.contract import JobStatus
from jobs.views import job_view
from tests.support.audio import (
    audio_duration,
    burst_time,
    clip_with_audio,
    cut_after,
    noise_packets,
    with_audio_packets,
)
from tests.support.jobs import noop_runner
from tests.worker.test_extraction import RecordingQueue, run_stage, submit_video

pytest.importorskip("mediapipe")

FPS, TRANSITION, BURST_AT = 8, 2, 0.75


@pytest.fixture
def env(store, redis_srv, tmp_path):
    queue = RecordingQueue()
    settings, storage, runner = noop_runner(store, redis_srv.url, tmp_path, queue=queue)
    return settings, store, storage, queue, runner


def _run(env, tmp_path, video: bytes, **params):
    _, store, storage, _, runner = env
    record = submit_video(env, video, fps=FPS, transition_frames=TRANSITION, **params)
    assert run_stage(env, record.id) == "sent"
    assert runner.run(record.id) == "succeeded"
    done = store.get(record.id)
    assert done.status is JobStatus.SUCCEEDED
    outputs = {}
    for kind in ("video", "side_by_side"):
        path = tmp_path / f"{record.id}.{kind}.mp4"
        path.write_bytes(storage.get_bytes(done.outputs[kind]))
        outputs[kind] = path
    return job_view(done, storage=storage, url_ttl_s=60), outputs


@pytest.mark.parametrize("start", [None, 0.25])
@pytest.mark.parametrize(
    ("fmt", "vcodec", "acodec"), [("mp4", "libx264", "aac"), ("webm", "libvpx-vp9", "libopus")]
)
def test_the_burst_plays_with_the_driven_frame_sampled_at_its_clip_time(
    env, tmp_path, start, fmt, vcodec, acodec
):
    clip = clip_with_audio(
        tmp_path / f"clip.{fmt}",
        frames=12,
        fps=FPS,
        fmt=fmt,
        video_codec=vcodec,
        audio_codec=acodec,
        burst_at=BURST_AT,
    ).read_bytes()
    view, outputs = _run(env, tmp_path, clip, **({} if start is None else {"video_start": start}))
    assert view.params.audio is True and view.notes == []
    lead_in = 1 + TRANSITION
    driven = round((1.5 - (start or 0.0)) * FPS)
    assert view.num_frames == lead_in + driven == len(view.timeline)
    roles = [f.role for f in view.timeline]
    assert roles == ["source"] + ["transition"] * TRANSITION + ["driven"] * driven
    assert [f.time for f in view.timeline] == pytest.approx([i / FPS for i in range(view.num_frames)])
    clip_times = [f.clip_time for f in view.timeline[lead_in:]]
    assert clip_times == pytest.approx([(start or 0.0) + k / FPS for k in range(driven)])
    at_burst = next(
        f for f in view.timeline if f.clip_time is not None and abs(f.clip_time - BURST_AT) < 1e-6
    )
    for path in outputs.values():
        heard = burst_time(path)
        assert heard is not None and abs(heard - at_burst.time) < 1 / FPS, (path.name, heard, at_burst)
        assert abs(audio_duration(path) - view.num_frames / FPS) < 1 / FPS
        assert probe_mp4(path)["fps"] == FPS  # exactly the job's rate


def test_audio_false_and_a_silent_clip_give_no_audio_stream(env, tmp_path):
    clip = clip_with_audio(tmp_path / "clip.mp4", frames=8, fps=FPS).read_bytes()
    view, outputs = _run(env, tmp_path, clip, audio=False)
    assert view.params.audio is False and view.notes == []
    assert audio_duration(outputs["video"]) is None and audio_duration(outputs["side_by_side"]) is None
    silent = clip_with_audio(tmp_path / "silent.mp4", frames=8, fps=FPS, audio_codec=None).read_bytes()
    view, outputs = _run(env, tmp_path, silent)
    assert view.notes == [] and audio_duration(outputs["video"]) is None


def test_audio_over_the_limits_is_dropped_with_a_note(env, tmp_path):
    clip = clip_with_audio(
        tmp_path / "clip.mkv", frames=8, fps=FPS, fmt="matroska", audio_codec="pcm_s16le", rate=384_000
    ).read_bytes()
    view, outputs = _run(env, tmp_path, clip)
    assert view.status is JobStatus.SUCCEEDED and audio_duration(outputs["video"]) is None
    assert len(view.notes) == 1 and "audio_too_large" in view.notes[0] and "384000 Hz" in view.notes[0]


def test_audio_packets_that_never_decode_give_a_silent_video_and_a_note(env, tmp_path):
    """Headers that pass the submission probe over packets that do not decode (noise in every AAC
    packet): the job still animates, silent, and says why."""
    clip = clip_with_audio(tmp_path / "clip.mkv", frames=8, fps=FPS, fmt="matroska", audio_codec="aac")
    damaged = with_audio_packets(clip, tmp_path / "damaged.mkv", noise_packets).read_bytes()
    view, outputs = _run(env, tmp_path, damaged)
    assert view.status is JobStatus.SUCCEEDED and view.params.audio is True
    assert audio_duration(outputs["video"]) is None and audio_duration(outputs["side_by_side"]) is None
    assert len(view.notes) == 1 and "audio left out" in view.notes[0], view.notes
    assert "does not decode" in view.notes[0]
    assert "audio_unreadable" in view.notes[0] and "silent" in view.notes[0]


def test_a_stretch_with_nobody_is_held_so_later_frames_keep_their_sound(env, tmp_path):
    """Frames with nobody in them (longer than the gap bridging) keep the last pose: every sampled
    frame stays, so the burst after the stretch is heard with the frame sampled at its clip time. With
    ``no_person="drop"`` (the old job path) those frames vanished and the burst played 4 frames late."""
    clip = clip_with_audio(
        tmp_path / "clip.mp4", frames=16, fps=FPS, burst_at=1.5, empty_frames=range(4, 10)
    ).read_bytes()
    view, outputs = _run(env, tmp_path, clip)
    lead_in = 1 + TRANSITION
    assert view.num_frames == lead_in + 16 == len(view.timeline)
    assert [f.clip_time for f in view.timeline[lead_in:]] == pytest.approx([k / FPS for k in range(16)])
    at_burst = view.timeline[lead_in + 12]
    for path in outputs.values():
        heard = burst_time(path)
        assert heard is not None and abs(heard - at_burst.time) < 1 / FPS, (path.name, heard, at_burst)


def test_audio_cut_mid_packet_plays_up_to_the_cut(env, tmp_path):
    """The AAC stream cut inside its 19th packet (about 0.4 s of a 1 s clip; the burst at 0.25 s):
    the sound before the cut plays with its frame, silence after it, as long as the video (was: the
    whole sound dropped)."""
    clip = clip_with_audio(
        tmp_path / "clip.mkv", frames=8, fps=FPS, fmt="matroska", audio_codec="aac", burst_at=0.25
    )
    damaged = with_audio_packets(clip, tmp_path / "damaged.mkv", cut_after(18)).read_bytes()
    view, outputs = _run(env, tmp_path, damaged)
    assert view.status is JobStatus.SUCCEEDED and view.params.audio is True
    assert len(view.notes) == 1 and "audio damaged after" in view.notes[0], view.notes
    at_burst = next(f for f in view.timeline if f.clip_time == pytest.approx(0.25))
    for kind in ("video", "side_by_side"):
        heard = burst_time(outputs[kind])
        assert heard is not None and abs(heard - at_burst.time) < 1 / FPS, (kind, heard, at_burst)
        assert abs(audio_duration(outputs[kind]) - probe_mp4(outputs[kind])["frames"] / FPS) < 1 / FPS


def test_a_matroska_clip_whose_music_outlasts_and_starts_after_the_video(env, tmp_path):
    """Audio twice the video's length starting 0.25 s after its first frame (a Matroska container's
    duration is then the audio's): accepted, every frame driven, the burst (0.75 s into the clip)
    with its frame, and the sound cut at the last frame."""
    clip = clip_with_audio(
        tmp_path / "clip.mkv",
        frames=12,
        fps=FPS,
        fmt="matroska",
        audio_codec="pcm_s16le",
        burst_at=0.5,
        audio_start=0.25,
        audio_duration=3.0,
    ).read_bytes()
    view, outputs = _run(env, tmp_path, clip)
    assert view.params.audio is True and view.notes == []
    assert view.num_frames == 1 + TRANSITION + 12
    at_burst = next(f for f in view.timeline if f.clip_time == pytest.approx(0.75))
    for path in outputs.values():
        heard = burst_time(path)
        assert heard is not None and abs(heard - at_burst.time) < 1 / FPS, (path.name, heard, at_burst)
        assert abs(audio_duration(path) - view.num_frames / FPS) < 1 / FPS
