"""``poseanimate animate`` and ``poseanimate make-tiny-model``: the engine from the command line.

Kept apart from the service commands so ``poseanimate serve`` never imports torch. ``animate`` checks
its inputs with the engine's torch-free rules first and imports torch only once they pass, so a
refusal is quick. Errors a user can cause print one line (``poseanimate: error: ...``) and exit with
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.poses_commands import add_extraction_arguments, describe, extraction_options

if TYPE_CHECKING:
    from PIL import Image

    from engine.method.config import AnimateConfig
    from engine.method.pipeline import AnimationResult, PoseAnimator
    from engine.poses.pose import Pose, PoseSequence

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
    from engine.inputs.rules import LIMITS

    step, low, high = LIMITS.size_multiple, LIMITS.min_size, LIMITS.max_size
    if any(v % step or not low <= v <= high for v in (w, h)):
        # Name the option the user typed, not the width/height it becomes.
        raise ValueError(
            f"--size must be N or WxH with each a multiple of {step} in {low}..{high}, got {text!r}"
        )
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
    """``poseanimate animate``: check everything torch-free, then load the model, animate, write."""
    # 1. The engine's input rules, before torch is imported or a model loaded (the API refuses the
    #    same inputs): a refusal costs a fraction of a second.
    inputs = _checked_inputs(args)
    # 2. Torch from here on: the mask's fit, the device, the model.
    _check_mask_after_the_crop(inputs)
    animator = _load_animator(args)
    # 3. Animate, streaming each frame into the MP4, with one progress bar per stage.
    result, poster = _animate_to_mp4(animator, inputs, args)
    # 4. Poster, previews, summary.
    if args.poster and poster is not None:
        from engine.poses.video import save_poster

        save_poster(poster, args.poster)
    if args.previews:
        _write_previews(result, inputs, args)
    print(_summary(result, inputs.config, args.out))
    return 0


@dataclass(frozen=True)
class _Inputs:
    """What ``animate`` was given, decoded and checked by the engine's torch-free rules."""

    config: AnimateConfig
    image: Image.Image
    targets: PoseSequence
    source: Pose | None
    mask: Image.Image | None
    """The decoded mask image (fitted to the output size once torch is loaded)."""
    prompt: str
    subjects: list[str]
    audio: Any = None
    """The driving clip's sound placed on the output timeline (``engine.poses.audio``), or None."""
    clip_times: tuple[float, ...] | None = None
    """The clip time each driven frame was sampled at (``--video``)."""


def _config(args: argparse.Namespace) -> AnimateConfig:
    from engine.method.config import AnimateConfig

    width, height = _parse_size(args.size)
    return AnimateConfig(
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


def _lead_frames(config: AnimateConfig) -> int:
    """Output frames before the first target pose: the source frame and PATA's transition."""
    return 1 + (config.transition_frames if config.use_pata else 0)


def _checked_inputs(args: argparse.Namespace) -> _Inputs:
    """Config, prompt, subject words, image, poses (read or extracted), source pose, mask image,
    frame count and output name, in that order; the first broken one is a one-line ValueError."""
    from engine.inputs import rules
    from engine.poses.pose import Pose

    config = _config(args)
    rules.check_prompt(args.prompt)
    rules.check_subject_words(args.prompt, args.subject)
    image = _open_image(args.image, "image")
    rules.check_image_size(*image.size)
    targets, audio, clip_times = _targets(args, config)
    source = Pose.from_json(_read(args.source_pose, "source pose")) if args.source_pose else None
    mask = _open_image(args.mask, "mask") if args.mask else None
    rules.check_output_frames(_lead_frames(config) + len(targets))
    if args.out.suffix.lower() != ".mp4":
        raise ValueError("--out must end in .mp4")
    return _Inputs(config, image, targets, source, mask, args.prompt, args.subject, audio, clip_times)


def _targets(args: argparse.Namespace, config: AnimateConfig) -> tuple[PoseSequence, Any, Any]:
    """The target poses: read from --poses, or extracted from --video at --fps (with the clip's
    sound placed on the output timeline unless --no-audio, and each driven frame's clip time)."""
    if args.video is None:
        from engine.poses.pose import PoseSequence

        return PoseSequence.from_json(_read(args.poses, "poses")), None, None
    from engine.poses.extract import extract_poses

    # Room for the source frame and the transition within the output frame cap.
    room = config.max_frames - _lead_frames(config)
    options = extraction_options(args, "video-")
    extracted = extract_poses(args.video, fps=args.fps, max_frames=max(room, 1), parts=args.parts, **options)
    print(f"extracted {describe(extracted)}", file=sys.stderr)
    audio = _clip_audio(args, extracted.times, _lead_frames(config), options["end"]) if args.audio else None
    return extracted.poses, audio, extracted.times


def _clip_audio(args: argparse.Namespace, times: Any, lead_in_frames: int, end: float | None) -> Any:
    """The clip's sound for the output, or None (said in a note) when it has none or cannot be read."""
    from engine.poses.audio import AudioError, clip_audio

    try:
        audio = clip_audio(
            args.video,
            clip_times=times,
            lead_in_frames=lead_in_frames,
            fps=args.fps,
            end=end,
            lead_in=args.audio_lead_in,
        )
    except AudioError as exc:
        print(f"note: the clip's audio is left out: {exc} ({exc.code})", file=sys.stderr)
        return None
    if audio is None:
        print("note: the clip has no audio stream: the output is silent", file=sys.stderr)
    elif audio.note:
        print(f"note: {audio.note}", file=sys.stderr)
    return audio


def _check_mask_after_the_crop(inputs: _Inputs) -> None:
    """Refused (``mask_empty``) when the mask, cropped like the image, marks nothing (all black or
    fully transparent); the fit lives with the method's masks, which need torch."""
    if inputs.mask is not None:
        from engine.method.masks import fit_mask

        fit_mask(inputs.mask, inputs.config.width, inputs.config.height)


def _load_animator(args: argparse.Namespace) -> PoseAnimator:
    """The pipeline on --device, with a one-line way out when CUDA or the weights are missing."""
    import torch

    if args.device and args.device.startswith("cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"--device {args.device}: this machine has no usable CUDA device (torch {torch.__version__}, "
            f"{build}); use --device cpu, or install a CUDA build of torch on a GPU host"
        )
    from engine.inputs.models import DEFAULT_BASE
    from engine.method.pipeline import PoseAnimator  # diffusers and transformers
    from engine.weights import runtime
    from engine.weights.loading import resolve_model

    base, controlnet = resolve_model(args.model, args.controlnet, tiny_dir=args.tiny_dir)
    try:
        animator = PoseAnimator.from_pretrained(
            base,
            controlnet,
            device=args.device,
            dtype=getattr(torch, args.dtype) if args.dtype else None,
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
        runtime.tune_cpu_allocator()
    return animator


class _StageBars:
    """One tqdm bar per stage, counting its units of work: U-Net steps, or frames while encoding."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def on_step(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            self.close()
            unit = "frame" if stage == "encoding" else "step"
            bar = self.bars[stage] = tqdm(total=total, desc=f"{stage:>10}", unit=unit, leave=True)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _animate_to_mp4(
    animator: PoseAnimator, inputs: _Inputs, args: argparse.Namespace
) -> tuple[AnimationResult, Image.Image | None]:
    """Animate, writing each frame to --out as it is decoded; returns the result and frame 0."""
    from engine.poses.video import Mp4Writer

    args.out.parent.mkdir(parents=True, exist_ok=True)
    bars = _StageBars()
    first: list[Image.Image] = []
    with Mp4Writer(args.out, fps=args.fps, audio=inputs.audio) as writer:

        def on_frame(index: int, frame: Image.Image) -> None:
            writer.write(frame)
            if index == 0:
                first.append(frame)

        result = animator.animate(
            inputs.image,
            inputs.targets,
            inputs.prompt,
            source_pose=inputs.source,
            mask=inputs.mask,
            subject_words=inputs.subjects or None,
            config=inputs.config,
            on_step=bars.on_step,
            on_frame=on_frame,
            keep_frames=False,
        )
    bars.close()
    return result, (first[0] if first else None)


def _write_previews(result: AnimationResult, inputs: _Inputs, args: argparse.Namespace) -> None:
    from engine.poses.previews import write_previews

    written = write_previews(
        result,
        args.out,
        image=inputs.image,
        fps=args.fps,
        transition_frames=_lead_frames(inputs.config) - 1,
        audio=inputs.audio,
        clip_times=inputs.clip_times,
    )
    print("previews: " + ", ".join(str(p) for p in written.values()), file=sys.stderr)


def _summary(result: AnimationResult, config: AnimateConfig, out: Path) -> str:
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    return (
        f"wrote {out} ({result.num_frames} frames, {config.width}x{config.height}); {timings}; "
        f"U-Net evals {result.unet_evals.get('total_forward', 0)} fwd / "
        f"{result.unet_evals.get('total_backward', 0)} bwd; pose: {result.pose_source}; mask: {result.mask_source}"
    )
