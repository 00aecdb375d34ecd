"""A sprite sheet of a job's output: frames of its MP4 tiled in a grid, as one JPEG (torch-free).

``GET /v1/videos/{id}/content?variant=spritesheet`` makes it on its first request and stores it next
to the outputs (``outputs/{id}/spritesheet.jpg``), so it is decoded once per job.
"""

from __future__ import annotations

import io
import math

import av
from PIL import Image

SPRITESHEET = "spritesheet.jpg"
MAX_TILES = 16
TILE_WIDTH = 128
COLUMNS = 4


def _frames(mp4: bytes) -> list[Image.Image]:
    with av.open(io.BytesIO(mp4), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return [Image.fromarray(frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)]


def spritesheet(mp4: bytes, *, max_tiles: int = MAX_TILES, tile_width: int = TILE_WIDTH) -> bytes:
    """Up to ``max_tiles`` evenly spaced frames, ``tile_width`` px wide each, ``COLUMNS`` per row.
    Raises ``ValueError`` when the video has no frame."""
    frames = _frames(mp4)
    if not frames:
        raise ValueError("the video has no frame")
    count = min(max_tiles, len(frames))
    picked = [frames[round(i * (len(frames) - 1) / max(1, count - 1))] for i in range(count)]
    width, height = picked[0].size
    tile_h = max(1, round(height * tile_width / width))
    columns = min(COLUMNS, count)
    sheet = Image.new("RGB", (columns * tile_width, math.ceil(count / columns) * tile_h))
    for i, frame in enumerate(picked):
        tile = frame.convert("RGB").resize((tile_width, tile_h), Image.Resampling.BILINEAR)
        sheet.paste(tile, ((i % columns) * tile_width, (i // columns) * tile_h))
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=85)
    return out.getvalue()
