"""Device memory per stage, measured, and the plan that makes a job fit (issue 23).

Two halves:

- **Measurement** (needs torch): each stage of the method is run once on PyTorch's ``meta`` device
  (nothing allocated, shapes only, seconds for the full-size SD-1.5 U-Net + ControlNet) under
  ``LiveStorageTracker``, a ``TorchDispatchMode`` that counts the bytes of every storage an operator
  creates until Python frees it: activations kept for backward, gradients, transients, DCAM
  references, latents. Weights and views are not counted (a weight exists before the mode starts; a
  view shares its base's storage). The stage code is the engine's own
  (``optimise_pose_embeddings``, ``ControlledDenoiser`` with the DCAM/MGDM processors installed,
  ``vae.decode``); only SDPA is routed to the kernel CUDA would pick (memory-efficient attention:
  an O(L) log-sum-exp instead of the O(L^2) matrix of the math kernel). Running each stage at chunks
  1 and 2 gives ``peak(chunk) = base + chunk * per_sample``; the stages are linear in the batch.
- **Planning** (torch-free, in ``engine.inputs.memoryplan`` so the API can predict with it):
  ``plan_job`` picks, per stage, the largest chunk that fits the memory it is given, balanced
  over the frames, gradient checkpointing for the optimisation passes only when no chunk fits without
  it, and weight offload only when no plan fits with all the weights on the device.

Tensors that grow with T but not with the chunk (the (T, chunk, 77, D) embeddings the optimisation
returns) are added analytically: the measurement runs one denoising step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engine.inputs.memoryplan import (
    KERNELS,
    MODULES,
    STAGES,
    TABLE_PATH,
    MemoryModel,
    StageMemory,
    interpolate,
    load_table,
)


# ----------------------------------------------------------------------------------------------
# Measurement (torch)
# ----------------------------------------------------------------------------------------------
def _torch():
    import torch

    return torch


class LiveStorageTracker:
    """Counts the bytes of storages created under it while they are alive; keeps the peak.

    A ``TorchDispatchMode`` (created on first use so this module stays importable without torch):
    after every operator, each output whose storage is new (not an input's: views and in-place
    results are not new) is counted until its storage is freed (a weakref finalizer). Works on the
    meta device (no memory exists) and on the CPU; the same bytes CUDA's caching allocator would be
    asked for, before its 512-byte rounding.
    """

    def __new__(cls, *args, **kwargs):
        return _tracker_class()(*args, **kwargs)


_TRACKER = None


def _tracker_class():
    global _TRACKER
    if _TRACKER is not None:
        return _TRACKER
    import weakref

    torch = _torch()
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten
    from torch.utils.weak import WeakIdKeyDictionary

    class _LiveStorageTracker(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = WeakIdKeyDictionary()
            self.current = 0
            self.peak = 0
            self.ops: dict[str, int] = {}

        def _free(self, nbytes: int) -> None:
            self.current -= nbytes

        def reset_peak(self) -> None:
            self.peak = self.current

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {
                id(t.untyped_storage())
                for t in tree_flatten((args, kwargs))[0]
                if isinstance(t, torch.Tensor)
            }
            for t in tree_flatten(out)[0]:
                if not isinstance(t, torch.Tensor):
                    continue
                storage = t.untyped_storage()
                if id(storage) in inputs or storage in self.live:
                    continue
                nbytes = storage.nbytes()
                self.live[storage] = nbytes
                weakref.finalize(storage, self._free, nbytes)
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            return out

    _TRACKER = _LiveStorageTracker
    return _TRACKER


@contextlib.contextmanager
def sdpa_kernel(kernel: str) -> Iterator[None]:
    """Route ``F.scaled_dot_product_attention`` to ``kernel`` on any device (the meta device has no
    backend choice of its own): ``efficient`` (CUDA's pick for these shapes, with a boolean mask
    turned into an additive bias of the mask's own shape, as SDPA does) or ``math``."""
    torch = _torch()
    import torch.nn.functional as F

    if kernel == "native":  # the device's own choice (real tensors)
        yield
        return
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS} or 'native'")
    original = F.scaled_dot_product_attention

    def efficient(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        bias = None
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                bias = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill_(
                    attn_mask.logical_not(), float("-inf")
                )
            else:
                bias = attn_mask
            bias = bias.expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
        return torch.ops.aten._scaled_dot_product_efficient_attention(
            query, key, value, bias, grad, dropout_p, is_causal, scale=scale
        )[0]

    def math_kernel(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kw):
        return torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale
        )[0]

    F.scaled_dot_product_attention = efficient if kernel == "efficient" else math_kernel
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def _one_step_schedule():
    torch = _torch()
    from engine.method.ddim import DDIMSchedule

    return DDIMSchedule(
        timesteps=torch.tensor([500]),
        alphas=torch.tensor([0.3], dtype=torch.float64),
        alphas_prev=torch.tensor([0.35], dtype=torch.float64),
        prediction_type="epsilon",
    )


def measure_stage(
    modules: dict,
    stage: str,
    chunk: int,
    latent_hw: tuple[int, int],
    *,
    kernel: str = "efficient",
    checkpointing: bool = False,
    use_masks: bool = True,
) -> int:
    """Peak bytes above the weights of one stage at ``chunk`` frames, on the modules' device (meta
    for the full size; the CPU for the check against real runs). One denoising step, one inner
    iteration: the peak of a step is the peak of the stage."""
    torch = _torch()
    from engine.method.attention import AttentionController, install_processors
    from engine.method.denoiser import ControlledDenoiser
    from engine.method.pacm import SourceInversion, optimise_pose_embeddings

    unet, controlnet, vae = modules["unet"], modules["controlnet"], modules["vae"]
    device, dtype = unet.device, unet.dtype
    h, w = latent_hw
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    dim = unet.config.cross_attention_dim
    schedule = _one_step_schedule()
    denoiser = ControlledDenoiser(unet, controlnet, schedule)
    tracker = LiveStorageTracker()
    with contextlib.ExitStack() as stack:
        stack.enter_context(sdpa_kernel(kernel))
        if checkpointing:
            for m in (unet, controlnet):
                m.enable_gradient_checkpointing()
                stack.callback(m.disable_gradient_checkpointing)
        if stage in ("inverting", "optimizing"):
            frames = 1 if stage == "inverting" else chunk
            with tracker:
                source = SourceInversion(
                    latents=torch.zeros(2, 4, h, w, device=device),
                    embeddings=torch.zeros(1, 77, dim, device=device, dtype=dtype),
                    reconstruction=None,
                    final_losses=[],
                )
                uncond = torch.zeros(1, 77, dim, device=device, dtype=dtype)
                poses = torch.zeros(frames, 3, h * scale, w * scale, device=device)
                out = optimise_pose_embeddings(
                    denoiser, source, uncond, poses, guidance_scale=7.5, inner_steps=1, lr=1e-3
                )
                if stage == "inverting":  # then the [uncond, cond] advance of Zbar
                    with torch.no_grad():
                        z = source.latents[1:2]
                        denoiser(torch.cat([z, z]), 1, torch.cat([uncond, out[0]]), torch.cat([poses, poses]))
                del out
            return tracker.peak
        if stage == "sampling":
            controller = AttentionController(latent_hw=latent_hw, batch_size=2)
            masks = torch.ones(chunk + 1, h, w, device=device) if use_masks else None
            controller.set_masks(masks)
            with (
                torch.no_grad(),
                install_processors(unet, controller, (0.7, 0.15, 0.15), use_dcam=True, record_maps=use_masks),
                tracker,
            ):
                controller.recording = use_masks
                z = torch.zeros(chunk + 1, 4, h, w, device=device)
                text = torch.zeros(1, 77, dim, device=device, dtype=dtype)
                poses = torch.zeros(chunk + 1, 3, h * scale, w * scale, device=device)
                # frame 0 first (its references stay for the next chunk), then a chunk of `chunk`
                for frames in ([0], list(range(1, chunk + 1))):
                    controller.begin_batch(frames)
                    zc = z[frames]
                    eps = denoiser(
                        torch.cat([zc, zc]),
                        1,
                        text.expand(2 * len(frames), -1, -1),
                        torch.cat([poses[frames], poses[frames]]),
                    )
                    z[frames] = schedule.step(zc, eps.chunk(2)[1], 1)
                    del eps, zc
                controller.pop_maps()
                controller.end_step()
            return tracker.peak
        if stage == "encoding":
            with torch.no_grad(), tracker:
                latents = torch.zeros(chunk, 4, h, w, device=device)
                x = vae.decode(latents.to(dtype)).sample
                x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                del x
            return tracker.peak
    raise ValueError(f"unknown stage {stage!r}")


def module_weights(modules: dict) -> dict[str, int]:
    """Bytes of each module's parameters (``MODULES`` present in ``modules``)."""
    return {
        name: sum(p.numel() * p.element_size() for p in modules[name].parameters())
        for name in MODULES
        if name in modules
    }


def weights_bytes(modules: dict) -> int:
    return sum(module_weights(modules).values())


def measure_model(
    modules: dict,
    latent_hw: tuple[int, int],
    *,
    kernel: str = "efficient",
    checkpointing: bool = True,
) -> MemoryModel:
    """Fit ``base + chunk * per_sample`` per stage from chunks 1 and 2 (and the checkpointed
    optimisation pass with ``checkpointing``). The source inversion is the optimisation pass at one
    frame (the same code path: a no-grad unconditional call, one conditional forward + backward, an
    Adam step; its batch-2 advance of Zbar is a smaller no-grad call), so it is not run twice."""
    unet = modules["unet"]

    def fit(stage: str, ckpt: bool) -> StageMemory:
        one = measure_stage(modules, stage, 1, latent_hw, kernel=kernel, checkpointing=ckpt)
        two = measure_stage(modules, stage, 2, latent_hw, kernel=kernel, checkpointing=ckpt)
        return StageMemory(base=2 * one - two, per_sample=two - one)

    fitted = {s: fit(s, False) for s in ("optimizing", "sampling", "encoding")}
    fitted["inverting"] = StageMemory(base=fitted["optimizing"].peak(1), per_sample=0)
    ckpt = {}
    if checkpointing:
        ckpt["optimizing"] = fit("optimizing", True)
        ckpt["inverting"] = StageMemory(base=ckpt["optimizing"].peak(1), per_sample=0)
    fitted = {s: fitted[s] for s in STAGES}
    element = unet.dtype.itemsize if hasattr(unet.dtype, "itemsize") else 2
    return MemoryModel(
        latent_hw=tuple(latent_hw),
        dtype=str(unet.dtype).removeprefix("torch."),
        kernel=kernel,
        weights=weights_bytes(modules),
        stages=fitted,
        checkpointed=ckpt,
        embedding_bytes=77 * unet.config.cross_attention_dim * element,
        module_weights=module_weights(modules),
    )


def meta_replicas(modules: dict) -> dict:
    """The same architectures on the meta device (from their configs: nothing is copied or allocated),
    in the same dtype, for measuring a loaded model's memory."""
    torch = _torch()
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    dtype = modules["unet"].dtype
    with torch.device("meta"):
        out = {
            "unet": UNet2DConditionModel.from_config(modules["unet"].config),
            "controlnet": ControlNetModel.from_config(modules["controlnet"].config),
            "vae": AutoencoderKL.from_config(modules["vae"].config),
        }
    for m in out.values():
        m.to(dtype).requires_grad_(False).eval()
    return out


def is_sd15(modules: dict) -> bool:
    """The architecture the table was measured on (SD-1.5 U-Net, OpenPose ControlNet, SD VAE)."""
    unet, control = modules["unet"].config, modules["controlnet"].config
    return (
        tuple(unet.block_out_channels) == (320, 640, 1280, 1280)
        and unet.cross_attention_dim == 768
        and unet.layers_per_block == 2
        and tuple(control.conditioning_embedding_out_channels) == (16, 32, 96, 256)
        and tuple(modules["vae"].config.block_out_channels) == (128, 256, 512, 512)
    )


_MODEL_CACHE: dict[tuple, MemoryModel] = {}


def model_for(modules: dict, latent_hw: tuple[int, int], kernel: str = "efficient") -> MemoryModel:
    """``measure_model`` of a loaded model's architecture on meta replicas, cached per process
    (architecture, dtype, latent size, kernel); weights counted from the loaded modules."""
    unet = modules["unet"]
    key = (
        repr(sorted(unet.config.items())),
        repr(sorted(modules["controlnet"].config.items())),
        str(unet.dtype),
        tuple(latent_hw),
        kernel,
    )
    if key not in _MODEL_CACHE:
        element = unet.dtype.itemsize
        if is_sd15(modules) and element == 2 and kernel == "efficient" and TABLE_PATH.is_file():
            measured = interpolate(load_table(), latent_hw)  # float16 and bfloat16: the same bytes
        else:
            measured = measure_model(meta_replicas(modules), latent_hw, kernel=kernel)
        _MODEL_CACHE[key] = MemoryModel(
            latent_hw=measured.latent_hw,
            dtype=measured.dtype,
            kernel=measured.kernel,
            weights=weights_bytes(modules),
            stages=measured.stages,
            checkpointed=measured.checkpointed,
            embedding_bytes=measured.embedding_bytes,
            module_weights=module_weights(modules),
        )
    return _MODEL_CACHE[key]


def device_available_bytes(device) -> int:
    """Free memory a job may use on a CUDA device: the driver's free memory plus what PyTorch's
    caching allocator holds but does not use (``mem_get_info`` counts that cache as taken)."""
    torch = _torch()
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(0, cached))


__all__ = [
    "LiveStorageTracker",
    "device_available_bytes",
    "measure_model",
    "measure_stage",
    "model_for",
    "module_weights",
    "sdpa_kernel",
    "weights_bytes",
]
