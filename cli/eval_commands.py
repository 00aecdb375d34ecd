"""``poseanimate eval``: the paper's metrics for a video, and Fig. 5's ablations side by side.

    poseanimate eval VIDEO --source IMAGE [--reference GT_VIDEO] [--json] [--clip MODEL]
                     [--lpips-weights PATH [--vgg-weights PATH]] [--flow dis|farneback|raft]
    poseanimate eval ablations --image IMG --poses POSES.json --source-pose POSE.json --out DIR
                     [--prompt P] [--model tiny|DIR|HUB] [--steps T] [--size N]

The second form runs the full method and the four ablations (w/o PACM, DCAM, MGDM, PATA), writes
``metrics.md``, ``metrics.json``, one MP4 per variant and ``contact_sheet.png`` (one row per variant).
A first argument ``ablations`` selects it; any other first argument is the video to evaluate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cli.engine_commands import DEFAULT_TINY_DIR, _open_image, _parse_size, _read

METRICS = ("lpips", "clip_i", "fc", "we", "ssim", "psnr", "l1")
VARIANTS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("full", {}),
    ("w/o PACM", {"use_pacm": False}),
    ("w/o DCAM", {"use_dcam": False}),
    ("w/o MGDM", {"use_mgdm": False}),
    ("w/o PATA", {"use_pata": False}),
)


def add_eval_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="metrics of a generated video (LPIPS, CLIP-I, FC, WE, SSIM/PSNR/L1), or `eval ablations`",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", type=Path, help="generated video, or the word `ablations`")
    p.add_argument("--source", type=Path, help="source image (metrics mode)")
    p.add_argument("--reference", type=Path, help="ground-truth video: adds SSIM, PSNR and L1")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--clip", help="CLIP hub id or local dir (e.g. openai/clip-vit-base-patch32); else null")
    p.add_argument("--lpips-weights", type=Path, help="lpips package's weights/v0.1/vgg.pth; else null")
    p.add_argument(
        "--vgg-weights", type=Path, help="torchvision vgg16-397923af.pth (default: torch hub cache)"
    )
    p.add_argument("--disco-compat", action="store_true", help="LPIPS on [0,1] inputs, as DisCo's script")
    p.add_argument("--flow", choices=("dis", "farneback", "raft"), default="dis", help="optical flow for WE")
    p.add_argument("--raft-weights", type=Path, help="torchvision raft_large weights file (for --flow raft)")
    # ablations mode
    p.add_argument("--image", type=Path, help="ablations: character image")
    p.add_argument("--poses", type=Path, help="ablations: target poses JSON")
    p.add_argument("--source-pose", type=Path, help="ablations: the image's pose JSON")
    p.add_argument("--prompt", default="a person", help="ablations: prompt describing the image")
    p.add_argument("--model", default=None, help="ablations: hub id, local dir or 'tiny'")
    p.add_argument("--controlnet", default=None)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--size", default="512")
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, help="ablations: output directory")
    p.add_argument("--tiny-dir", type=Path, default=DEFAULT_TINY_DIR, help=argparse.SUPPRESS)
    p.set_defaults(func=eval_command)


def _metric_options(args: argparse.Namespace) -> dict[str, Any]:
    from engine.evaluation import LPIPS, load_clip

    options: dict[str, Any] = {"flow": args.flow, "disco_compat": args.disco_compat}
    if args.clip:
        options["clip"] = load_clip(args.clip)
    if args.lpips_weights:
        try:
            options["lpips"] = LPIPS.from_pretrained(args.lpips_weights, args.vgg_weights)
        except (OSError, RuntimeError, KeyError) as exc:
            raise ValueError(f"cannot load LPIPS weights: {str(exc).splitlines()[0]}") from None
    if args.flow == "raft":
        if not args.raft_weights:
            raise ValueError(
                "--flow raft needs --raft-weights (torchvision raft_large); or use dis/farneback"
            )
        try:
            import torch
            from torchvision.models.optical_flow import raft_large
        except ImportError:
            raise ValueError("--flow raft needs torchvision; use --flow dis or farneback") from None
        raft = raft_large(weights=None)
        raft.load_state_dict(torch.load(str(args.raft_weights), map_location="cpu", weights_only=True))
        options["raft"] = raft.eval()
    return options


def _table(rows: dict[str, dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        return "null" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = ["| variant | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    lines += [f"| {name} | " + " | ".join(cell(r.get(k)) for k in METRICS) + " |" for name, r in rows.items()]
    return "\n".join(lines)


def eval_command(args: argparse.Namespace) -> int:
    if str(args.video) == "ablations":
        return ablations_command(args)
    from engine.evaluation import evaluate, read_video

    if args.source is None:
        raise ValueError("eval needs --source IMAGE (the source image the video animates)")
    source = _open_image(args.source, "source image")
    frames = read_video(args.video)
    reference = read_video(args.reference) if args.reference else None
    result = evaluate(frames, source, reference, **_metric_options(args))
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = "null" if value is None else (f"{value:.6g}" if isinstance(value, float) else value)
            print(f"{key:<{width}}  {shown}")
    return 0


def ablations_command(args: argparse.Namespace) -> int:
    import torch
    from PIL import Image

    from engine import AnimateConfig, Pose, PoseAnimator, PoseSequence
    from engine.evaluation import evaluate
    from engine.poses.video import encode_mp4
    from engine.weights.loading import resolve_model

    missing = [f"--{n}" for n in ("image", "poses", "out") if getattr(args, n) is None]
    if missing:
        raise ValueError(f"eval ablations needs {', '.join(missing)}")
    width, height = _parse_size(args.size)
    image = _open_image(args.image, "image")
    targets = PoseSequence.from_json(_read(args.poses, "poses"))
    source_pose = Pose.from_json(_read(args.source_pose, "source pose")) if args.source_pose else None
    base, controlnet = resolve_model(args.model, args.controlnet, tiny_dir=args.tiny_dir)
    options = _metric_options(args)
    try:
        animator = PoseAnimator.from_pretrained(base, controlnet, device=args.device)
    except OSError as exc:
        raise ValueError(f"cannot load model {base!r}: {str(exc).splitlines()[0]}") from None
    if animator.model_info.get("random_weights"):
        print("note: tiny RANDOM-WEIGHT model: frames and metrics are meaningless", file=sys.stderr)
    if animator.device.type == "cpu":
        from engine.weights.runtime import tune_cpu_allocator

        tune_cpu_allocator()
    config = AnimateConfig(num_inference_steps=args.steps, height=height, width=width)
    args.out.mkdir(parents=True, exist_ok=True)
    fitted = animator.prepare_image(image, config)
    rows: dict[str, dict[str, Any]] = {}
    strips: list[list[Image.Image]] = []
    for name, switches in VARIANTS:
        torch.manual_seed(0)
        result = animator.animate(
            image, targets, args.prompt, source_pose=source_pose, config=config.replace(**switches)
        )
        slug = name.replace("/", "").replace(" ", "_").lower()
        encode_mp4(result.frames, args.out / f"{slug}.mp4", fps=8)
        rows[name] = evaluate(result.frames, fitted, **options)
        strips.append(result.frames)
        print(f"{name}: {len(result.frames)} frames", file=sys.stderr)
    (args.out / "metrics.json").write_text(json.dumps(rows, indent=2))
    (args.out / "metrics.md").write_text(_table(rows) + "\n")
    columns = max(len(s) for s in strips) + 1
    sheet = Image.new("RGB", (columns * width, len(strips) * height), "white")
    for row, frames in enumerate(strips):
        sheet.paste(fitted, (0, row * height))  # the source image first, as in Fig. 5
        offset = columns - len(frames)  # PATA-off has fewer frames: align the targets on the right
        for col, frame in enumerate(frames):
            sheet.paste(frame, ((offset + col) * width, row * height))
    sheet.save(args.out / "contact_sheet.png")
    print(_table(rows))
    return 0
