"""``poseanimate animate`` and ``poseanimate make-tiny-model``: the engine from the command line.

Kept apart from the service commands so ``poseanimate serve`` never imports torch. Errors a user can
cause print one line (``poseanimate: error: ...``) and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cli.poses_commands import add_extraction_arguments, describe, extraction_options

DEFAULT_TINY_DIR = Path.home() / ".cache" / "poseanimate" / "tiny-model"


def add_engine_commands(subparsers: Any) -> None:
    """Register ``animate`` and ``make-tiny-model`` on an argparse sub-parser set."""
    tiny = subparsers.add_parser(
        "make-tiny-model",
        help="build a tiny RANDOM-WEIGHT model (smoke tests only; outputs are noise)",
        description="Build a tiny random-weight SD-1.5 + OpenPose-ControlNet model set in diffusers layout. "
        "It exercises every code path in seconds on a CPU; its images are meaningless.",
    )
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=make_tiny_model_command)

    anim = subparsers.add_parser(
        "animate",
        help="animate an image along a pose sequence (local, one-off)",
        description="Run PoseAnimate locally and write an H.264 MP4 (frames = 1 + transition + target poses).",
    )
    anim.add_argument("--image", required=True, type=Path, help="character image (PNG/JPEG/WebP)")
    motion = anim.add_mutually_exclusive_group(required=True)
    motion.add_argument("--poses", type=Path, help="target poses: OpenPose JSON or compact JSON")
    motion.add_argument(
        "--video", type=Path, help="driving video: its poses are extracted at --fps (see `poses extract`)"
    )
    anim.add_argument("--prompt", required=True, help='text describing the source image, e.g. "an astronaut"')
    anim.add_argument("--out", required=True, type=Path, help="output .mp4 path")
    anim.add_argument("--poster", type=Path, help="also write frame 0 as a PNG poster here")
    anim.add_argument("--source-pose", type=Path, help="the image's own pose (else a detector is used)")
    anim.add_argument("--mask", type=Path, help="character mask image (white = character)")
    anim.add_argument(
        "--subject", action="append", default=[], help="subject word in the prompt (repeatable)"
    )
    anim.add_argument(
        "--model",
        default=None,
        help="hub id, local pipeline dir, or 'tiny' (default: stable-diffusion-v1-5/stable-diffusion-v1-5)",
    )
    anim.add_argument("--controlnet", default=None, help="ControlNet hub id or dir (default: OpenPose v1.1)")
    anim.add_argument("--steps", type=int, default=50, help="DDIM steps T (paper: 50)")
    anim.add_argument("--guidance", type=float, default=7.5, help="CFG scale w (paper: 7.5)")
    anim.add_argument("--size", default="512", help="output size: N or WxH, multiples of 8 (paper: 512)")
    anim.add_argument("--transition-frames", type=int, default=4, help="PATA transition frames t")
    anim.add_argument(
        "--retarget",
        choices=["scale", "bones"],
        default="scale",
        help="scale: PATA's uniform scale (default); bones: also give each driving bone the character's length",
    )
    anim.add_argument(
        "--parts",
        choices=["body", "body+hands", "body+face", "full"],
        default="full",
        help="what of whole-body poses the ControlNet sees (default: full: body, hands and face)",
    )
    anim.add_argument("--fps", type=float, default=8.0)
    anim.add_argument("--seed", type=int, default=None)
    anim.add_argument("--frame-batch-size", type=int, default=None, help="frames per chunk (default: auto)")
    anim.add_argument(
        "--gradient-checkpointing", action="store_true", help="less memory in the optimisation, ~30%% slower"
    )
    anim.add_argument("--channels-last", action="store_true", help="NHWC convolutions (tensor-core GPUs)")
    anim.add_argument("--compile", action="store_true", help="torch.compile U-Net and ControlNet (CUDA)")
    anim.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    anim.add_argument(
        "--no-allocator-tuning",
        dest="allocator_tuning",
        action="store_false",
        help="on a CPU, keep glibc's default malloc (by default freed tensor memory stays mapped: ~1.3x)",
    )
    anim.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default=None)
    anim.add_argument("--tiny-dir", type=Path, default=DEFAULT_TINY_DIR, help=argparse.SUPPRESS)
    for switch in ("pacm", "dcam", "mgdm", "pata"):
        anim.add_argument(f"--no-{switch}", action="store_true", help=f"ablation: disable {switch.upper()}")
    anim.add_argument(
        "--previews",
        action="store_true",
        help="also write OUT.poses.json, OUT.skeleton.mp4 and OUT.side_by_side.mp4 next to --out",
    )
    add_extraction_arguments(anim, prefix="video-")
    anim.add_argument(
        "--no-audio",
        dest="audio",
        action="store_false",
        help="with --video: leave the clip's sound out (by default it is kept, in sync with the driven frames)",
    )
    anim.add_argument(
        "--audio-lead-in",
        choices=["silence", "clip"],
        default="silence",
        help="with --video: the source and transition frames play over silence (default) or over the "
        "clip's sound from just before the segment; the driven frames stay in sync either way",
    )
    anim.set_defaults(func=animate_command)


def make_tiny_model_command(args: argparse.Namespace) -> int:
    from engine.weights.tiny import build_tiny_model

    path = build_tiny_model(args.directory, seed=args.seed)
    print(f"tiny RANDOM-WEIGHT model written to {path} (for smoke tests; outputs are not meaningful)")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x", 1))
        else:
            w = h = int(text)
    except ValueError:
        raise ValueError(f"--size must be N or WxH, got {text!r}") from None
    return w, h


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _open_image(path: Path, what: str) -> Any:
    """A fully decoded PIL image, or a one-line ValueError (unreadable, not an image, truncated)."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(_read(path, what)))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(
            f"{what} {path} is not an image that can be decoded (truncated or corrupt?): {exc}"
        ) from None
    return image


def animate_command(args: argparse.Namespace) -> int:

    import torch
    from PIL import Image
    from tqdm import tqdm

    from engine import AnimateConfig, Pose, PoseAnimator, PoseSequence
    from engine.inputs import rules
    from engine.inputs.models import DEFAULT_BASE
    from engine.method.masks import fit_mask
    from engine.poses.video import Mp4Writer, save_poster
    from engine.weights.loading import resolve_model
    from engine.weights.runtime import tune_cpu_allocator

    width, height = _parse_size(args.size)
    config = AnimateConfig(
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        height=height,
        width=width,
        transition_frames=args.transition_frames,
        frame_batch_size=args.frame_batch_size,
        gradient_checkpointing=args.gradient_checkpointing,
        seed=args.seed,
        use_pacm=not args.no_pacm,
        use_dcam=not args.no_dcam,
        use_mgdm=not args.no_mgdm,
        use_pata=not args.no_pata,
        retarget=args.retarget,
        parts=args.parts,
    )
    # The engine's rules, checked before anything is loaded (the API refuses the same inputs).
    rules.check_prompt(args.prompt)
    rules.check_subject_words(args.prompt, args.subject)
    image = _open_image(args.image, "image")
    rules.check_image_size(*image.size)
    lead_in_frames = 1 + (config.transition_frames if config.use_pata else 0)
    audio = None
    clip_times: tuple[float, ...] | None = None
    if args.video is not None:
        from engine.poses.audio import AudioError, clip_audio
        from engine.poses.extract import extract_poses

        # Room for the source frame and the transition within the output frame cap.
        room = config.max_frames - lead_in_frames
        options = extraction_options(args, "video-")
        extracted = extract_poses(args.video, fps=args.fps, max_frames=max(room, 1), **options)
        targets = extracted.poses
        clip_times = extracted.times
        print(f"extracted {describe(extracted)}", file=sys.stderr)
        if args.audio:
            try:
                audio = clip_audio(
                    args.video,
                    clip_times=extracted.times,
                    lead_in_frames=lead_in_frames,
                    fps=args.fps,
                    end=options["end"],
                    lead_in=args.audio_lead_in,
                )
                if audio is None:
                    print("note: the clip has no audio stream: the output is silent", file=sys.stderr)
            except AudioError as exc:
                print(f"note: the clip's audio is left out: {exc} ({exc.code})", file=sys.stderr)
    else:
        targets = PoseSequence.from_json(_read(args.poses, "poses"))
    source = Pose.from_json(_read(args.source_pose, "source pose")) if args.source_pose else None
    mask = None
    if args.mask:
        mask = _open_image(args.mask, "mask")
        fit_mask(mask, width, height)  # mask_empty: all black or fully transparent after the crop
    rules.check_output_frames(1 + (config.transition_frames if config.use_pata else 0) + len(targets))
    if args.out.suffix.lower() != ".mp4":
        raise ValueError("--out must end in .mp4")

    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"--device {args.device}: this machine has no usable CUDA device (torch {torch.__version__}, "
            f"{build}); use --device cpu, or install a CUDA build of torch on a GPU host"
        )
    base, controlnet = resolve_model(args.model, args.controlnet, tiny_dir=args.tiny_dir)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    try:
        animator = PoseAnimator.from_pretrained(
            base,
            controlnet,
            device=args.device,
            dtype=dtype,
            channels_last=args.channels_last,
            compile=args.compile,
        )
    except OSError as exc:
        hint = (
            "; no weights here and no network? `--model tiny` runs a random-weight smoke test"
            if args.model in (None, DEFAULT_BASE) or not Path(base).is_dir()
            else ""
        )
        raise ValueError(
            f"cannot load model {base!r} / {controlnet!r}: {str(exc).splitlines()[0]}{hint}"
        ) from None
    if animator.model_info.get("random_weights"):
        print("note: tiny RANDOM-WEIGHT model: the video will be noise", file=sys.stderr)
    if animator.device.type == "cpu" and args.allocator_tuning:
        tune_cpu_allocator()

    bars: dict[str, tqdm] = {}

    def on_step(stage: str, done: int, total: int) -> None:
        """One bar per stage, counting its units of work: U-Net steps, or frames while encoding."""
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            unit = "frame" if stage == "encoding" else "step"
            bar = bars[stage] = tqdm(total=total, desc=f"{stage:>10}", unit=unit, leave=True)
        bar.update(done - bar.n)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    poster: list[Image.Image] = []
    with Mp4Writer(args.out, fps=args.fps, audio=audio) as writer:

        def on_frame(index: int, frame: Image.Image) -> None:
            writer.write(frame)
            if index == 0:
                poster.append(frame)

        result = animator.animate(
            image,
            targets,
            args.prompt,
            source_pose=source,
            mask=mask,
            subject_words=args.subject or None,
            config=config,
            on_step=on_step,
            on_frame=on_frame,
            keep_frames=False,
        )
    for bar in bars.values():
        bar.close()
    if args.poster and poster:
        save_poster(poster[0], args.poster)
    if args.previews:
        from engine.poses.previews import write_previews

        written = write_previews(
            result,
            args.out,
            image=image,
            fps=args.fps,
            transition_frames=lead_in_frames - 1,
            audio=audio,
            clip_times=clip_times,
        )
        print("previews: " + ", ".join(str(p) for p in written.values()), file=sys.stderr)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    print(
        f"wrote {args.out} ({result.num_frames} frames, {width}x{height}); {timings}; "
        f"U-Net evals {result.unet_evals.get('total_forward', 0)} fwd / "
        f"{result.unet_evals.get('total_backward', 0)} bwd; pose: {result.pose_source}; mask: {result.mask_source}"
    )
    return 0
