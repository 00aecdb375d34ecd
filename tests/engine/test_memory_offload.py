"""Weight offload (issue 23): when every weight plus one frame per chunk does not fit, the planner
keeps only each stage's own modules on the device, the pipeline honours it stage by stage, the plan
records it, and the frames are those of the same plan run without offload."""

from __future__ import annotations

import numpy as np

from engine.inputs.memoryplan import GiB, MemoryModel, StageMemory, plan_job

MODULE_WEIGHTS = {"unet": 1.7, "controlnet": 0.7, "vae": 0.2, "text_encoder": 0.25}


def _model() -> MemoryModel:
    g = GiB
    return MemoryModel(
        latent_hw=(64, 64),
        dtype="float16",
        kernel="efficient",
        weights=int(sum(MODULE_WEIGHTS.values()) * g),
        stages={
            "inverting": StageMemory(int(1.0 * g), 0),
            "optimizing": StageMemory(0, int(1.0 * g)),
            "sampling": StageMemory(int(0.1 * g), int(0.3 * g)),
            "encoding": StageMemory(0, int(2.0 * g)),
        },
        checkpointed={"inverting": StageMemory(int(0.3 * g), 0), "optimizing": StageMemory(0, int(0.3 * g))},
        module_weights={k: int(v * g) for k, v in MODULE_WEIGHTS.items()},
    )


def test_the_planner_offloads_only_when_nothing_fits_with_every_weight_resident():
    model = _model()
    assert not plan_job(model, 8, 40 * GiB).offload  # roomy: no copies
    # 2.85 GiB of weights + the decoder's 2 GiB for one frame do not fit 4.5 GiB; with the U-Net and
    # the ControlNet in host memory while decoding (0.2 + 2 GiB), and the VAE and text encoder while
    # denoising, everything does
    tight = plan_job(model, 8, int(4.5 * GiB / 0.95))
    assert not plan_job(model, 8, int(4.5 * GiB / 0.95), allow_offload=False).fits
    assert tight.fits and tight.offload
    assert tight.stages["encoding"].offloaded == ["unet", "controlnet", "text_encoder"]
    assert tight.stages["sampling"].offloaded == ["vae", "text_encoder"]
    for name, stage in tight.stages.items():
        resident = model.resident_weights(name, offload=True)
        assert stage.peak_bytes == resident + model.peak(
            name, stage.chunk, steps=50, checkpointing=stage.checkpointing
        )
        assert stage.peak_bytes <= 4.5 * GiB / 0.95
    assert tight.summary()["offload"] is True
    # live device (weights already resident): offloading frees their bytes
    live = plan_job(model, 8, int((4.5 - 2.85) * GiB / 0.95), weights_counted=False)
    assert live.fits and live.offload
    # the weights themselves must fit: nothing is planned below them
    assert not plan_job(model, 8, int(2.5 * GiB)).fits


def _run(animator, example, **kwargs):
    from engine import AnimateConfig
    from tests.support.engine import FAST

    image, source, targets = example
    config = AnimateConfig(
        **{**FAST, "num_inference_steps": 2, "inversion_inner_steps": 1, "transition_frames": 0}
    )
    return animator.animate(image, targets, "an astronaut", source_pose=source, config=config, **kwargs)


def test_a_job_planned_with_offload_runs_it_and_gives_the_same_frames(tiny_model_dir, monkeypatch):
    from engine.method import batching, memory
    from tests.support.engine import astronaut_example, tiny_animator

    animator = tiny_animator(tiny_model_dir)
    example = astronaut_example(1)  # one target, no transition frame: the cheapest job with every stage
    modules = {
        "unet": animator.unet,
        "controlnet": animator.controlnet,
        "vae": animator.vae,
        "text_encoder": animator.text_encoder,
    }
    model = memory.model_for(modules, (8, 8))

    def fits(budget: int) -> bool:
        return plan_job(model, 1, budget, steps=2, allow_offload=False).fits

    low, high = model.weights, 10 * model.weights + 10 * sum(s.peak(2) for s in model.stages.values())
    assert fits(high)
    while high - low > 1:  # the least memory a plan fits with every weight resident
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    assert plan_job(model, 1, low, steps=2).offload  # just below it: only offload fits

    animator.memory_budget_bytes = low
    resident: dict[str, set[str]] = {}

    def on_progress(stage: str, fraction: float) -> None:
        resident.setdefault(stage, set(animator.weight_placement.resident))

    offloaded = _run(animator, example, on_progress=on_progress)
    assert offloaded.memory_plan["offload"] is True and offloaded.memory_plan["fits"] is True
    assert offloaded.memory_plan["stages"]["sampling"]["offloaded"] == ["vae", "text_encoder"]
    assert resident["sampling"] == {"unet", "controlnet"}
    assert resident["encoding"] == {"vae"}
    assert animator.weight_placement.resident == set(modules)  # all back after the job
    assert animator.weight_placement.moves > 0

    # the same plan with the moves skipped: identical frames
    monkeypatch.setattr(batching.WeightPlacement, "enter", lambda self, stage: None)
    plain = _run(animator, example)
    assert plain.memory_plan["stages"] == offloaded.memory_plan["stages"]
    for a, b in zip(offloaded.frames, plain.frames, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_failed_job_leaves_no_module_offloaded_for_the_next():
    from engine.method.batching import WeightPlacement

    class Module:
        def __init__(self):
            self.where = "cuda"

        def to(self, device):
            self.where = str(device)
            return self

    modules = {name: Module() for name in MODULE_WEIGHTS}
    placement = WeightPlacement(modules, "cuda", {"sampling": ["vae", "text_encoder"]})
    placement.enter("sampling")
    assert modules["vae"].where == "cpu" and modules["unet"].where == "cuda"
    placement.enter("optimizing")  # a stage the plan does not offload in: nothing moves
    assert modules["vae"].where == "cpu"
    placement.restore()  # what the next job does first
    assert {m.where for m in modules.values()} == {"cuda"}


def test_bench_memory_reports_the_least_memory_with_and_without_offload():
    from bench.memory import build_report
    from engine.inputs.memoryplan import load_table

    report = build_report(load_table())
    for setting in report["settings"].values():
        least = setting["minimum_gb"]
        assert least["offload"] < least["resident"] <= 8  # every setting fits 8 GB without offload
        assert not any(c["plan"][s]["offload"] for c in setting["cards"].values() for s in c["plan"])
