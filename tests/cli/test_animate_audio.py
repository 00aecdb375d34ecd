"""`poseanimate animate --video` keeps the clip's sound in sync with the driven frames (issue 21):
a clip whose audio is silent but for a short tone burst at a known clip time, the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from engine.poses.video import probe_mp4
from tests.support.audio import audio_duration, burst_time, clip_with_audio

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FPS, TRANSITION, BURST_AT = 8, 1, 0.75


@pytest.fixture(scope="module")
def burst_clip(tmp_path_factory) -> Path:
    """12 frames at 8 fps (1.5 s) of the astronaut, AAC audio with a burst at 0.75 s."""
    pytest.importorskip("mediapipe")
    return clip_with_audio(
        tmp_path_factory.mktemp("clips") / "burst.mp4", frames=12, fps=FPS, burst_at=BURST_AT
    )


def _animate(clip: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "animate", "--model", str(model),
        "--image", str(EXAMPLES / "astronaut.jpg"),
        "--source-pose", str(EXAMPLES / "astronaut_pose.json"),
        "--video", str(clip), "--prompt", "an astronaut", "--out", str(out),
        "--steps", "2", "--size", "64", "--transition-frames", str(TRANSITION), "--fps", str(FPS),
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("start", [None, 0.5])
def test_the_burst_is_heard_with_the_driven_frame_sampled_at_its_clip_time(
    burst_clip, tiny_model_dir, tmp_path, start
):
    out = tmp_path / "a.mp4"
    extra = ["--previews"] + ([] if start is None else ["--video-start", str(start)])
    assert main(_animate(burst_clip, out, tiny_model_dir, *extra)) == 0
    frames = probe_mp4(out)["frames"]
    lead_in = 1 + TRANSITION
    driven = round((1.5 - (start or 0.0)) * FPS)
    assert frames == lead_in + driven
    # Driven frame k shows clip time start + k / fps; the burst (clip 0.75 s) plays with it.
    doc = json.loads((tmp_path / "a.poses.json").read_text())
    timeline = doc["timeline"]
    assert [f["role"] for f in timeline[:lead_in]] == ["source"] + ["transition"] * TRANSITION
    assert all(f["role"] == "driven" for f in timeline[lead_in:])
    at_burst = next(f for f in timeline if f.get("clip_time") == pytest.approx(BURST_AT))
    heard = burst_time(out)
    assert heard is not None and abs(heard - at_burst["time"]) < 1 / FPS, (heard, at_burst)
    assert abs(audio_duration(out) - frames / FPS) < 1 / FPS
    side = tmp_path / "a.side_by_side.mp4"
    assert burst_time(side) == pytest.approx(heard, abs=1 / FPS)


def test_no_audio_leaves_the_sound_out(burst_clip, tiny_model_dir, tmp_path):
    out = tmp_path / "a.mp4"
    assert main(_animate(burst_clip, out, tiny_model_dir, "--no-audio", "--video-end", "0.5")) == 0
    assert probe_mp4(out)["frames"] == 1 + TRANSITION + 4
    assert audio_duration(out) is None


def test_audio_cut_mid_packet_plays_up_to_the_cut_and_the_note_says_so(tiny_model_dir, tmp_path, capsys):
    """AAC cut inside its 41st packet (about 0.85 s of a 1.5 s clip): the sound before the cut plays
    in sync, silence after it to the end, and a note says where (was: the whole sound dropped)."""
    from tests.support.audio import cut_after, with_audio_packets

    pytest.importorskip("mediapipe")
    clip = clip_with_audio(tmp_path / "c.mkv", frames=12, fps=FPS, fmt="matroska", burst_at=0.5)
    damaged = with_audio_packets(clip, tmp_path / "cut.mkv", cut_after(40))
    out = tmp_path / "a.mp4"
    assert main(_animate(damaged, out, tiny_model_dir)) == 0
    assert "audio damaged after 0.8" in capsys.readouterr().err
    frames = probe_mp4(out)["frames"]
    heard = burst_time(out)
    expected = (1 + TRANSITION + round(0.5 * FPS)) / FPS
    assert heard is not None and abs(heard - expected) < 1 / FPS, (heard, expected)
    assert abs(audio_duration(out) - frames / FPS) < 1 / FPS
