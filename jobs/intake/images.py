"""Image intake: format sniffing, size and pixel limits read from the header, then a bounded decode.

A decompression bomb (a small file that declares a huge canvas) is refused from its header, before
any pixel is decoded. Accepted images are re-encoded as PNG (RGB, or RGBA when the image has an
alpha channel, which the engine may use as the character mask), so workers never parse hostile
formats and EXIF rotation is already applied.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.inputs import rules
from engine.inputs.errors import CodedRefusal, InvalidInput, Refusal, declare_codes

_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# zlib level of the re-encoded PNG. It runs inside every submission: on a 512x512 photo level 1 takes
# ~15 ms against ~50 ms for Pillow's default 6, for ~8% more bytes (bench/api_load.py).
PNG_COMPRESS_LEVEL = 1
_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.I
)


IMAGE_CODES = declare_codes(
    {
        "image_too_large": 413,
        "image_unsupported_format": 415,
        "image_corrupt": 422,
        "image_data_uri_invalid": 422,
    },
    owner="jobs.intake.images",
)
"""The engine's rules add ``image_too_small``, ``image_too_many_pixels`` and ``mask_empty``."""


class ImageValidationError(CodedRefusal):
    """An image (or mask) refused at intake."""


RefusalFactory = Callable[[str, str], Refusal]
"""(``"too_large"`` or ``"data_uri_invalid"``, message) -> the refusal of one family of inputs."""


def _image_refusal(reason: str, message: str) -> Refusal:
    return ImageValidationError(f"image_{reason}", message)


@dataclass(frozen=True)
class CheckedImage:
    png: bytes
    width: int
    height: int
    source_format: str
    has_alpha: bool


def sniff_format(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from the magic bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_data_uri(
    uri: str, *, max_bytes: int, what: str = "image", refused: RefusalFactory = _image_refusal
) -> bytes:
    """The bytes of a base64 data URI of at most ``max_bytes``, else ``refused("too_large" or
    "data_uri_invalid", message)`` (by default an image's ``image_too_large``/``image_data_uri_invalid``)."""
    match = _DATA_URI.match(uri)
    if not match:
        raise refused("data_uri_invalid", f"{what}: a data URI looks like data:image/png;base64,<data>")
    if not match.group("b64"):
        raise refused(
            "data_uri_invalid", f"{what}: the data URI must be base64-encoded (data:<mime>;base64,<data>)"
        )
    payload = uri[match.end() :]
    # base64 inflates by 4/3; refuse before decoding a payload that cannot fit.
    if len(payload) > (max_bytes * 4) // 3 + 8:
        raise refused("too_large", f"{what} is larger than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise refused(
            "data_uri_invalid",
            f"{what}: the data URI's payload is not valid base64 ({exc}; standard alphabet, padded, no line breaks)",
        ) from exc


def check_image(
    data: bytes, *, max_bytes: int, max_pixels: int, min_side: int = 1, what: str = "image"
) -> CheckedImage:
    """Sniff, check limits from the header (pixels; each side at least ``min_side``: the engine's
    ``image_too_small`` rule for a character image), decode, and re-encode as PNG."""
    if len(data) > max_bytes:
        raise ImageValidationError("image_too_large", f"{what} is larger than {max_bytes} bytes")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageValidationError("image_unsupported_format", f"{what} is not a PNG, JPEG or WebP image")
    try:
        img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only
        width, height = img.size
        if width < 1 or height < 1 or width * height > max_pixels:
            raise ImageValidationError(
                "image_too_many_pixels",
                f"{what} is {width}x{height}; at most {max_pixels} pixels are allowed",
            )
        if min(width, height) < min_side:
            raise ImageValidationError(
                "image_too_small", f"{what} is {width}x{height}; each side must be at least {min_side} px"
            )
        img.load()
    except ImageValidationError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageValidationError("image_too_many_pixels", f"{what} declares too many pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageValidationError(
            "image_corrupt", f"{what} could not be decoded (truncated or corrupt)"
        ) from exc
    with contextlib.suppress(Exception):  # a broken EXIF block is not worth refusing the image for
        img = ImageOps.exif_transpose(img) or img
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping.
        img = img.point(lambda v: v / 256).convert("L")
    img = img.convert("RGBA" if has_alpha else "RGB")
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return CheckedImage(out.getvalue(), img.width, img.height, fmt, has_alpha)


def check_mask(data: bytes, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """A mask is any accepted image, stored as 8-bit grayscale PNG (white = character)."""
    checked = check_image(data, max_bytes=max_bytes, max_pixels=max_pixels, what="mask")
    img = Image.open(io.BytesIO(checked.png))
    gray = img.getchannel("A") if checked.has_alpha else img.convert("L")
    try:
        rules.check_mask(np.asarray(gray))
    except InvalidInput as exc:  # all black or fully transparent: MGDM would have no character
        raise ImageValidationError(exc.code, exc.message) from exc
    out = io.BytesIO()
    gray.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return CheckedImage(out.getvalue(), checked.width, checked.height, checked.source_format, False)
