"""``poseanimate make-random-model``: the full-size SD-1.5 + OpenPose-ControlNet architecture with
RANDOM weights, for benchmarks (speed and memory are the real model's; outputs are noise)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

ARCHES = ("sd15",)  # engine.weights.random_model.ARCHES, repeated so the parser is built without torch


def add_random_model_commands(subparsers: Any) -> None:
    """Register ``make-random-model`` on an argparse sub-parser set."""
    cmd = subparsers.add_parser(
        "make-random-model",
        help="build a FULL-SIZE RANDOM-WEIGHT model for benchmarks (outputs are noise)",
        description="Write the exact SD-1.5 U-Net, VAE, CLIP text encoder, tokenizer-sized vocabulary, "
        "scheduler and OpenPose-ControlNet architectures with random weights in diffusers layout "
        "(~2.8 GB in float16). For speed and memory benchmarks only: its images are meaningless.",
    )
    cmd.add_argument("directory", type=Path)
    cmd.add_argument("--arch", choices=ARCHES, default="sd15")
    cmd.add_argument("--seed", type=int, default=0)
    cmd.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="weights on disk (default float16)"
    )
    cmd.set_defaults(func=make_random_model_command)


def make_random_model_command(args: argparse.Namespace) -> int:
    import torch

    from engine.weights.random_model import build_random_model

    if args.directory.exists() and not args.directory.is_dir():
        raise ValueError(f"{args.directory} exists and is not a directory")
    path = build_random_model(
        args.directory, arch=args.arch, seed=args.seed, dtype=getattr(torch, args.dtype)
    )
    print(f"full-size RANDOM-WEIGHT {args.arch} model written to {path} (benchmarks only; outputs are noise)")
    return 0
