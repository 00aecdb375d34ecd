"""Hostile driving videos (issue 24, H2): files whose first bytes are an accepted magic (MP4/MOV,
WebM/Matroska, GIF) followed by something a network-capable FFmpeg demuxer reads (an SDP session,
HLS and concat playlists, an MPEG-TS stream, RTSP/RTP text). The probe the API runs and the opening
the io worker's extraction does must open them with the demuxer their magic names and FFmpeg
restricted to local reading: refused (``video_unreadable``), never opened as another format, and no
socket opened while trying (a thread watches this process's file descriptors)."""

from __future__ import annotations

import io
import time

import pytest

from engine.inputs.videoprobe import (
    DEMUXERS,
    ExtractionError,
    VideoUnreadable,
    open_video,
    probe_video,
    sniff_container,
)
from tests.support.clips import astronaut_gif, astronaut_mp4, astronaut_webm, blank_mp4
from tests.support.sockets import new_sockets

MAGICS = {
    "webm": b"\x1a\x45\xdf\xa3",
    "mp4": b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",
    "mov": b"\x00\x00\x00\x08wide",
    "gif": b"GIF89a",
}
SDP = (
    b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=video 47004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)
HLS = b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://127.0.0.1:47009/a.ts\n#EXT-X-ENDLIST\n"
CONCAT = b"ffconcat version 1.0\nfile 'http://127.0.0.1:47009/a.mp4'\nfile '/etc/passwd'\n"
RTSP = b"rtsp://127.0.0.1:47010/stream\n"


def mpegts() -> bytes:
    """A real MPEG-TS stream (MPEG-2 video): what a probe scanning for 0x47 sync bytes picks."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mpegts") as container:
        stream = container.add_stream("mpeg2video", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for k in range(8):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([k * 16]) * plane.buffer_size)
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


PAYLOADS = {"sdp": b"\n" + SDP, "hls": b"\n" + HLS, "concat": b"\n" + CONCAT, "rtsp": b"\n" + RTSP}
HOSTILE = [(magic, name) for magic in sorted(MAGICS) for name in (*sorted(PAYLOADS), "mpegts")]


def hostile(magic: str, payload: str) -> bytes:
    body = mpegts() if payload == "mpegts" else PAYLOADS[payload]
    return MAGICS[magic] + body


@pytest.mark.parametrize(("magic", "payload"), HOSTILE)
def test_a_network_demuxer_hidden_behind_an_accepted_magic_is_refused_without_a_socket(magic, payload):
    data = hostile(magic, payload)
    began = time.monotonic()
    with new_sockets() as opened, pytest.raises(ExtractionError) as err:
        probe_video(data, max_frames=64)
    assert not opened, f"probing {magic}+{payload} opened sockets: {opened}"
    # A GIF header reads its screen size from whatever follows the magic: refused as too large
    assert err.value.code in ("video_unreadable", "video_too_large")
    assert time.monotonic() - began < 5  # no network wait


@pytest.mark.parametrize(("magic", "payload"), HOSTILE)
def test_extraction_opens_the_same_files_from_a_path_with_the_same_guard(tmp_path, magic, payload):
    path = tmp_path / f"clip.{magic}"
    path.write_bytes(hostile(magic, payload))
    with new_sockets() as opened, pytest.raises(ExtractionError):
        probe_video(path, max_frames=64)
    assert not opened


def test_the_sdp_file_that_bound_udp_ports_is_refused_as_not_the_webm_it_claims():
    with pytest.raises(VideoUnreadable, match="not a readable WEBM"):
        open_video(MAGICS["webm"] + b"\n" + SDP)


@pytest.mark.parametrize(
    ("kind", "clip"),
    [
        ("mp4", astronaut_mp4(4, side=32, canvas=(48, 48))),
        ("webm", astronaut_webm(4, side=32, canvas=(48, 48))),
        ("gif", astronaut_gif(4, side=32, canvas=(48, 48))),
    ],
)
def test_real_clips_open_with_the_demuxer_their_magic_names(kind, clip):
    assert sniff_container(clip[:12]) == kind
    container, _ = open_video(clip)
    try:
        assert DEMUXERS[kind] in container.format.name.split(",")
    finally:
        container.close()


def test_a_real_clip_under_another_containers_magic_is_refused():
    webm = astronaut_webm(4, side=32, canvas=(48, 48))
    mp4 = astronaut_mp4(4, side=32, canvas=(48, 48))
    for data in (MAGICS["gif"] + webm, MAGICS["webm"] + mp4[4:], MAGICS["mp4"] + webm):
        with pytest.raises(ExtractionError):
            probe_video(data, max_frames=64)


def test_only_local_protocols_and_the_named_demuxer_are_allowed():
    """The options themselves, so a refactor that drops them fails here and not only in an attack."""
    import av

    from engine.inputs import videoprobe

    seen = {}
    real_open = av.open

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_open(*args, **kwargs)

    clip = astronaut_mp4(2, side=32, canvas=(48, 48))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(av, "open", spy)
        videoprobe.open_video(clip)[0].close()
    assert seen["format"] == "mov"
    assert seen["container_options"]["protocol_whitelist"] == "file,pipe"
    assert seen["container_options"]["format_whitelist"] == "mov"


@pytest.mark.parametrize("rate", [1000, 5000])
def test_a_clip_faster_than_240_fps_is_refused(rate):
    """Issue 24 'also seen': a 1,000 fps clip was accepted although the source rate is capped at 240."""
    with pytest.raises(ExtractionError, match="frames per second") as err:
        probe_video(blank_mp4(64, 64, frames=40, rate=rate), max_frames=500)
    assert err.value.code == "video_invalid"


def test_a_240_fps_clip_still_passes():
    assert probe_video(blank_mp4(64, 64, frames=40, rate=240), max_frames=500).packets == 40


@pytest.mark.parametrize("codec", ["mpeg2video", "ffv1"])
def test_codecs_outside_the_list_are_refused_inside_matroska(codec):
    """'Also seen': any codec FFmpeg decodes passed inside MKV."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as container:
        stream = container.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for k in range(4):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([k * 30]) * plane.buffer_size)
            frame.pts = k
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(VideoUnreadable, match=f"is {codec} video; accepted"):
        probe_video(buf.getvalue(), max_frames=64)
