"""The adapter between a job and an animation backend: the one place the worker meets the engine.

``load_animator(settings)`` returns a backend with one method, ``render(job, out_dir, on_progress,
should_cancel) -> Rendered`` that writes ``animation.mp4`` and ``poster.png`` into ``out_dir``, and
the previews (``engine.poses.previews``): ``poses.json`` (the whole pose sequence used, on the output
canvas), ``skeleton.mp4`` (the ControlNet conditioning frames) and ``side_by_side.mp4``
([source | pose | result]):

- ``engine``: the PoseAnimate engine (``POSEANIMATE_MODEL`` = hub id, local dir or ``tiny``). The
  engine and torch are imported inside the worker process only, after the fork.
- ``noop``: NO MODEL. Paints solid-colour frames after short sleeps, honouring progress and
  cancellation like the engine does; for service tests and API load tests. Its output is labelled
  ``noop (no model)``.

Backend failures become the typed errors below, which the runner turns into job error codes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from PIL import Image

from engine.inputs.models import DEFAULT_CONTROLNET
from engine.inputs.rules import DEFAULTS, part_flags
from jobs.contract import ErrorCode
from jobs.settings import Settings
from worker import metrics
from worker.memory import StagePeaks, plan_view

if TYPE_CHECKING:  # the worker-engine seam, checked by mypy; imported at run time inside methods
    from engine.method.cache import InversionCache
    from engine.method.pipeline import PoseAnimator
    from engine.poses.audio import AudioTrack

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, float], None]
CancelCheck = Callable[[], bool]
VIDEO_NAME = "animation.mp4"
POSTER_NAME = "poster.png"
POSES_NAME = "poses.json"
SKELETON_NAME = "skeleton.mp4"
SIDE_BY_SIDE_NAME = "side_by_side.mp4"
# Output kind -> (file name, content type), in upload order; the job record's ``outputs`` keys.
OUTPUT_FILES: dict[str, tuple[str, str]] = {
    "video": (VIDEO_NAME, "video/mp4"),
    "poster": (POSTER_NAME, "image/png"),
    "poses": (POSES_NAME, "application/json"),
    "skeleton": (SKELETON_NAME, "video/mp4"),
    "side_by_side": (SIDE_BY_SIDE_NAME, "video/mp4"),
}


class JobCanceled(Exception):
    """The job was canceled while running (the engine stopped between steps)."""


class JobFailure(Exception):
    """A failure with a stable job error code and a message safe to show the client."""

    code = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidJobInput(JobFailure):
    code = ErrorCode.INVALID_INPUT


class GpuOutOfMemory(JobFailure):
    code = ErrorCode.GPU_OUT_OF_MEMORY


class ModelUnavailable(JobFailure):
    code = ErrorCode.MODEL_UNAVAILABLE


@dataclass
class JobInputs:
    image: Image.Image
    poses: dict[str, Any]
    prompt: str
    source_pose: dict[str, Any] | None = None
    mask: Image.Image | None = None
    subject_words: list[str] | None = None
    steps: int = DEFAULTS.steps
    guidance: float = DEFAULTS.guidance
    transition_frames: int = DEFAULTS.transition_frames
    fps: int = DEFAULTS.fps
    width: int = DEFAULTS.size
    height: int = DEFAULTS.size
    seed: int | None = None
    retarget: Literal["scale", "bones"] = DEFAULTS.retarget
    parts: Literal["body", "body+hands", "body+face", "full"] = DEFAULTS.parts
    audio: bytes | None = None
    """The output's sound track, a 16-bit WAV from output time 0 (a driving video's, see
    ``worker.extraction``); None: a silent video."""
    clip_times: list[float] | None = None
    """A driving video's job: the clip time of each driven pose (for ``poses.json``'s timeline)."""


@dataclass
class Rendered:
    video: Path
    poster: Path
    num_frames: int
    timings: dict[str, float] = field(default_factory=dict)
    unet_evals: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    previews: dict[str, Path] = field(default_factory=dict)
    """``poses``, ``skeleton``, ``side_by_side`` -> the files written next to the video."""


def preview_paths(out_dir: Path) -> dict[str, Path]:
    """Where a backend writes the previews inside ``out_dir`` (the names of ``OUTPUT_FILES``)."""
    return {kind: out_dir / OUTPUT_FILES[kind][0] for kind in ("poses", "skeleton", "side_by_side")}


class Animator(Protocol):
    name: str
    random_weights: bool
    device: str
    gpu_memory_total: int

    def render(
        self, job: JobInputs, out_dir: Path, on_progress: ProgressCallback, should_cancel: CancelCheck
    ) -> Rendered: ...


# --------------------------------------------------------------------------------------------
# noop: no model, for service tests and load tests
# --------------------------------------------------------------------------------------------
class NoopAnimator:
    """Solid-colour frames, one per output pose; sleeps ``noop_step_seconds`` per 'step'."""

    name = "noop (no model)"
    random_weights = False
    device = "none"
    gpu_memory_total = 0

    def __init__(self, step_seconds: float) -> None:
        self.step_seconds = step_seconds

    def render(
        self, job: JobInputs, out_dir: Path, on_progress: ProgressCallback, should_cancel: CancelCheck
    ) -> Rendered:
        steps = job.steps
        timings: dict[str, float] = {}
        for stage in ("inverting", "optimizing", "sampling"):
            started = time.perf_counter()
            for i in range(steps):
                if should_cancel():
                    raise JobCanceled(stage)
                time.sleep(self.step_seconds)
                on_progress(stage, (i + 1) / steps)
            timings[stage] = time.perf_counter() - started
        started = time.perf_counter()
        on_progress("encoding", 0.0)
        # PyAV, PIL and numpy only: none of these imports loads torch.
        from engine.poses import video
        from engine.poses.alignment import align_poses
        from engine.poses.pose import Pose, PoseSequence
        from engine.poses.previews import write_previews

        try:  # the sequence the engine would condition on: PATA of the given poses (no detector here)
            targets = PoseSequence.from_json(job.poses)
            source = Pose.from_json(job.source_pose) if job.source_pose is not None else targets[0]
            poses = align_poses(
                source,
                targets,
                job.transition_frames,
                width=job.width,
                height=job.height,
                retarget=job.retarget,
            )
            hands, face = part_flags(job.parts)
            poses = poses.with_parts(hands=hands, face=face)
        except ValueError as exc:
            raise InvalidJobInput(str(exc)) from exc
        count = len(poses)
        frames = [
            Image.new("RGB", (job.width, job.height), (40 + 13 * i % 200, 90, 160)) for i in range(count)
        ]
        audio = output_audio(job.audio)
        video.encode_mp4(frames, out_dir / VIDEO_NAME, job.fps, audio=audio)
        video.save_poster(frames[0], out_dir / POSTER_NAME)
        previews = write_previews(
            _Frames(frames, poses),
            out_dir / VIDEO_NAME,
            image=job.image,
            fps=job.fps,
            transition_frames=job.transition_frames,
            paths=preview_paths(out_dir),
            audio=audio,
            clip_times=job.clip_times,
        )
        on_progress("encoding", 1.0)
        timings["encoding"] = time.perf_counter() - started
        return Rendered(
            out_dir / VIDEO_NAME, out_dir / POSTER_NAME, count, timings, {}, {"backend": "noop"}, previews
        )


def output_audio(wav: bytes | None) -> AudioTrack | None:
    """The job's sound track (``JobInputs.audio``; ``None``: silent). The io worker wrote it; a WAV that does not read
    back is ours, not the client's: the job fails as an internal error."""
    if wav is None:
        return None
    from engine.poses.audio import audio_from_wav

    try:
        return audio_from_wav(wav)
    except ValueError as exc:
        raise JobFailure(f"the job's audio track does not read back: {exc}") from exc


@dataclass
class _Frames:
    """What ``engine.poses.previews.write_previews`` reads of an ``AnimationResult``."""

    frames: list[Image.Image]
    poses: Any


# --------------------------------------------------------------------------------------------
# engine: the PoseAnimate method
# --------------------------------------------------------------------------------------------
def model_spec(settings: Settings) -> tuple[str, str | None]:
    """(model spec, ControlNet override): a local pipeline dir keeps its own ``controlnet/``
    unless the operator names another ControlNet."""
    return settings.model, None if settings.controlnet == DEFAULT_CONTROLNET else settings.controlnet


def inversion_cache(settings: Settings) -> InversionCache | None:
    """Apps re-animate the same avatar: keep its source inversion across jobs (engine cache key:
    image, prompt, source pose, model, sampling settings)."""
    if settings.inversion_cache == "off":
        return None
    from engine.method.cache import MemoryInversionCache

    memory = MemoryInversionCache(max_entries=settings.inversion_cache_entries)
    if settings.inversion_cache == "memory":
        return memory
    from jobs.storage import storage_from_settings
    from worker.inversion_cache import StorageInversionCache

    return StorageInversionCache(storage_from_settings(settings), memory)


CONFIG_KNOBS: dict[str, str] = {
    "steps": "num_inference_steps",
    "guidance": "guidance_scale",
    "transition_frames": "transition_frames",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "retarget": "retarget",
    "parts": "parts",
}
"""``JobInputs`` field -> the ``engine.AnimateConfig`` field it sets (``config_overrides``)."""

BESIDE_CONFIG: dict[str, str] = {
    "image": "PoseAnimator.animate's reference image",
    "poses": "animate's target poses (a PoseSequence)",
    "prompt": "animate's prompt",
    "source_pose": "animate's source_pose",
    "mask": "animate's mask",
    "subject_words": "animate's subject_words",
    "fps": "the written video's frame rate (the MP4 writer and the previews): rendering has none",
    "audio": "the written videos' AAC track (the MP4 writer and the side by side)",
    "clip_times": "poses.json's timeline (the previews)",
}
"""The ``JobInputs`` fields deliberately not in the engine config, and where each goes instead.
Every field is in exactly one of the two tables (a test checks it, and that each arrives)."""


def config_overrides(job: JobInputs) -> dict[str, Any]:
    """The job's knobs as ``engine.AnimateConfig`` fields (the rest keep the engine's defaults)."""
    return {knob: getattr(job, name) for name, knob in CONFIG_KNOBS.items()}


class EngineAnimator:
    def __init__(self, settings: Settings) -> None:
        # The engine (and torch) load only here, inside the worker process that runs jobs.
        import torch

        from engine.method.pipeline import PoseAnimator
        from engine.weights.loading import resolve_model

        spec, controlnet_override = model_spec(settings)
        base, controlnet = resolve_model(
            spec, controlnet_override, tiny_dir=settings.model_cache_dir / "tiny-model"
        )
        dtype = {"auto": None, "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
        self.torch = torch
        self.animator: PoseAnimator = PoseAnimator.from_pretrained(
            base,
            controlnet,
            device=None if settings.device == "auto" else settings.device,
            dtype=dtype[settings.dtype],
            inversion_cache=inversion_cache(settings),
        )
        if self.animator.device.type == "cpu" and settings.cpu_allocator_tuning:
            from engine.weights.runtime import tune_cpu_allocator

            tune_cpu_allocator()
        self.random_weights = bool(self.animator.model_info.get("random_weights"))
        name = "tiny" if spec == "tiny" else spec
        self.name = f"{name} (random weights)" if self.random_weights else name
        loaded = self.animator.model_info.get("load_seconds")
        self.load_seconds = float(loaded) if isinstance(loaded, int | float) else 0.0
        self.device = str(self.animator.device)
        self.gpu_memory_total = (
            torch.cuda.get_device_properties(self.animator.device).total_memory
            if self.animator.device.type == "cuda"
            else 0
        )

    def render(
        self, job: JobInputs, out_dir: Path, on_progress: ProgressCallback, should_cancel: CancelCheck
    ) -> Rendered:
        from engine.inputs.errors import AnimationCancelled
        from engine.method.config import AnimateConfig
        from engine.poses import video
        from engine.poses.pose import Pose, PoseSequence

        torch = self.torch
        try:
            targets = PoseSequence.from_json(job.poses)
            source = Pose.from_json(job.source_pose) if job.source_pose is not None else None
            config = AnimateConfig(**config_overrides(job))
        except ValueError as exc:
            raise InvalidJobInput(str(exc)) from exc

        video_path, poster_path = out_dir / VIDEO_NAME, out_dir / POSTER_NAME
        audio = output_audio(job.audio)
        writer = video.Mp4Writer(video_path, fps=job.fps, audio=audio)

        def on_frame(index: int, frame: Image.Image) -> None:
            if index == 0:
                video.save_poster(frame, poster_path)
            writer.write(frame)

        cuda = torch.cuda.is_available()
        peaks = StagePeaks(torch) if cuda else None

        def progress(stage: str, fraction: float) -> None:
            if peaks is not None:
                peaks.at(stage)
            on_progress(stage, fraction)

        try:
            result = self.animator.animate(
                job.image,
                targets,
                job.prompt,
                source_pose=source,
                mask=job.mask,
                subject_words=job.subject_words,
                config=config,
                on_progress=progress,
                should_cancel=should_cancel,
                on_frame=on_frame,
                keep_frames=False,
            )
            writer.close()
        except AnimationCancelled as exc:
            writer.abort()
            raise JobCanceled(str(exc)) from exc
        except torch.cuda.OutOfMemoryError as exc:
            writer.abort()
            torch.cuda.empty_cache()
            raise GpuOutOfMemory(
                "the GPU ran out of memory; try fewer frames, fewer steps or a smaller size"
            ) from exc
        except ValueError as exc:  # InvalidInput, PoseError, VideoError: the input, not the worker
            writer.abort()
            raise InvalidJobInput(str(exc)) from exc
        except BaseException:
            writer.abort()
            raise
        info: dict[str, Any] = {
            "pose_source": result.pose_source,
            "mask_source": result.mask_source,
            "cache_hit": result.cache_hit,
        }
        actual = peaks.finish() if peaks is not None else None
        info["memory_plan"] = plan_view(result.memory_plan, result.oom_backoffs, actual)
        if peaks is not None:
            info["gpu_memory_allocated_bytes"] = torch.cuda.memory_allocated()
            info["gpu_memory_peak_bytes"] = peaks.overall
        from engine.poses.previews import write_previews

        started = time.perf_counter()
        try:  # the frames are decoded back from the MP4 (keep_frames=False holds none in memory)
            previews = write_previews(
                result,
                video_path,
                image=job.image,
                fps=job.fps,
                transition_frames=job.transition_frames,
                paths=preview_paths(out_dir),
                audio=audio,
                clip_times=job.clip_times,
            )
        except ValueError as exc:  # VideoError: ours, not the client's input
            raise JobFailure(f"writing the previews failed: {exc}") from exc
        timings, evals = dict(result.timings), dict(result.unet_evals)
        timings["previews"] = time.perf_counter() - started
        return Rendered(video_path, poster_path, result.num_frames, timings, evals, info, previews)


def load_animator(settings: Settings) -> Animator:
    if settings.animator == "noop":
        return NoopAnimator(settings.noop_step_seconds)
    return EngineAnimator(settings)


class AnimatorHolder:
    """One model per worker process, loaded once, in a background thread.

    Loading starts right after the fork (``worker_process_init`` only starts the thread, so the
    signal's short timeout never applies to a multi-minute model load); the first task waits for
    it. A failed load is retried by the next task.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._animator: Animator | None = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.load_seconds = 0.0

    def start(self) -> None:
        with self._lock:
            if self._thread is None or (self._error is not None and not self._thread.is_alive()):
                self._error = None
                self._ready.clear()
                self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
                self._thread.start()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self._animator = load_animator(self.settings)
            self.load_seconds = time.perf_counter() - started
            metrics.MODEL_LOAD_SECONDS.set(self.load_seconds)
            metrics.MODEL_LOADED.set(1)
            metrics.WORKER_INFO.labels(
                model=self._animator.name,
                random_weights=str(self._animator.random_weights).lower(),
                device=self._animator.device,
            ).set(1)
            if self._animator.gpu_memory_total:
                metrics.GPU_MEMORY_TOTAL.set(self._animator.gpu_memory_total)
            log.info(
                "model loaded",
                extra={
                    "model": self._animator.name,
                    "seconds": round(self.load_seconds, 2),
                    "random_weights": self._animator.random_weights,
                },
            )
        except BaseException as exc:  # reported to the task that waits for it
            log.exception("model load failed")
            self._error = exc
        finally:
            self._ready.set()

    def get(self, timeout: float | None = None) -> Animator:
        if self._animator is not None:
            return self._animator
        self.start()
        if not self._ready.wait(timeout):
            raise ModelUnavailable("the model did not finish loading in time")
        if self._animator is None:
            error = self._error
            with self._lock:
                self._thread = None  # let the next task retry
            raise ModelUnavailable(f"the model failed to load: {type(error).__name__}: {error}"[:300])
        return self._animator
