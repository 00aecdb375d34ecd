import base64
import io

import pytest
from PIL import Image

from jobs.intake.images import ImageValidationError, check_image, check_mask, decode_data_uri, sniff_format
from tests.support.payloads import png_bomb

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 512 * 512}


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def code_of(data: bytes) -> str:
    with pytest.raises(ImageValidationError) as info:
        check_image(data, **LIMITS)
    return info.value.code


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_webp_are_accepted_and_reencoded_as_png(fmt):
    checked = check_image(encode(Image.new("RGB", (64, 48), "red"), fmt), **LIMITS)
    assert checked.png.startswith(b"\x89PNG") and (checked.width, checked.height) == (64, 48)
    assert checked.source_format == fmt and not checked.has_alpha


def test_sniffing_ignores_the_claimed_type():
    assert sniff_format(b"GIF89a....") is None
    assert code_of(encode(Image.new("RGB", (8, 8)), "GIF")) == "image_unsupported_format"
    assert code_of(b"<html>not an image</html>") == "image_unsupported_format"


def test_decompression_bomb_is_refused_from_its_header():
    bomb = png_bomb(100_000, 100_000)
    assert len(bomb) < 200
    assert code_of(bomb) == "image_too_many_pixels"


def test_truncated_image_is_refused():
    data = encode(Image.effect_noise((128, 128), 50).convert("RGB"), "PNG")
    assert code_of(data[: len(data) // 2]) == "image_corrupt"


def test_oversized_file_is_refused_before_sniffing():
    assert code_of(b"\x89PNG\r\n\x1a\n" + b"\0" * 1_000_001) == "image_too_large"


@pytest.mark.parametrize(
    "img,alpha",
    [
        (Image.new("CMYK", (16, 16)), False),
        (Image.new("L", (16, 16)), False),
        (Image.new("I;16", (16, 16), 40000), False),
        (Image.new("RGBA", (16, 16)), True),
        (Image.new("P", (16, 16)), False),
    ],
)
def test_unusual_modes_are_normalised_to_rgb_or_rgba(img, alpha):
    fmt = "JPEG" if img.mode == "CMYK" else "PNG"
    checked = check_image(encode(img, fmt), **LIMITS)
    assert Image.open(io.BytesIO(checked.png)).mode == ("RGBA" if alpha else "RGB")
    assert checked.has_alpha is alpha


def test_animated_webp_keeps_its_first_frame():
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:], lossless=True)
    checked = check_image(out.getvalue(), **LIMITS)
    assert Image.open(io.BytesIO(checked.png)).getpixel((0, 0)) == (255, 0, 0)


def test_mask_uses_alpha_channel_when_present():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    img.putpixel((1, 1), (0, 0, 0, 255))
    mask = Image.open(io.BytesIO(check_mask(encode(img, "PNG"), **LIMITS).png))
    assert mask.mode == "L" and mask.getpixel((1, 1)) == 255 and mask.getpixel((0, 0)) == 0


def test_data_uri_decoding():
    raw = encode(Image.new("RGB", (4, 4)), "PNG")
    assert decode_data_uri("data:image/png;base64," + base64.b64encode(raw).decode(), max_bytes=10**6) == raw
    for bad in ("data:image/png,rawbytes", "data:image/png;base64,@@@", "http://x"):
        with pytest.raises(ImageValidationError):
            decode_data_uri(bad, max_bytes=10**6)
    with pytest.raises(ImageValidationError) as info:
        decode_data_uri("data:image/png;base64," + "A" * 4000, max_bytes=100)
    assert info.value.code == "image_too_large"
