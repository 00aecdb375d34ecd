"""``PoseAnimator``: PATA -> PACM -> DCAM/MGDM sampling, end to end (Sec. 3, Alg. 1, Sec. 4.1).

Reads top to bottom like a diffusers pipeline: ``__init__`` registers components, small helpers
prepare inputs, and ``animate`` is a list of numbered steps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from engine.inputs.errors import InvalidInput, NumericalError
from engine.inputs.models import DEFAULT_BASE, DEFAULT_CONTROLNET, is_random_weights
from engine.inputs.rules import (
    check_image_size,
    check_mask,
    check_output_frames,
    check_poses_not_degenerate,
    check_prompt,
    check_subject_words,
    part_flags,
)
from engine.method.attention import AttentionController, downsampled_grid, install_processors
from engine.method.batching import FrameBatcher, WeightPlacement, plan_frame_batches
from engine.method.cache import InversionCache, inversion_cache_key
from engine.method.compiled import compile_models
from engine.method.config import AnimateConfig
from engine.method.ddim import DDIMSchedule
from engine.method.denoiser import ControlledDenoiser, guided
from engine.method.masks import (
    MaskTracker,
    alpha_mask,
    candidate_tokens,
    fit_mask,
    mask_array,
    pose_mask,
    subject_token_indices,
    to_latent,
)
from engine.method.pacm import SourceInversion, ddim_inversion, optimise_pose_embeddings, pose_aware_inversion
from engine.method.progress import (
    CancelCheck,
    ProgressCallback,
    StageTracker,
    StepCallback,
    device_synchronizer,
)
from engine.poses.alignment import align_poses
from engine.poses.detect import SOURCE_POSE_HINT, get_pose_detector, get_segmenter
from engine.poses.pose import Pose, PoseSequence
from engine.poses.render import render_pose

__all__ = ["DEFAULT_BASE", "DEFAULT_CONTROLNET", "AnimationResult", "PoseAnimator"]

FrameSink = Callable[[int, Image.Image], None]


@dataclass
class AnimationResult:
    frames: list[Image.Image]
    """Output frames; ``frames[0]`` is the reconstruction of the source image. Empty when the caller
    streamed frames to ``on_frame`` with ``keep_frames=False``."""
    poses: PoseSequence
    """The full pose sequence used: ``[p_s, transition..., aligned targets...]`` on the output canvas."""
    timings: dict[str, float]
    """Seconds per stage (``inverting``, ``optimizing``, ``sampling``, ``encoding``)."""
    unet_evals: dict[str, int]
    """U-Net+ControlNet evaluations (per sample) per stage, forward and backward."""
    pose_source: str
    """``client`` or ``detector:<name>``."""
    mask_source: str
    """``client``, ``alpha``, ``segmenter:<name>``, ``cross_attention`` or ``none`` (MGDM off)."""
    subject_tokens: list[str] = field(default_factory=list)
    inversion_losses: list[float] = field(default_factory=list)
    model: dict[str, object] = field(default_factory=dict)
    cache_hit: bool = False
    """The source-side inversion came from the inversion cache (0 U-Net evaluations for it)."""
    frame_batch_size: int = 0
    """Frames per chunk at the end of the job (after any out-of-memory halving)."""
    oom_backoffs: int = 0
    """Out-of-memory halvings of the chunk (the safety net; 0 when the plan fitted)."""
    memory_plan: dict[str, object] = field(default_factory=dict)
    """Per-stage chunks, checkpointing and predicted peaks the job ran with (``engine.method.memory``)."""

    @property
    def num_frames(self) -> int:
        return len(self.poses)


def _check_finite(stage: str, **tensors: torch.Tensor | None) -> None:
    """Fail the job (``NumericalError``, a stable code) when a stage's result holds inf/NaN: an fp16
    overflow must never become black frames returned as a success. One device sync per stage."""
    for name, tensor in tensors.items():
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
            raise NumericalError(stage, name.replace("_", " "))


class PoseAnimator:
    def __init__(
        self,
        *,
        vae,
        text_encoder,
        tokenizer,
        unet,
        controlnet,
        scheduler,
        pose_detector: str | object | None = "auto",
        segmenter: str | object | None = "auto",
        model_info: dict[str, object] | None = None,
        inversion_cache: InversionCache | None = None,
    ) -> None:
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.unet = unet
        self.controlnet = controlnet
        self.scheduler = scheduler
        self.model_info = dict(model_info or {})
        self._pose_detector = pose_detector
        self._segmenter = segmenter
        self.inversion_cache = inversion_cache
        self.memory_budget_bytes: int | None = None
        """Plan every job for this much device memory, weights included (None: the device's free memory
        on CUDA, no plan on the CPU)."""
        self.weight_placement = WeightPlacement({})
        for module in (vae, text_encoder, unet, controlnet):
            module.requires_grad_(False)
            module.eval()
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------------------------------
    # Loading
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        base: str | Path = DEFAULT_BASE,
        controlnet: str | Path | None = DEFAULT_CONTROLNET,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        variant: str | None = None,
        local_files_only: bool = False,
        cache_dir: str | Path | None = None,
        pose_detector: str | object | None = "auto",
        segmenter: str | object | None = "auto",
        inversion_cache: InversionCache | None = None,
        channels_last: bool = False,
        compile: bool = False,
    ) -> PoseAnimator:
        """Load SD-1.5 components from ``base`` and the OpenPose ControlNet from ``controlnet``.

        Both accept a hub id or a local directory (diffusers layout). ``controlnet=None`` looks for a
        ``controlnet/`` folder inside ``base`` (the layout ``make-tiny-model`` writes). The DDIM
        scheduler is built from the base model's scheduler config.

        Speed switches: ``channels_last`` (NHWC convolutions, helps tensor-core GPUs) and ``compile``
        (``torch.compile`` of U-Net and ControlNet; CUDA only, first calls pay the compilation).
        """
        from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if dtype is None:
            dtype = torch.float16 if device.type == "cuda" else torch.float32
        base = str(base)
        own = Path(base) / "controlnet"
        if controlnet is None or (controlnet == DEFAULT_CONTROLNET and (own / "config.json").is_file()):
            # A local pipeline directory with its own controlnet/ (what make-tiny-model and
            # make-random-model write) uses it rather than reaching for the hub's default.
            controlnet = str(own)
        common = {
            "local_files_only": local_files_only,
            "cache_dir": None if cache_dir is None else str(cache_dir),
        }
        started = time.perf_counter()
        scheduler = DDIMScheduler.from_pretrained(base, subfolder="scheduler", **common)
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer", **common)
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", dtype=dtype, **common)
        vae = AutoencoderKL.from_pretrained(
            base, subfolder="vae", torch_dtype=dtype, variant=variant, **common
        )
        unet = UNet2DConditionModel.from_pretrained(
            base, subfolder="unet", torch_dtype=dtype, variant=variant, **common
        )
        control = ControlNetModel.from_pretrained(str(controlnet), torch_dtype=dtype, **common)
        if compile and device.type != "cuda":
            raise InvalidInput("compile=True is for CUDA devices; the CPU path runs eagerly")
        if channels_last:
            unet.to(memory_format=torch.channels_last)
            control.to(memory_format=torch.channels_last)
        random_weights = is_random_weights(base)
        info = {
            "base": base,
            "controlnet": str(controlnet),
            "random_weights": random_weights,
            "dtype": str(dtype).removeprefix("torch."),
            "device": str(device),
            "channels_last": channels_last,
            "compiled": compile,
            "load_seconds": None,
        }
        animator = cls(
            vae=vae.to(device),
            text_encoder=text_encoder.to(device),
            tokenizer=tokenizer,
            unet=unet.to(device),
            controlnet=control.to(device),
            scheduler=scheduler,
            pose_detector=pose_detector,
            segmenter=segmenter,
            model_info=info,
            inversion_cache=inversion_cache,
        )
        if compile:
            animator.compile()
        info["load_seconds"] = round(time.perf_counter() - started, 3)
        return animator

    def compile(self, **options: Any) -> None:
        """``torch.compile`` the U-Net and the ControlNet, each with a compiled-code cache of its own
        (``engine.method.compiled``); ``options`` go to ``torch.compile`` (default ``dynamic=True``:
        one graph for every batch size above 1). The first calls of each kind pay the compilation."""
        options.setdefault("dynamic", True)
        compile_models({"unet": self.unet, "controlnet": self.controlnet}, **options)
        self.model_info["compiled"] = True

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    # ------------------------------------------------------------------------------------------
    # Helpers
    # ------------------------------------------------------------------------------------------
    def check_inputs(
        self,
        image: Image.Image,
        target_poses: PoseSequence,
        prompt: str,
        config: AnimateConfig,
        *,
        source_pose: Pose | None = None,
        mask: Image.Image | None = None,
        subject_words: Sequence[str] | None = None,
    ) -> None:
        """Everything that can be refused before a model runs (the torch-free rules of
        ``engine.inputs.rules``, then what needs the tokenizer and scheduler)."""
        if not isinstance(image, Image.Image):
            raise InvalidInput("image must be a PIL image")
        check_image_size(*image.size)
        if not isinstance(target_poses, PoseSequence) or len(target_poses) == 0:
            raise InvalidInput("target_poses must be a non-empty PoseSequence")
        check_poses_not_degenerate(target_poses.to_compact())
        if source_pose is not None and isinstance(source_pose, Pose):
            check_poses_not_degenerate(PoseSequence([source_pose]).to_compact())
        check_prompt(prompt)
        check_subject_words(prompt, subject_words)
        if mask is not None:
            if not isinstance(mask, Image.Image):
                raise InvalidInput("mask must be a PIL image")
            check_mask(mask_array(mask))
        n_tokens = len(self.tokenizer(prompt).input_ids)
        limit = self.tokenizer.model_max_length
        if n_tokens > limit:
            raise InvalidInput(
                f"prompt is {n_tokens} tokens; the text encoder takes at most {limit} (including start/end)"
            )
        train_steps = self.scheduler.config.num_train_timesteps
        if config.num_inference_steps > train_steps:
            raise InvalidInput(f"num_inference_steps must be <= {train_steps} for this scheduler")
        transition = config.transition_frames if config.use_pata else 0
        check_output_frames(1 + transition + len(target_poses), config.max_frames)

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (cond, uncond), each (1, 77, D) in the model dtype. The null embedding stays fixed."""
        ids = self.tokenizer(
            [prompt, ""],
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        embeds = self.text_encoder(ids)[0].to(self.dtype)
        return embeds[:1], embeds[1:]

    def prepare_image(self, image: Image.Image, config: AnimateConfig) -> Image.Image:
        """Cover-resize and centre-crop to the output size; transparent pixels composited on white."""
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(canvas, rgba)
        image = image.convert("RGB")
        size = (config.width, config.height)
        return ImageOps.fit(image, size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))

    @torch.no_grad()
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """RGB image -> Z_0 (1, 4, h, w) float32 (posterior mean, scaled)."""
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        latent = self.vae.encode(x.to(self.device, self.dtype)).latent_dist.mean
        return latent.float() * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> list[Image.Image]:
        """(B, 4, h, w) -> B RGB images."""
        x = self.vae.decode((latents / self.vae.config.scaling_factor).to(self.dtype)).sample
        _check_finite("encoding", decoded_frames=x)
        x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(frame) for frame in x]

    def resolve_source_pose(self, image: Image.Image, source_pose: Pose | None) -> tuple[Pose, str]:
        """The source pose in the ORIGINAL image's pixel frame, and where it came from."""
        if source_pose is not None:
            if not isinstance(source_pose, Pose):
                raise InvalidInput("source_pose must be a Pose")
            return source_pose.to_canvas(*image.size), "client"
        detector = self._resolve_backend("_pose_detector", get_pose_detector)
        if detector is None:
            raise InvalidInput(f"no source_pose given and {SOURCE_POSE_HINT}")
        pose = detector.detect(image.convert("RGB"))
        if pose is None or int(pose.visible.sum()) < 2:
            raise InvalidInput(
                f"the {detector.name} pose detector found no person in the image; send `source_pose` "
                "(OpenPose JSON or the compact form) instead"
            )
        return pose, f"detector:{detector.name}"

    def build_pose_sequence(
        self, source: Pose, target_poses: PoseSequence, config: AnimateConfig
    ) -> PoseSequence:
        """PATA (alignment + transition; bone retargeting with ``config.retarget == "bones"``), or the
        raw targets on the output canvas when disabled; then only the hands/face ``config.parts``
        keeps, so the poses returned (and written to ``poses.json``) are exactly what is drawn."""
        w, h = config.width, config.height
        if config.use_pata:
            poses = align_poses(
                source, target_poses, config.transition_frames, width=w, height=h, retarget=config.retarget
            )
        else:
            poses = PoseSequence([source.to_canvas(w, h), *(p.to_canvas(w, h) for p in target_poses)])
        hands, face = part_flags(config.parts)
        return poses.with_parts(hands=hands, face=face)

    def render_poses(self, poses: PoseSequence, config: AnimateConfig) -> torch.Tensor:
        """-> (N+1, 3, H, W) uint8 on the CPU (moved to the device a chunk at a time)."""
        frames = [np.asarray(render_pose(p, config.width, config.height)) for p in poses]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()

    def source_mask(
        self, image: Image.Image, fitted: Image.Image, mask: Image.Image | None, config: AnimateConfig
    ) -> tuple[np.ndarray | None, str]:
        """M_0 at output resolution (or None: from cross-attention later) and its provenance."""
        w, h = config.width, config.height
        if mask is not None:
            return fit_mask(mask, w, h), "client"
        alpha = alpha_mask(image, w, h)
        if alpha is not None:
            return alpha, "alpha"
        segmenter = self._resolve_backend("_segmenter", get_segmenter)
        if segmenter is not None:
            probability = segmenter.segment(fitted)
            found = probability >= 0.5
            if found.any() and not found.all():
                return found, f"segmenter:{segmenter.name}"
        return None, "cross_attention"

    def _resolve_backend(self, attr: str, factory: Callable[[str], object | None]) -> object | None:
        """Backends given by name are created on first use (mediapipe is slow to import) and kept."""
        backend = getattr(self, attr)
        if isinstance(backend, str) or backend is None:
            backend = factory(backend or "none")
            setattr(self, attr, backend)
        return backend

    # ------------------------------------------------------------------------------------------
    # The method
    # ------------------------------------------------------------------------------------------
    def animate(
        self,
        image: Image.Image,
        target_poses: PoseSequence,
        prompt: str,
        *,
        source_pose: Pose | None = None,
        mask: Image.Image | None = None,
        subject_words: Sequence[str] | None = None,
        config: AnimateConfig | None = None,
        on_progress: ProgressCallback | None = None,
        should_cancel: CancelCheck | None = None,
        on_frame: FrameSink | None = None,
        keep_frames: bool = True,
        on_step: StepCallback | None = None,
    ) -> AnimationResult:
        """Animate ``image`` along ``target_poses``.

        Returns ``1 + t + M`` frames (t transition frames when PATA is on); frame 0 reconstructs the
        source. ``on_progress(stage, fraction)`` is called through ``inverting``, ``optimizing``,
        ``sampling`` and ``encoding`` (VAE decoding, handing frames to ``on_frame``);
        ``should_cancel()`` is polled between steps and raises ``AnimationCancelled``;
        ``on_step(stage, done, total)`` reports the same in units of work (denoising steps, frames).
        """
        config = config or AnimateConfig()
        # 1. Check inputs (no model call before this passes)
        self.check_inputs(
            image,
            target_poses,
            prompt,
            config,
            source_pose=source_pose,
            mask=mask,
            subject_words=subject_words,
        )
        self.weight_placement.restore()  # weights a failed job left offloaded come back first
        words = list(subject_words or [])
        subject = subject_token_indices(self.tokenizer, prompt, words) if words else None
        if config.seed is not None:
            torch.manual_seed(config.seed)
        tracker = StageTracker(on_progress, should_cancel, on_step, device_synchronizer(self.device))

        # 2. Poses: source pose (client or detector) and PATA
        pose_in_image, pose_source = self.resolve_source_pose(image, source_pose)
        fitted = self.prepare_image(image, config)
        source = pose_in_image.to_canvas(config.width, config.height)
        poses = self.build_pose_sequence(source, target_poses, config)
        pose_pixels = self.render_poses(poses, config)

        # 3. Source mask for MGDM
        use_masks = config.use_dcam and config.use_mgdm
        mask_array, mask_source = (
            self.source_mask(image, fitted, mask, config) if use_masks else (None, "none")
        )

        # 4. Prompt and schedule
        cond, uncond = self.encode_prompt(prompt)
        schedule = DDIMSchedule.from_scheduler(self.scheduler, config.num_inference_steps)
        denoiser = ControlledDenoiser(
            self.unet, self.controlnet, schedule, config.controlnet_conditioning_scale
        )

        # 5. Memory plan: per-stage chunks and checkpointing from the measured memory model
        latent_hw = (config.height // self.vae_scale_factor, config.width // self.vae_scale_factor)
        modules = {
            "unet": self.unet,
            "controlnet": self.controlnet,
            "vae": self.vae,
            "text_encoder": self.text_encoder,
        }
        frame_plan = plan_frame_batches(
            modules,
            self.device,
            latent_hw,
            pose_pixels.shape[0] - 1,
            steps=config.num_inference_steps,
            checkpointing=config.gradient_checkpointing,
            use_pacm=config.use_pacm,
            frame_batch_size=config.frame_batch_size,
            budget_bytes=self.memory_budget_bytes,
        )
        self.weight_placement = WeightPlacement(modules, self.device, frame_plan.offloaded)
        run_config = config.replace(gradient_checkpointing=frame_plan.checkpointing)
        if config.frame_batch_size:  # one chunk size for every stage, halved together on OOM
            shared = FrameBatcher(config.frame_batch_size, counter=denoiser.counter)
            batchers = dict.fromkeys(frame_plan.sizes, shared)
        else:
            batchers = {
                stage: FrameBatcher(size, counter=denoiser.counter)
                for stage, size in frame_plan.sizes.items()
            }

        # 6. PACM, source side: DDIM inversion (w = 1) and pose-aware inversion (Alg. 1 lines 1-2),
        #    reused from the cache when the same avatar was inverted with the same settings
        cache_key = None
        source_inv = None
        if self.inversion_cache is not None:
            cache_key = inversion_cache_key(fitted, prompt, source, self.model_info, config)
            cached = self.inversion_cache.get(cache_key)
            source_inv = None if cached is None else cached.to(self.device)
        if source_inv is None:
            source_pose_image = self._to_device(pose_pixels[:1])
            z0 = self.encode_image(fitted)
            self.weight_placement.enter("inverting")
            source_inv = self.invert_source(
                denoiser, z0, cond, uncond, source_pose_image, run_config, tracker
            )
            _check_finite("inverting", latents=source_inv.latents, embeddings=source_inv.embeddings)
            if cache_key is not None:
                self.inversion_cache.put(cache_key, source_inv)
        else:
            tracker.start("inverting", 1)
            tracker.advance()

        # 7. PACM, per frame: pose-aware embedding optimisation (Alg. 1 lines 3-9), frames batched
        latent_hw = tuple(source_inv.latents.shape[-2:])
        self.weight_placement.enter("optimizing")
        frame_embeddings = self.optimise_frames(
            denoiser, source_inv, uncond, pose_pixels, batchers["optimizing"], run_config, tracker
        )
        _check_finite("optimizing", embeddings=frame_embeddings)

        # 8. Generation with DCAM/MGDM in the up-blocks
        masks = None
        if use_masks:
            masks = self.initial_masks(poses, mask_array, latent_hw, config)
            masks = MaskTracker(
                masks,
                source_fixed=mask_array is not None,
                subject_tokens=subject,
                candidates=candidate_tokens(self.tokenizer, prompt),
                threshold=config.mask_threshold,
                ratio=config.subject_token_ratio,
            )
        self.weight_placement.enter("sampling")
        latents = self.sample(
            denoiser,
            source_inv,
            frame_embeddings,
            cond,
            uncond,
            pose_pixels,
            masks,
            batchers["sampling"],
            config,
            tracker,
        )

        _check_finite("sampling", latents=latents)

        # 9. Decode
        self.weight_placement.enter("encoding")
        frames = self.decode_frames(latents, batchers["encoding"], tracker, on_frame, keep_frames)
        self.weight_placement.restore()
        tracker.finish()

        chosen = masks.subject_tokens if masks is not None and masks.subject_tokens else []
        ids = self.tokenizer(
            prompt, padding="max_length", max_length=self.tokenizer.model_max_length
        ).input_ids
        return AnimationResult(
            frames=frames,
            poses=poses,
            timings=dict(tracker.timings),
            unet_evals=denoiser.counter.as_dict(),
            pose_source=pose_source,
            mask_source=mask_source,
            subject_tokens=self.tokenizer.convert_ids_to_tokens([ids[i] for i in chosen]),
            inversion_losses=source_inv.final_losses,
            model=dict(self.model_info),
            cache_hit=cache_key is not None and denoiser.counter.forward["inverting"] == 0,
            frame_batch_size=batchers["sampling"].size,
            oom_backoffs=sum(b.shrinks for b in {id(b): b for b in batchers.values()}.values()),
            memory_plan={
                **frame_plan.record,
                "chunks_at_end": {stage: b.size for stage, b in batchers.items()},
                "checkpointing": frame_plan.checkpointing,
            },
        )

    def invert_source(
        self,
        denoiser: ControlledDenoiser,
        z0: torch.Tensor,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        pose: torch.Tensor,
        config: AnimateConfig,
        tracker: StageTracker,
    ) -> SourceInversion:
        steps = config.num_inference_steps
        tracker.start("inverting", steps * (2 if config.use_pacm else 1))
        denoiser.counter.stage = "inverting"
        latents = ddim_inversion(denoiser, z0, cond, pose, tracker)
        if not config.use_pacm:
            return SourceInversion(latents, None, None, [])
        with self._checkpointing(config.gradient_checkpointing):
            return pose_aware_inversion(
                denoiser,
                latents,
                cond,
                uncond,
                pose,
                guidance_scale=config.guidance_scale,
                inner_steps=config.inversion_inner_steps,
                lr=config.inversion_lr,
                early_stop=config.inversion_early_stop,
                tracker=tracker,
            )

    def optimise_frames(
        self,
        denoiser: ControlledDenoiser,
        source: SourceInversion,
        uncond: torch.Tensor,
        pose_pixels: torch.Tensor,
        batcher: FrameBatcher,
        config: AnimateConfig,
        tracker: StageTracker,
    ) -> torch.Tensor | None:
        """-> (T, N, 77, D) on the CPU in the model dtype (``[T - t, i - 1] = Otilde_{i,t}``), or None.

        Kept on the CPU so device memory does not grow with the sequence length.
        """
        if not config.use_pacm:
            return None
        n_frames = pose_pixels.shape[0] - 1
        tracker.start("optimizing", config.num_inference_steps * n_frames)
        denoiser.counter.stage = "optimizing"
        store = torch.empty(
            (config.num_inference_steps, n_frames, *uncond.shape[1:]), dtype=self.dtype, device="cpu"
        )

        def work(chunk: list[int]) -> None:
            embeddings = optimise_pose_embeddings(
                denoiser,
                source,
                uncond,
                self._to_device(pose_pixels[chunk]),
                guidance_scale=config.guidance_scale,
                inner_steps=config.pose_opt_inner_steps,
                lr=config.pose_opt_lr,
                tracker=tracker,
            )
            store[:, chunk[0] - 1 : chunk[-1]] = embeddings.cpu()

        with self._checkpointing(config.gradient_checkpointing):
            batcher.run(range(1, n_frames + 1), work)
        return store

    @contextlib.contextmanager
    def _checkpointing(self, enabled: bool) -> Iterator[None]:
        """Gradient checkpointing for the optimisation passes only; restored afterwards."""
        if not enabled:
            yield
            return
        models = [m for m in (self.unet, self.controlnet) if not m.is_gradient_checkpointing]
        for m in models:
            m.enable_gradient_checkpointing()
        try:
            yield
        finally:
            for m in models:
                m.disable_gradient_checkpointing()

    def initial_masks(
        self,
        poses: PoseSequence,
        source_mask: np.ndarray | None,
        latent_hw: tuple[int, int],
        config: AnimateConfig,
    ) -> torch.Tensor:
        """(N+1, h, w) float {0,1}: the source mask (or p_s's drawn mask) and each frame's pose mask."""
        drawn = np.stack([pose_mask(p, config.width, config.height) for p in poses])
        if source_mask is not None:
            drawn[0] = source_mask
        return to_latent(drawn, latent_hw).to(self.device)

    @torch.no_grad()
    def sample(
        self,
        denoiser: ControlledDenoiser,
        source: SourceInversion,
        frame_embeddings: torch.Tensor | None,
        cond: torch.Tensor,
        uncond: torch.Tensor,
        pose_pixels: torch.Tensor,
        masks: MaskTracker | None,
        batcher: FrameBatcher,
        config: AnimateConfig,
        tracker: StageTracker,
    ) -> torch.Tensor:
        """CFG sampling of all frames from ``Z_T`` (Sec. 2.6 of DESIGN). -> (N+1, 4, h, w) float32.

        Frame 0 uses ``{O_{s,t}}`` and p_s, frame i ``{Otilde_{i,t}}`` and p_i. Frames run in chunks
        of ``frame_batch_size`` in frame order; the controller carries frame 0's and the previous
        chunk's last frame's keys/values across chunk boundaries.
        """
        schedule = denoiser.schedule
        T = schedule.num_steps
        total = pose_pixels.shape[0]
        z = source.latents[T : T + 1].expand(total, -1, -1, -1).clone()
        latent_hw = tuple(z.shape[-2:])
        controller = AttentionController(latent_hw=latent_hw, batch_size=2)
        if masks is not None:
            factors = config.mask_map_downsample
            controller.record_grids = {downsampled_grid(latent_hw, f) for f in factors}
            controller.map_grid = downsampled_grid(latent_hw, min(factors))
            controller.set_masks(masks.masks)
            controller.recording = True
        tracker.start("sampling", T)
        denoiser.counter.stage = "sampling"
        with install_processors(
            self.unet, controller, config.lambdas, use_dcam=config.use_dcam, record_maps=masks is not None
        ):
            for t in range(T, 0, -1):

                def work(chunk: list[int], t: int = t) -> None:
                    tracker.check()
                    text = self._frame_text(chunk, t, T, source, frame_embeddings, cond)
                    pose = self._to_device(pose_pixels[chunk])
                    z_chunk = z[chunk]
                    controller.begin_batch(chunk)
                    eps = denoiser(
                        torch.cat([z_chunk, z_chunk]),
                        t,
                        torch.cat([uncond.expand(len(chunk), -1, -1), text]),
                        torch.cat([pose, pose]),
                    )
                    eps_uncond, eps_cond = eps.chunk(2)
                    z[chunk] = schedule.step(z_chunk, guided(eps_uncond, eps_cond, config.guidance_scale), t)

                # Chunks run in frame order (frame 0 first); a retried chunk overwrites what it cached.
                batcher.run(range(total), work)
                controller.end_step()
                if masks is not None:
                    maps = controller.pop_maps()
                    if not maps and controller.record_grids:
                        controller.record_grids = set()  # no layer at the chosen grids: use every layer
                    masks.update(maps)
                    controller.set_masks(masks.masks)
                tracker.advance()
        return z

    def _frame_text(
        self,
        frames: list[int],
        t: int,
        T: int,
        source: SourceInversion,
        frame_embeddings: torch.Tensor | None,
        cond: torch.Tensor,
    ) -> torch.Tensor:
        """Conditional text embedding of each frame at step t. -> (len(frames), 77, D)."""
        if source.embeddings is None or frame_embeddings is None:
            return cond.expand(len(frames), -1, -1)
        rows = []
        for f in frames:
            rows.append(
                source.embeddings[T - t] if f == 0 else frame_embeddings[T - t, f - 1].to(self.device)
            )
        return torch.stack(rows)

    def decode_frames(
        self,
        latents: torch.Tensor,
        batcher: FrameBatcher,
        tracker: StageTracker,
        on_frame: FrameSink | None,
        keep_frames: bool,
    ) -> list[Image.Image]:
        """VAE-decode in chunks and hand each frame on in order; frames are kept only if asked."""
        tracker.start("encoding", latents.shape[0])
        frames: list[Image.Image] = []

        def work(chunk: list[int]) -> None:
            tracker.check()
            decoded = self.decode_latents(latents[chunk])  # decode the whole chunk before handing on
            for index, frame in zip(chunk, decoded, strict=True):
                if on_frame is not None:
                    on_frame(index, frame)
                if keep_frames:
                    frames.append(frame)
                tracker.advance()

        batcher.run(range(latents.shape[0]), work)
        return frames

    def _to_device(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> float in [0, 1] on the device (the ControlNet's input range)."""
        return pixels.to(self.device).float().div_(255.0)
