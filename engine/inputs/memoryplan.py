"""The memory plan of a job, torch-free (issue 23): the measured per-stage memory model and the
planner that picks chunks, checkpointing and weight offload to fit a memory budget.

``engine.method.memory`` measures the model (on PyTorch's ``meta`` device) into this module's
table; the engine plans a job on its device with it, and the API (``jobs.intake``, no torch) predicts
with the same table whether a job fits the workers' cards at all.

- **Model**: per stage (``STAGES``), ``peak(chunk) = base + chunk * per_sample`` bytes above the
  weights, with and without gradient checkpointing for the optimisation passes, and the weights of
  each module (U-Net, ControlNet, VAE, text encoder).
- **Planner** (``plan_job``): per stage the largest chunk that fits, balanced over the frames (20 frames
  at most 17 per chunk -> 10 + 10, not 17 + 3); gradient checkpointing only when no chunk fits without
  it; and, when even one frame per chunk does not fit beside all the weights, **weight offload**: each
  stage keeps on the device only the modules it runs (``STAGE_MODULES``: the U-Net and the ControlNet
  for the denoising stages, the VAE for decoding) and the others wait in host memory. It never plans
  more than the memory it is given; a job that fits nowhere is reported as not fitting.

Tensors that grow with T but not with the chunk (the (T, chunk, 77, D) embeddings the optimisation
returns) are added analytically.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STAGES = ("inverting", "optimizing", "sampling", "encoding")
KERNELS = ("efficient", "math")
"""SDPA as CUDA runs it for these shapes (memory-efficient; flash keeps the same O(L) state), or the
math fallback (the (L, L) attention matrix is materialised)."""
MODULES = ("unet", "controlnet", "vae", "text_encoder")
STAGE_MODULES = {
    "inverting": ("unet", "controlnet"),
    "optimizing": ("unet", "controlnet"),
    "sampling": ("unet", "controlnet"),
    "encoding": ("vae",),
}
"""The modules each stage runs: with offload, the only ones on the device during it."""
MiB = 2**20
GiB = 2**30
CUDA_CONTEXT_BYTES = 512 * MiB
"""What a card's own CUDA context and the allocator's rounding take before any tensor (planning a
card from its size; a live device reports its free memory directly)."""
SAFETY_FRACTION = 0.05
"""Margin kept free of any plan: allocator fragmentation and kernels' workspaces."""


# ----------------------------------------------------------------------------------------------
# The model: per-stage linear fits
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageMemory:
    """Peak bytes of one stage above the weights: ``base + chunk * per_sample``."""

    base: int
    per_sample: int

    def peak(self, chunk: int) -> int:
        return self.base + chunk * self.per_sample


@dataclass(frozen=True)
class MemoryModel:
    """Measured memory of one architecture at one setting (latent size, dtype, kernel)."""

    latent_hw: tuple[int, int]
    dtype: str
    kernel: str
    weights: int
    """Bytes of the U-Net, ControlNet, VAE and text encoder weights on the device."""
    stages: dict[str, StageMemory]
    checkpointed: dict[str, StageMemory] = field(default_factory=dict)
    """``inverting`` and ``optimizing`` with gradient checkpointing."""
    embedding_bytes: int = 0
    """Bytes of one frame's text embedding at one step (77 x D x element size)."""
    module_weights: dict[str, int] = field(default_factory=dict)
    """Weights per module (``MODULES``); empty: offload cannot be planned."""

    def stage(self, name: str, checkpointing: bool = False) -> StageMemory:
        if checkpointing and name in self.checkpointed:
            return self.checkpointed[name]
        return self.stages[name]

    def peak(self, name: str, chunk: int, *, steps: int = 1, checkpointing: bool = False) -> int:
        """Peak bytes of a stage above the weights at ``chunk`` frames and T = ``steps``."""
        extra = 0
        if name in ("inverting", "optimizing"):  # the (T, chunk, 77, D) embeddings it returns
            extra = (steps - 1) * (1 if name == "inverting" else chunk) * self.embedding_bytes
        return self.stage(name, checkpointing).peak(chunk) + extra

    def resident_weights(self, stage: str, offload: bool) -> int:
        """Weights on the device during ``stage``: all of them, or with ``offload`` the stage's own."""
        if not offload or not self.module_weights:
            return self.weights
        return sum(self.module_weights.get(m, 0) for m in STAGE_MODULES[stage])

    def to_json(self) -> dict:
        out = asdict(self)
        out["latent_hw"] = list(self.latent_hw)
        return out

    @classmethod
    def from_json(cls, data: dict) -> MemoryModel:
        hw = data["latent_hw"]
        return cls(
            latent_hw=(int(hw[0]), int(hw[1])),
            dtype=data["dtype"],
            kernel=data["kernel"],
            weights=int(data["weights"]),
            stages={k: StageMemory(**v) for k, v in data["stages"].items()},
            checkpointed={k: StageMemory(**v) for k, v in data.get("checkpointed", {}).items()},
            embedding_bytes=int(data.get("embedding_bytes", 0)),
            module_weights={k: int(v) for k, v in data.get("module_weights", {}).items()},
        )


# ----------------------------------------------------------------------------------------------
# The planner
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StagePlan:
    chunk: int
    chunks: list[int]
    """Frames per chunk, balanced (sizes differ by at most one)."""
    checkpointing: bool
    peak_bytes: int
    """Predicted peak, weights included when the plan counts them."""
    offloaded: list[str] = field(default_factory=list)
    """Modules kept in host memory during this stage (offload)."""


@dataclass(frozen=True)
class Plan:
    fits: bool
    available_bytes: int
    stages: dict[str, StagePlan]
    offload: bool = False
    """Each stage keeps only its own modules on the device (``STAGE_MODULES``); the rest wait on the host."""
    reason: str = ""

    @property
    def peak_bytes(self) -> int:
        return max((s.peak_bytes for s in self.stages.values()), default=0)

    def summary(self) -> dict:
        return {
            "fits": self.fits,
            "available_bytes": self.available_bytes,
            "offload": self.offload,
            "reason": self.reason,
            "predicted_peak_bytes": self.peak_bytes,
            "stages": {
                name: {
                    "chunk": s.chunk,
                    "chunks": s.chunks,
                    "checkpointing": s.checkpointing,
                    "peak_bytes": s.peak_bytes,
                    "offloaded": s.offloaded,
                }
                for name, s in self.stages.items()
            },
        }


def balanced_chunks(frames: int, largest: int) -> list[int]:
    """Split ``frames`` into the fewest chunks of at most ``largest``, sizes within one of each other."""
    if frames <= 0:
        return []
    largest = max(1, largest)
    count = -(-frames // largest)
    small, extra = divmod(frames, count)
    return [small + 1] * extra + [small] * (count - extra)


def stage_frames(stage: str, generated: int) -> int:
    """Frames a stage runs through the models: the inversion one, the optimisation the generated
    frames, sampling and decoding those plus frame 0."""
    return {"inverting": 1, "optimizing": generated, "sampling": generated + 1, "encoding": generated + 1}[
        stage
    ]


@dataclass(frozen=True)
class _Budget:
    """What a stage may use: ``capacity`` bytes for its resident weights and its activations, and
    ``shown``, the bytes its reported peak leaves out (weights already resident on a live device)."""

    capacity: int
    shown: int


def _plan_stage(
    model: MemoryModel,
    name: str,
    frames: int,
    budget: _Budget,
    *,
    steps: int,
    max_chunk: int,
    options: list[bool],
    offload: bool,
) -> StagePlan | None:
    fixed = model.resident_weights(name, offload)
    offloaded = [m for m in MODULES if m not in STAGE_MODULES[name]] if offload else []
    for checkpointing in options:
        for chunk in range(min(max_chunk, frames), 0, -1):
            if fixed + model.peak(name, chunk, steps=steps, checkpointing=checkpointing) <= budget.capacity:
                sizes = balanced_chunks(frames, chunk)
                peak = fixed + model.peak(name, sizes[0], steps=steps, checkpointing=checkpointing)
                return StagePlan(sizes[0], sizes, checkpointing, peak - budget.shown, offloaded)
    return None


def _plan(
    model: MemoryModel,
    generated_frames: int,
    budget: _Budget,
    *,
    steps: int,
    max_chunk: int,
    allow_checkpointing: bool,
    use_pacm: bool,
    offload: bool,
) -> Plan:
    stages: dict[str, StagePlan] = {}
    fits = model.weights <= budget.capacity  # the model is loaded whole before a job
    reason = "" if fits else f"loading the weights needs {model.weights / GiB:.2f} GiB"
    for name in STAGES:
        if name in ("inverting", "optimizing") and not use_pacm:
            continue
        frames = stage_frames(name, generated_frames)
        options = [False, True] if allow_checkpointing and name in model.checkpointed else [False]
        kw = {"steps": steps, "max_chunk": max_chunk, "options": options, "offload": offload}
        chosen = _plan_stage(model, name, frames, budget, **kw)
        if chosen is None:
            fits = False
            smallest = _plan_stage(
                model,
                name,
                1,
                _Budget(2**62, budget.shown),
                **{**kw, "max_chunk": 1, "options": options[-1:]},
            )
            assert smallest is not None
            chosen = StagePlan(
                1, balanced_chunks(frames, 1), options[-1], smallest.peak_bytes, smallest.offloaded
            )
            needed = chosen.peak_bytes + budget.shown
            reason = reason or f"{name} needs {needed / GiB:.2f} GiB at one frame per chunk"
        stages[name] = chosen
    # checkpointing is one switch for both optimisation passes: use it for both if either needs it
    if any(s.checkpointing for s in stages.values()):
        for name in ("inverting", "optimizing"):
            s = stages.get(name)
            if s is not None and not s.checkpointing:
                peak = model.resident_weights(name, offload) + model.peak(
                    name, s.chunk, steps=steps, checkpointing=True
                )
                stages[name] = StagePlan(s.chunk, s.chunks, True, peak - budget.shown, s.offloaded)
    return Plan(fits=fits, available_bytes=0, stages=stages, offload=offload, reason=reason)


def plan_job(
    model: MemoryModel,
    generated_frames: int,
    available_bytes: int,
    *,
    steps: int = 50,
    weights_counted: bool = True,
    max_chunk: int = 64,
    allow_checkpointing: bool = True,
    allow_offload: bool = True,
    use_pacm: bool = True,
) -> Plan:
    """The fastest plan that fits ``available_bytes``: per stage the largest balanced chunk,
    checkpointing only where no chunk fits without it, weight offload only where no plan fits
    without it (moving modules costs host<->device copies each job).

    ``available_bytes``: memory this job may use. With ``weights_counted`` the weights must fit in it
    too (planning a card); without, they are already resident (planning on a live device, whose free
    memory no longer holds them; offloading a module frees its bytes).
    """
    usable = int(available_bytes * (1 - SAFETY_FRACTION))
    shown = 0 if weights_counted else model.weights
    budget = _Budget(usable + shown, shown)
    kw = {
        "steps": steps,
        "max_chunk": max_chunk,
        "allow_checkpointing": allow_checkpointing,
        "use_pacm": use_pacm,
    }
    plan = _plan(model, generated_frames, budget, offload=False, **kw)
    if not plan.fits and allow_offload and model.module_weights:
        offloaded = _plan(model, generated_frames, budget, offload=True, **kw)
        if offloaded.fits:
            plan = offloaded
    return Plan(
        fits=plan.fits,
        available_bytes=int(available_bytes),
        stages=plan.stages,
        offload=plan.offload,
        reason=plan.reason,
    )


def card_available_bytes(card_gb: float) -> int:
    """Memory a job may use on a card of ``card_gb`` GB (decimal, as cards are sold) before anything
    is loaded: the card less its CUDA context."""
    return int(card_gb * 1e9) - CUDA_CONTEXT_BYTES


# ----------------------------------------------------------------------------------------------
# The measured table (SD-1.5, 16-bit) and predictions from it
# ----------------------------------------------------------------------------------------------
TABLE_PATH = Path(__file__).with_name("memory_sd15.json")
"""SD-1.5 + OpenPose ControlNet measured on the meta device at several sizes (16-bit weights), written by
``python -m bench.memory --measure`` and checked against a fresh measurement by the tests."""


def load_table(path: Path = TABLE_PATH) -> list[MemoryModel]:
    return list(_load_table(path))


@functools.lru_cache(maxsize=4)
def _load_table(path: Path) -> tuple[MemoryModel, ...]:
    data = json.loads(path.read_text())
    return tuple(MemoryModel.from_json(m) for m in data["models"])


def interpolate(models: list[MemoryModel], latent_hw: tuple[int, int]) -> MemoryModel:
    """A model at ``latent_hw`` from measured ones, linear in the token count (activations are, with
    a memory-efficient attention kernel) between, or beyond, the two nearest measured sizes."""
    tokens = latent_hw[0] * latent_hw[1]
    exact = [m for m in models if tuple(m.latent_hw) == tuple(latent_hw)]
    if exact:
        return exact[0]
    ranked = sorted(models, key=lambda m: abs(m.latent_hw[0] * m.latent_hw[1] - tokens))[:2]
    if len(ranked) < 2:
        raise ValueError("interpolation needs two measured sizes")
    a, b = sorted(ranked, key=lambda m: m.latent_hw[0] * m.latent_hw[1])
    ta, tb = a.latent_hw[0] * a.latent_hw[1], b.latent_hw[0] * b.latent_hw[1]
    f = (tokens - ta) / (tb - ta)

    def mix(x: StageMemory, y: StageMemory) -> StageMemory:
        return StageMemory(
            base=max(0, round(x.base + f * (y.base - x.base))),
            per_sample=max(0, round(x.per_sample + f * (y.per_sample - x.per_sample))),
        )

    return MemoryModel(
        latent_hw=tuple(latent_hw),
        dtype=a.dtype,
        kernel=a.kernel,
        weights=a.weights,
        stages={s: mix(a.stages[s], b.stages[s]) for s in a.stages},
        checkpointed={s: mix(a.checkpointed[s], b.checkpointed[s]) for s in a.checkpointed},
        embedding_bytes=a.embedding_bytes,
        module_weights=dict(a.module_weights),
    )


def card_plan(
    card_gb: float, generated_frames: int, latent_hw: tuple[int, int], *, steps: int, use_pacm: bool = True
) -> Plan:
    """The plan of a job (SD-1.5 + OpenPose ControlNet, 16-bit weights: the GPU worker's default) on a
    card of ``card_gb`` GB with nothing else on it, offload allowed: ``fits`` is False for a job no
    such card can run."""
    model = interpolate(load_table(), latent_hw)
    return plan_job(model, generated_frames, card_available_bytes(card_gb), steps=steps, use_pacm=use_pacm)


__all__ = [
    "CUDA_CONTEXT_BYTES",
    "KERNELS",
    "MODULES",
    "SAFETY_FRACTION",
    "STAGES",
    "STAGE_MODULES",
    "TABLE_PATH",
    "GiB",
    "MemoryModel",
    "MiB",
    "Plan",
    "StageMemory",
    "StagePlan",
    "balanced_chunks",
    "card_available_bytes",
    "card_plan",
    "interpolate",
    "load_table",
    "plan_job",
    "stage_frames",
]
