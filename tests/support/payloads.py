"""Request bodies for API and integration tests."""

from __future__ import annotations

import base64
import io
import struct
import zlib

from PIL import Image

from jobs.contract import EXAMPLE_POSES


def png_bytes(size: int = 64, color: str = "red", fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, format=fmt)
    return out.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def job_body(**overrides: object) -> dict[str, object]:
    return {
        "image": data_uri(png_bytes()),
        "poses": EXAMPLE_POSES,
        "prompt": "a person",
        "steps": 2,
        "size": 64,
        **overrides,
    }


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny PNG whose header declares a huge canvas (IDAT is a few bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def truncated_png() -> bytes:
    out = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(out, format="PNG")
    return out.getvalue()[:3000]


STANDING = [
    [256, 96, 1.0],
    [256, 150, 1.0],
    [212, 152, 0.95],
    [196, 222, 0.9],
    [188, 290, 0.85],
    [300, 150, 0.95],
    [318, 220, 0.9],
    [330, 286, 0.8],
    [230, 282, 0.9],
    [226, 372, 0.85],
    [224, 456, 0.8],
    [282, 282, 0.9],
    [288, 372, 0.85],
    [292, 456, 0.8],
    [246, 86, 0.95],
    [266, 86, 0.95],
    [236, 92, 0.7],
    [276, 92, 0.7],
]
"""A person standing facing the camera on a 512 x 512 canvas, COCO-18 [x, y, confidence], every
keypoint confident (integers: exact through any round trip)."""
