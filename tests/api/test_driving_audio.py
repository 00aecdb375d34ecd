"""A driving video's audio stream at submission (issue 21): its header is checked with the video's
(``engine.inputs.audioprobe``), hostile headers are a 4xx, ``audio=false`` skips the check and is
recorded in the job; every refusal is a problem+json, never a 5xx."""

from __future__ import annotations

import pytest

from tests.support.audio import clip_with_audio, cut_after, noise_packets, with_audio_packets


def _post(client, clip: bytes, ext: str, **data):
    files = {"image": ("a.png", _png(), "image/png"), "driving_video": (f"clip.{ext}", clip, "video/mp4")}
    return client.post("/animations", files=files, data={"prompt": "a dancer", "fps": "8", **data})


def _png() -> bytes:
    from tests.support.jobs import png

    return png(size=256)


@pytest.mark.parametrize(
    ("fmt", "ext", "vcodec", "acodec"),
    [
        ("mp4", "mp4", "libx264", "aac"),
        ("mp4", "mp4", "libx264", "libmp3lame"),
        ("mov", "mov", "libx264", "pcm_s16le"),
        ("webm", "webm", "libvpx-vp9", "libopus"),
        ("matroska", "mkv", "libx264", "pcm_s16le"),
    ],
)
def test_clips_with_common_audio_are_accepted_and_audio_is_recorded(
    client, tmp_path, fmt, ext, vcodec, acodec
):
    clip = clip_with_audio(tmp_path / f"c.{ext}", frames=8, fmt=fmt, video_codec=vcodec, audio_codec=acodec)
    r = _post(client, clip.read_bytes(), ext)
    assert r.status_code == 202, r.text
    assert r.json()["params"]["audio"] is True
    r = _post(client, clip.read_bytes(), ext, audio="false")
    assert r.status_code == 202, r.text
    assert r.json()["params"]["audio"] is False


def test_a_hostile_sample_rate_is_refused_unless_audio_is_false(client, tmp_path):
    clip = clip_with_audio(
        tmp_path / "c.mkv", frames=8, fmt="matroska", audio_codec="pcm_s16le", rate=384_000
    ).read_bytes()
    r = _post(client, clip, "mkv")
    assert r.status_code == 413 and r.json()["code"] == "audio_too_large", r.text
    assert "384000 Hz" in r.json()["detail"] and "audio=false" in r.json()["detail"]
    assert _post(client, clip, "mkv", audio="false").status_code == 202


def test_audio_far_longer_than_the_limit_is_a_413(client, tmp_path):
    clip = clip_with_audio(
        tmp_path / "c.mp4", frames=8, audio_codec="aac", rate=8000, channels=1, audio_duration=200.0
    ).read_bytes()
    r = _post(client, clip, "mp4")
    assert r.status_code == 413 and r.json()["code"] == "audio_too_large", r.text
    assert "runs 200" in r.json()["detail"]


def test_poses_max_frames_trims_but_the_service_cap_still_refuses_at_the_door(
    make_client, make_settings, monkeypatch
):
    """``POST /poses`` with a max_frames below the clip's frames is accepted (the io worker keeps the
    first frames); a clip over the service's MAX_FRAMES is still a 413 before anything is queued."""
    import api.routes.poses as poses
    from tests.support.clips import astronaut_mp4

    monkeypatch.setattr(poses, "POSES_WAIT_S", 0.1)
    clip = astronaut_mp4(8, fps=8)  # 8 frames at 8 fps
    client = make_client(make_settings(max_frames=16))
    files = {"video": ("clip.mp4", clip, "video/mp4")}
    r = client.post("/poses", files=files, data={"fps": "8", "max_frames": "3"})
    assert r.status_code == 202, r.text  # queued for the io worker, which trims
    small = make_client(make_settings(max_frames=4))
    r = small.post("/poses", files=files, data={"fps": "8", "max_frames": "3"})
    assert r.status_code == 413 and r.json()["code"] == "video_too_long", r.text


def _pcm_mkv(tmp_path) -> bytes:
    """A Matroska clip with 16-bit PCM stereo: its header fields are plain bytes to damage in place."""
    clip = clip_with_audio(tmp_path / "c.mkv", frames=8, fmt="matroska", audio_codec="pcm_s16le")
    data = clip.read_bytes()
    assert data.count(b"A_PCM/INT/LIT") == 1 and data.count(b"\x9f\x81\x02") == 1  # CodecID, Channels=2
    return data


def _sample_rate_zero(data: bytes) -> bytes:
    at = data.index(b"\xb5\x88")  # SamplingFrequency, an 8-byte float
    return data[: at + 2] + bytes(8) + data[at + 10 :]


@pytest.mark.parametrize(
    ("damage", "status", "code", "says"),
    [
        (lambda d: d.replace(b"\x9f\x81\x02", b"\x9f\x81\xff"), 413, "audio_too_large", "255 channels"),
        (
            lambda d: d.replace(b"A_PCM/INT/LIT", b"A_ZZZ/INT/LIT"),
            422,
            "audio_unreadable",
            "cannot be decoded",
        ),
        (_sample_rate_zero, 422, "audio_unreadable", "no sample rate"),
    ],
)
def test_a_hostile_audio_header_is_a_4xx_naming_audio_false_and_never_a_5xx(
    client, tmp_path, damage, status, code, says
):
    """Header fields damaged in place (a channel count of 255, a codec no decoder knows, a sample rate
    of 0): refused at the door with the audio code, and ``audio=false`` still animates the clip."""
    clip = damage(_pcm_mkv(tmp_path))
    r = _post(client, clip, "mkv")
    assert r.status_code == status and r.json()["code"] == code, r.text
    assert says in r.json()["detail"] and "audio=false" in r.json()["detail"]
    assert _post(client, clip, "mkv", audio="false").status_code == 202


@pytest.mark.parametrize("damage", [noise_packets, cut_after(18)], ids=["noise", "truncated"])
def test_audio_packets_that_do_not_decode_pass_the_door_for_the_worker_to_drop(client, tmp_path, damage):
    """Their headers are sound, so the submission is accepted (the probe decodes nothing); the io
        worker keeps what decodes before the cut, or leaves the audio out with a note when nothing does
    (tests/worker/test_audio_jobs.py). Never a 5xx."""
    clip = clip_with_audio(tmp_path / "c.mkv", frames=8, fmt="matroska", audio_codec="aac")
    damaged = with_audio_packets(clip, tmp_path / "d.mkv", damage).read_bytes()
    r = _post(client, damaged, "mkv")
    assert r.status_code == 202 and r.json()["params"]["audio"] is True, r.text


def test_thousands_of_channels_in_a_mov_header_are_a_4xx(client, tmp_path):
    """A QuickTime sound description claiming 4096 channels (a 16-bit field): FFmpeg gives the stream
    no channel count past its own cap, which is ``audio_unreadable``; 9 channels, read as such, is
    ``audio_too_large``."""
    import struct

    mov = clip_with_audio(tmp_path / "c.mov", frames=8, fmt="mov", audio_codec="pcm_s16le").read_bytes()
    entry = mov.index(b"sowt")  # the PCM sample entry; its channel count sits 20 bytes after the type
    assert struct.unpack(">H", mov[entry + 20 : entry + 22]) == (2,)
    for channels, status, code in ((4096, 422, "audio_unreadable"), (9, 413, "audio_too_large")):
        clip = mov[: entry + 20] + struct.pack(">H", channels) + mov[entry + 22 :]
        r = _post(client, clip, "mov")
        assert r.status_code == status and r.json()["code"] == code, (channels, r.text)
        assert _post(client, clip, "mov", audio="false").status_code == 202


@pytest.mark.parametrize(("fmt", "ext"), [("matroska", "mkv"), ("mp4", "mp4")])
def test_audio_longer_than_the_video_is_not_a_truncated_video(client, tmp_path, fmt, ext):
    """Music running twice the dance's length: Matroska's one duration is the audio's, which the
    probe took for missing video frames (422 video_unreadable "truncated")."""
    clip = clip_with_audio(
        tmp_path / f"c.{ext}",
        frames=8,
        fmt=fmt,
        audio_codec="pcm_s16le" if ext == "mkv" else "aac",
        audio_duration=2.0,
    )
    r = _post(client, clip.read_bytes(), ext)
    assert r.status_code == 202, r.text
