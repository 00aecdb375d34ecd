"""``poseanimate submit``: send a job to a running API with :mod:`poseanimate_client`, follow it, save the MP4.

Torch-free. The API's URL comes from ``--api``, else ``POSEANIMATE_API_URL``, else the URL ``make up``
recorded (``.run/stack.json``, whatever ``PORT`` it ran on), else ``http://127.0.0.1:8000``. The key
comes from ``--key``, else ``POSEANIMATE_API_KEY``, else ``.run/api-key`` (what ``make up`` writes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_API = "http://127.0.0.1:8000"
KEY_FILE = Path(".run/api-key")
STACK_FILE = Path(".run/stack.json")


def default_api() -> str:
    """``POSEANIMATE_API_URL``, else the URL ``make up`` recorded, else :data:`DEFAULT_API`."""
    if os.environ.get("POSEANIMATE_API_URL"):
        return os.environ["POSEANIMATE_API_URL"]
    try:
        url = json.loads(STACK_FILE.read_text()).get("api_url")
    except (OSError, ValueError, AttributeError):
        url = None
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else DEFAULT_API


def add_submit_commands(sub: Any) -> None:
    p = sub.add_parser(
        "submit",
        help="submit a job to a running API (and wait for its MP4)",
        description="Submit an animation job to the HTTP API; with --wait (or --out), follow it and "
        "save the MP4.",
    )
    p.add_argument(
        "--api",
        default=None,
        help=f"API base URL (default: $POSEANIMATE_API_URL, then the URL `make up` recorded in {STACK_FILE}, "
        f"then {DEFAULT_API})",
    )
    p.add_argument("--key", help="API key (default: $POSEANIMATE_API_KEY, then .run/api-key)")
    p.add_argument("--image", required=True, type=Path, help="character image (PNG, JPEG or WebP)")
    motion = p.add_mutually_exclusive_group(required=True)
    motion.add_argument("--poses", type=Path, help="target pose JSON")
    motion.add_argument(
        "--video",
        type=Path,
        help="driving video, sent as driving_video: the server extracts its poses and keeps its sound",
    )
    p.add_argument("--source-pose", type=Path, help="the image's own pose JSON (detected if absent)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--subject-words", help="comma-separated prompt words naming the character")
    p.add_argument("--steps", type=int)
    p.add_argument("--guidance", type=float)
    p.add_argument("--size", type=int)
    p.add_argument("--width", type=int, help="generation width (default: --size)")
    p.add_argument("--height", type=int, help="generation height (default: --size)")
    p.add_argument("--fps", type=int)
    p.add_argument("--transition-frames", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--retarget", choices=["scale", "bones"], help="scale (default) or bones")
    p.add_argument(
        "--parts",
        choices=["body", "body+hands", "body+face", "full"],
        help="hands/face drawn for the ControlNet (default: full)",
    )
    p.add_argument("--video-start", type=float, help="with --video: start at this second")
    p.add_argument("--video-end", type=float, help="with --video: stop at this second")
    p.add_argument(
        "--no-audio",
        dest="audio",
        action="store_const",
        const=False,
        default=None,
        help="with --video: send audio=false, the MP4 leaves the clip's sound out (kept by default)",
    )
    p.add_argument("--webhook-url")
    p.add_argument("--idempotency-key")
    p.add_argument("--out", type=Path, help="save the MP4 here (implies --wait)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (default 3600)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_submit)


def resolve_key(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if os.environ.get("POSEANIMATE_API_KEY"):
        return os.environ["POSEANIMATE_API_KEY"]
    if KEY_FILE.is_file():
        return KEY_FILE.read_text().strip() or None
    return None


def _submit(args: argparse.Namespace) -> int:
    import httpx

    from poseanimate_client import PoseAnimateClient, PoseAnimateError

    args.api = args.api or default_api()
    key = resolve_key(args.key)
    if key is None:
        raise ValueError("no API key: pass --key, set POSEANIMATE_API_KEY, or run `make up` (.run/api-key)")
    for what in ("image", "poses", "video", "source_pose"):
        path = getattr(args, what)
        if path is not None and not path.is_file():
            raise ValueError(f"--{what.replace('_', '-')}: no such file: {path}")
    params = {
        "prompt": args.prompt,
        "subject_words": [w.strip() for w in args.subject_words.split(",") if w.strip()]
        if args.subject_words
        else None,
        "steps": args.steps,
        "guidance": args.guidance,
        "size": args.size,
        "width": args.width,
        "height": args.height,
        "fps": args.fps,
        "transition_frames": args.transition_frames,
        "seed": args.seed,
        "retarget": args.retarget,
        "parts": args.parts,
        "video_start": args.video_start,
        "video_end": args.video_end,
        "audio": args.audio,
    }
    try:
        with PoseAnimateClient(args.api, key) as client:
            job = client.create(
                args.image,
                args.poses,
                args.video,
                source_pose=args.source_pose,
                idempotency_key=args.idempotency_key,
                webhook_url=args.webhook_url,
                **{k: v for k, v in params.items() if v is not None},
            )
            print(f"submitted {job.id} ({job.num_frames} frames, {job.status})", file=sys.stderr)
            if not (args.wait or args.out):
                print(job.id)
                return 0
            job = _follow(client, job.id, args)
            if job.status != "succeeded":
                reason = f": {job.error.code}: {job.error.message}" if job.error else ""
                print(f"poseanimate: error: job {job.id} {job.status}{reason}", file=sys.stderr)
                return 1
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                client.download(job, args.out)
                print(f"saved {args.out}", file=sys.stderr)
            print(job.id)
            return 0
    except PoseAnimateError as exc:
        raise ValueError(
            f"{exc.title} ({exc.status} {exc.code}){': ' + exc.detail if exc.detail else ''}"
        ) from exc
    except (OSError, httpx.TransportError) as exc:  # no API there, refused, timed out: one line
        raise ValueError(
            f"cannot reach the API at {args.api} ({type(exc).__name__}: {exc}); is it running? "
            "(`make up`, or set --api / POSEANIMATE_API_URL)"
        ) from exc


def _follow(client: Any, job_id: str, args: argparse.Namespace) -> Any:
    import httpx

    bar = None
    if not args.no_progress:
        try:
            from tqdm import tqdm

            bar = tqdm(
                total=100, unit="%", desc="queued", file=sys.stderr, bar_format="{desc:<11} {bar} {n:.0f}%"
            )
        except ImportError:
            bar = None

    def on_progress(event: Any) -> None:
        if bar is None:
            return
        bar.set_description_str(str(event.stage or event.status))
        bar.n = round(event.progress * 100, 1)
        bar.refresh()

    try:
        job = client.wait(job_id, on_progress=on_progress, timeout=args.timeout)
    except httpx.HTTPError as exc:
        raise ValueError(f"lost the connection to {args.api}: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()
    return job
