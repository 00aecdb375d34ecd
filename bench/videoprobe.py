"""What probing a driving video at submission costs next to decoding it: ``engine.inputs.videoprobe``
(header, every packet demuxed, the first frame decoded) against decoding every frame with PyAV, on
clips made here (H.264 MP4 and VP9 WebM of moving noise, so the encoder cannot shrink the frames).

    .venv/bin/python -m bench.videoprobe                 # 10 s at 30 fps, 640x480
    .venv/bin/python -m bench.videoprobe --seconds 30 --size 1280x720
"""

from __future__ import annotations

import argparse
import io
import time

import av
import numpy as np

from engine.inputs.videoprobe import probe_video


def make_clip(fmt: str, codec: str, seconds: float, fps: int, width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height + 64, width + 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        else:
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        for k in range(round(seconds * fps)):
            dx = k % 64
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(base[:height, dx : dx + width]), format="rgb24"
            )
            frame.pts = k
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def decode_all(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(video=0))


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="640x480", help="WxH")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    print(f"{args.seconds:g} s at {args.fps} fps, {width}x{height}; best of {args.repeat}")
    print("| clip | MB | frames | probe ms | decode-all ms | decode / probe |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt, codec in (("mp4", "libx264"), ("webm", "libvpx-vp9")):
        data = make_clip(fmt, codec, args.seconds, args.fps, width, height)
        info = probe_video(data, max_frames=10**6)
        probe_s = best(lambda data=data: probe_video(data, max_frames=10**6), args.repeat)
        frames = decode_all(data)
        decode_s = best(lambda data=data: decode_all(data), args.repeat)
        assert info.packets == frames, (info.packets, frames)
        print(
            f"| {fmt}/{codec} | {len(data) / 1e6:.1f} | {frames} | {probe_s * 1e3:.1f} | {decode_s * 1e3:.0f} "
            f"| {decode_s / probe_s:.0f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
