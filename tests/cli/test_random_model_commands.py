"""``poseanimate make-random-model``: the command that writes the full-size random-weight model."""

from __future__ import annotations

import pytest


def test_cli_registers_make_random_model():
    from cli.main import build_parser

    args = build_parser().parse_args(["make-random-model", "--arch", "sd15", "/tmp/x"])
    assert args.command == "make-random-model" and args.arch == "sd15" and args.dtype == "float16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["make-random-model", "--arch", "sdxl", "/tmp/x"])
