import ast
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from engine.poses import video
from engine.poses.video import Mp4Writer, VideoError, encode_mp4, probe_mp4, save_poster


def frames(count: int, size=(64, 48)) -> list[Image.Image]:
    """Frames that differ (a moving bright square on a gradient), so the encoder has work to do."""
    w, h = size
    base = np.zeros((h, w, 3), np.uint8)
    base[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    out = []
    for k in range(count):
        frame = base.copy()
        x = (k * 5) % max(w - 8, 1)
        frame[h // 3 : h // 3 + 8, x : x + 8] = 255
        out.append(Image.fromarray(frame))
    return out


def top_level_boxes(path: Path) -> list[bytes]:
    boxes = []
    data = path.read_bytes()
    offset = 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if size == 1:
            size = int.from_bytes(data[offset + 8 : offset + 16], "big")
        boxes.append(kind)
        if size < 8:
            break
        offset += size
    return boxes


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_encode_mp4_writes_h264_yuv420p_with_every_frame(tmp_path):
    path = encode_mp4(frames(12), tmp_path / "out.mp4", fps=8)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (64, 48)
        assert stream.average_rate == 8
        assert sum(1 for _ in container.decode(stream)) == 12


def test_mp4_is_faststart_moov_before_mdat(tmp_path):
    boxes = top_level_boxes(encode_mp4(frames(5), tmp_path / "out.mp4", fps=8))
    assert b"moov" in boxes and b"mdat" in boxes
    assert boxes.index(b"moov") < boxes.index(b"mdat")


def test_probe_mp4_describes_the_file(tmp_path):
    path = encode_mp4(frames(7), tmp_path / "out.mp4", fps=12.5)
    assert probe_mp4(path) == {
        "frames": 7,
        "width": 64,
        "height": 48,
        "fps": 12.5,
        "codec": "h264",
        "pix_fmt": "yuv420p",
        "faststart": True,
    }


def test_probe_reports_a_file_without_faststart(tmp_path):
    path = tmp_path / "plain.mp4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for image in frames(3):
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    assert probe_mp4(path)["faststart"] is False


def test_odd_frame_sizes_are_padded_to_even(tmp_path):
    path = encode_mp4(frames(3, size=(63, 47)), tmp_path / "odd.mp4", fps=8)
    info = probe_mp4(path)
    assert (info["width"], info["height"]) == (64, 48)
    # The padding repeats the last column, so the right edge stays bright red, not black.
    assert decode(path)[0][10, 63, 0] > 200


def test_frames_survive_encoding_at_crf_18(tmp_path):
    source = frames(4)
    path = encode_mp4(source, tmp_path / "q.mp4", fps=8)
    for original, decoded in zip(source, decode(path), strict=True):
        error = np.abs(np.asarray(original, dtype=float) - decoded).mean()
        assert error < 6.0


def test_lower_crf_gives_a_bigger_file(tmp_path):
    small = encode_mp4(frames(8, (128, 96)), tmp_path / "a.mp4", fps=8, crf=40).stat().st_size
    large = encode_mp4(frames(8, (128, 96)), tmp_path / "b.mp4", fps=8, crf=5).stat().st_size
    assert large > small


def test_fractional_fps_is_kept(tmp_path):
    path = encode_mp4(frames(3), tmp_path / "ntsc.mp4", fps=30000 / 1001)
    assert probe_mp4(path)["fps"] == pytest.approx(29.97, abs=1e-3)
    assert Mp4Writer(tmp_path / "x.mp4", fps=29.97).fps == Fraction(2997, 100)


def test_writer_streams_frames_from_a_generator(tmp_path):
    made = []

    def produce():
        for image in frames(6):
            made.append(image)
            yield image

    with Mp4Writer(tmp_path / "s.mp4", fps=8) as writer:
        for image in produce():
            writer.write(image)
            assert writer.frames_written == len(made)
    assert probe_mp4(tmp_path / "s.mp4")["frames"] == 6


def test_grey_and_rgba_frames_are_converted(tmp_path):
    images = [frames(1)[0].convert("L"), frames(1)[0].convert("RGBA")]
    assert probe_mp4(encode_mp4(images, tmp_path / "m.mp4", fps=8))["frames"] == 2


@pytest.mark.parametrize("fps", [0, 0.5, 61, 120, float("nan"), "8", True])
def test_fps_outside_1_to_60_is_rejected(tmp_path, fps):
    with pytest.raises(VideoError, match="fps"):
        Mp4Writer(tmp_path / "x.mp4", fps=fps)


@pytest.mark.parametrize("crf", [-1, 52, 18.5, "18"])
def test_bad_crf_is_rejected(tmp_path, crf):
    with pytest.raises(VideoError, match="crf"):
        Mp4Writer(tmp_path / "x.mp4", fps=8, crf=crf)


def test_frames_of_another_size_are_rejected(tmp_path):
    with pytest.raises(VideoError, match="expected 64x48"), Mp4Writer(tmp_path / "x.mp4", fps=8) as writer:
        writer.write(frames(1)[0])
        writer.write(frames(1, size=(32, 32))[0])
    assert not (tmp_path / "x.mp4").exists()  # the partial file is cleaned up


def test_closing_without_frames_is_an_error(tmp_path):
    with pytest.raises(VideoError, match="no frames"):
        encode_mp4([], tmp_path / "empty.mp4", fps=8)


def test_non_images_are_rejected(tmp_path):
    with pytest.raises(VideoError, match="PIL images"), Mp4Writer(tmp_path / "x.mp4") as writer:
        writer.write(np.zeros((8, 8, 3), np.uint8))  # type: ignore[arg-type]


def test_writing_after_close_is_an_error(tmp_path):
    writer = Mp4Writer(tmp_path / "x.mp4", fps=8)
    writer.write(frames(1)[0])
    writer.close()
    with pytest.raises(VideoError, match="closed"):
        writer.write(frames(1)[0])


def test_save_poster_writes_an_rgb_png(tmp_path):
    path = save_poster(frames(1)[0].convert("RGBA"), tmp_path / "poster.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (64, 48)
        assert np.array_equal(np.asarray(image), np.asarray(frames(1)[0]))


def test_video_module_imports_pyav_lazily():
    tree = ast.parse(Path(video.__file__).read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not any(a.name == "av" for n in top_level for a in n.names)
