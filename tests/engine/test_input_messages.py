"""Messages a new user meets (issue 24's walk): a JPEG sent as poses says so, and ``animate --size 65``
names the option that was typed."""

from __future__ import annotations

import pytest

from engine.inputs.poseformat import PoseError, parse_pose_json
from tests.support.payloads import png_bytes


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (png_bytes(fmt="JPEG"), "a JPEG image"),
        (png_bytes(), "a PNG image"),
        (png_bytes(fmt="WEBP"), "a WebP image"),
        (b"\x00\x00\x00\x18ftypisom" + bytes(20), "an MP4/MOV video"),
    ],
)
def test_a_binary_file_sent_as_poses_says_what_it_looks_like(data, kind):
    with pytest.raises(PoseError) as err:
        parse_pose_json(data)
    assert err.value.code == "pose_malformed" and f"looks like {kind}" in str(err.value)


def test_text_that_is_not_utf8_still_says_so():
    with pytest.raises(PoseError, match="not UTF-8"):
        parse_pose_json(b'{"frames": "\xe9"}')


@pytest.mark.parametrize("size", ["65", "64x65", "8", "4096"])
def test_animate_size_errors_name_the_size_option(size):
    from cli.engine_commands import _parse_size

    with pytest.raises(ValueError, match=r"^--size must be N or WxH with each a multiple of 8 in 64\.\.2048"):
        _parse_size(size)


def test_good_sizes_parse():
    from cli.engine_commands import _parse_size

    assert _parse_size("64") == (64, 64) and _parse_size("512x256") == (512, 256)
