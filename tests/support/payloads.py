"""Request bodies for API and integration tests."""

from __future__ import annotations

import base64
import io

from PIL import Image

from worker.contract import EXAMPLE_POSES


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
