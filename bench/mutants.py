"""Scripted mutation pass over engine/: does the engine test suite notice a wrong method?

Each mutant is one plausible mistake (a list of exact-snippet replacements). It is applied to a
temporary COPY of the repository (engine/, tests/, examples/, pyproject.toml; never to the working
tree), the selected engine tests run against the copy with ``pytest -x``, and the mutant counts as
killed when they fail. Prints a table and the kill rate; ``--json`` writes the rows too.

    .venv/bin/python bench/mutants.py                       # all mutants (~15-30 min on 2 cores)
    .venv/bin/python bench/mutants.py --only cfg-wrong-sign  # one mutant
    .venv/bin/python bench/mutants.py --list

A snippet that no longer occurs (the code moved) is reported as ``stale``, not as survived.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPY = ("engine", "tests", "examples", "pyproject.toml")
TESTS = (
    "tests/engine/test_method_invariants.py",
    "tests/engine/test_pacm.py",
    "tests/engine/test_attention.py",
    "tests/engine/test_masks.py",
    "tests/engine/test_pipeline.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file, old snippet, new snippet)


def M(name: str, what: str, *edits: tuple[str, str, str]) -> Mutant:
    return Mutant(name, what, edits)


MUTANTS = [
    # --- the three named in issue 13 -------------------------------------------------------------
    M(
        "a-opt-targets-Zt+time-reversed",
        "per-frame optimisation targets Z_t, generation reads Otilde time-reversed",
        ("engine/method/pacm.py", "target = source.latents[t - 1 : t]", "target = source.latents[t : t + 1]"),
        ("engine/method/pipeline.py", "frame_embeddings[T - t, f - 1]", "frame_embeddings[t - 1, f - 1]"),
    ),
    M(
        "b-cfg-wrong-base",
        "CFG = eps_c + w(eps_c - eps_u)",
        (
            "engine/method/denoiser.py",
            "return eps_uncond + scale * (eps_cond - eps_uncond)",
            "return eps_cond + scale * (eps_cond - eps_uncond)",
        ),
    ),
    M(
        "c-opt-under-source-pose",
        "per-frame optimisation conditioned on p_s instead of p_i",
        (
            "engine/method/pipeline.py",
            "                self._to_device(pose_pixels[chunk]),\n",
            "                self._to_device(pose_pixels[[0] * len(chunk)]),\n",
        ),
    ),
    # --- DDIM / schedule ----------------------------------------------------------------------------
    M(
        "alphas-prev-two-steps",
        "alpha_{t-1} read two steps away",
        ("engine/method/ddim.py", "prev = timesteps - step", "prev = timesteps - 2 * step"),
    ),
    M(
        "alphas-off-by-one-timestep",
        "alpha_t read at timestep - 1",
        (
            "engine/method/ddim.py",
            "alphas = cumprod[timesteps]",
            "alphas = cumprod[(timesteps - 1).clamp(min=0)]",
        ),
    ),
    M(
        "ddim-step-wrong-noise-coef",
        "DDIM step re-noises with sqrt(1 - a_t) instead of sqrt(1 - a_{t-1})",
        (
            "engine/method/ddim.py",
            "return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps",
            "return a_prev**0.5 * x0 + (1 - a_t) ** 0.5 * eps",
        ),
    ),
    M(
        "inversion-eps-previous-timestep",
        "DDIM inversion evaluates eps at the previous step's timestep",
        (
            "engine/method/pacm.py",
            "eps = denoiser(z, t, text, pose)",
            "eps = denoiser(z, max(t - 1, 1), text, pose)",
        ),
    ),
    M(
        "guidance-in-ddim-inversion",
        "DDIM inversion with CFG 7.5 instead of guidance 1",
        (
            "engine/method/pacm.py",
            "eps = denoiser(z, t, text, pose)",
            "eps = guided(denoiser(z, t, torch.zeros_like(text), pose), denoiser(z, t, text, pose), 7.5)",
        ),
    ),
    M(
        "null-text-in-ddim-inversion",
        "DDIM inversion conditioned on the null text",
        (
            "engine/method/pipeline.py",
            "latents = ddim_inversion(denoiser, z0, cond, pose, tracker)",
            "latents = ddim_inversion(denoiser, z0, uncond, pose, tracker)",
        ),
    ),
    M(
        "inversion-under-target-pose",
        "source and target poses swapped in inversion (inverts under the last target pose)",
        (
            "engine/method/pipeline.py",
            "source_pose_image = self._to_device(pose_pixels[:1])",
            "source_pose_image = self._to_device(pose_pixels[-1:])",
        ),
    ),
    # --- PACM ---------------------------------------------------------------------------------------
    M(
        "inversion-no-progressive-init",
        "O_{s,t} restarts from the prompt embedding every step",
        (
            "engine/method/pacm.py",
            "master = master.detach().clone().requires_grad_(True)",
            "master = cond.detach().float().clone().requires_grad_(True)",
        ),
    ),
    M(
        "inversion-advances-with-prompt",
        "Zbar advanced with the prompt embedding instead of the optimised one",
        (
            "engine/method/pacm.py",
            "embeddings[T - t : T - t + 1]]),",
            "cond.to(denoiser.dtype)]),",
        ),
    ),
    M(
        "inversion-targets-Zt",
        "pose-aware inversion loss against Z_t instead of Z_{t-1}",
        ("engine/method/pacm.py", "target = latents[t - 1 : t]", "target = latents[t : t + 1]"),
    ),
    M(
        "opt-init-time-reversed",
        "Otilde_{i,t} initialised from O_{s,T+1-t}",
        (
            "engine/method/pacm.py",
            "emb = source.embeddings[T - t].float()",
            "emb = source.embeddings[t - 1].float()",
        ),
    ),
    M(
        "opt-mean-over-frames",
        "per-frame losses averaged over the batch instead of summed",
        ("engine/method/pacm.py", ".flatten(1).mean(1).sum()", ".flatten(1).mean(1).mean()"),
    ),
    M(
        "opt-trajectory-from-target",
        "per-frame trajectory continues from Z_{t-1} instead of its own sample",
        ("engine/method/pacm.py", "z = z_prev.detach()", "z = target.expand_as(z_prev).clone()"),
    ),
    # --- generation ---------------------------------------------------------------------------------
    M(
        "frame0-prompt-embedding",
        "generation's frame 0 uses the prompt embedding instead of O_{s,t}",
        ("engine/method/pipeline.py", "source.embeddings[T - t] if f == 0", "cond[0] if f == 0"),
    ),
    M(
        "sampling-no-guidance",
        "generation at guidance 1 instead of w",
        (
            "engine/method/pipeline.py",
            "guided(eps_uncond, eps_cond, config.guidance_scale)",
            "guided(eps_uncond, eps_cond, 1.0)",
        ),
    ),
    M(
        "sampling-halves-swapped",
        "generation reads the conditional half as unconditional",
        (
            "engine/method/pipeline.py",
            "eps_uncond, eps_cond = eps.chunk(2)",
            "eps_cond, eps_uncond = eps.chunk(2)",
        ),
    ),
    M(
        "controlnet-off",
        "ControlNet residuals scaled to 0 (the pose never enters)",
        (
            "engine/method/denoiser.py",
            "conditioning_scale=self.conditioning_scale,",
            "conditioning_scale=0.0,",
        ),
    ),
    # --- DCAM / MGDM --------------------------------------------------------------------------------
    M(
        "lambdas-prev-current-swapped",
        "l2 applied to the current frame and l3 to the previous",
        (
            "engine/method/attention.py",
            "[[position[0], position[frame_ids[i] - 1], i] for i in targets]",
            "[[position[0], i, position[frame_ids[i] - 1]] for i in targets]",
        ),
    ),
    M(
        "lambdas-first-prev-swapped",
        "l1 applied to the previous frame and l2 to frame 0",
        (
            "engine/method/attention.py",
            "[[position[0], position[frame_ids[i] - 1], i] for i in targets]",
            "[[position[frame_ids[i] - 1], position[0], i] for i in targets]",
        ),
    ),
    M(
        "dcam-in-every-block",
        "DCAM installed in down/mid blocks too",
        (
            "engine/method/attention.py",
            'return name.startswith("up_blocks.") and ".attn1." in name',
            'return ".attn1." in name',
        ),
    ),
    M(
        "dcam-in-down-blocks",
        "DCAM installed in the down-blocks instead of the up-blocks",
        (
            "engine/method/attention.py",
            'return name.startswith("up_blocks.") and ".attn1." in name',
            'return name.startswith("down_blocks.") and ".attn1." in name',
        ),
    ),
    M(
        "mask-polarity-output",
        "M_i selects the background branch (Eq. 10 swapped)",
        (
            "engine/method/attention.py",
            "return m * dca[:, :, 0] + (1 - m) * dca[:, :, 1]",
            "return m * dca[:, :, 1] + (1 - m) * dca[:, :, 0]",
        ),
    ),
    M(
        "mask-polarity-keys",
        "character attention over the background keys and vice versa",
        (
            "engine/method/attention.py",
            "allowed = torch.stack([inside, ~inside], dim=2)",
            "allowed = torch.stack([~inside, inside], dim=2)",
        ),
    ),
    M(
        "mask-threshold-inverted",
        "frame masks keep the pixels BELOW the threshold",
        (
            "engine/method/masks.py",
            "return (normalise(subject) >= threshold).float()",
            "return (normalise(subject) < threshold).float()",
        ),
    ),
    M(
        "masks-not-refreshed",
        "refreshed masks never handed to DCAM (stale grid masks)",
        (
            "engine/method/pipeline.py",
            "                    masks.update(maps)\n                    controller.set_masks(masks.masks)\n",
            "                    masks.update(maps)\n",
        ),
    ),
    M(
        "maps-from-uncond-group",
        "cross-attention maps recorded from the unconditional group",
        ("engine/method/attention.py", "cond_hidden = hidden_states[-n:]", "cond_hidden = hidden_states[:n]"),
        (
            "engine/method/attention.py",
            "cond_text = encoder_hidden_states[-n:]",
            "cond_text = encoder_hidden_states[:n]",
        ),
    ),
]


def make_copy(dest: Path) -> None:
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)


def apply(copy: Path, mutant: Mutant) -> str | None:
    """Apply every edit; returns an error message for a stale snippet."""
    for file, old, new in mutant.edits:
        path = copy / file
        text = path.read_text()
        if text.count(old) != 1:
            return f"{file}: snippet found {text.count(old)} times"
        path.write_text(text.replace(old, new))
    return None


def restore(copy: Path, mutant: Mutant) -> None:
    for file, _, _ in mutant.edits:
        shutil.copy2(ROOT / file, copy / file)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider", "--timeout", "300"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - started, "timeout"
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return proc.returncode, time.perf_counter() - started, (failed[0] if failed else proc.stdout[-200:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant")
    parser.add_argument("--tests", nargs="*", default=list(TESTS), help="test files to run")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:36s} {m.what}")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="poseanimate-mutants-") as tmp:
        copy = Path(tmp)
        make_copy(copy)
        probe = subprocess.run(
            [sys.executable, "-c", "import engine; print(engine.__file__)"],
            cwd=copy,
            env=dict(os.environ, PYTHONPATH=str(copy)),
            capture_output=True,
            text=True,
        )
        if not probe.stdout.strip().startswith(str(copy)):
            print(
                f"the copy's engine is not the one imported: {probe.stdout or probe.stderr}", file=sys.stderr
            )
            return 2
        code, seconds, _ = run_tests(copy, tuple(args.tests), args.timeout)
        if code != 0:
            print("the unmutated tests fail on the copy; fix them first", file=sys.stderr)
            return 2
        print(f"baseline: tests pass on the unmutated copy ({seconds:.0f} s)", flush=True)
        for m in chosen:
            stale = apply(copy, m)
            if stale:
                rows.append(
                    {"name": m.name, "what": m.what, "status": "stale", "detail": stale, "seconds": 0}
                )
            else:
                code, seconds, detail = run_tests(copy, tuple(args.tests), args.timeout)
                status = "survived" if code == 0 else ("timeout" if code == -1 else "killed")
                rows.append(
                    {
                        "name": m.name,
                        "what": m.what,
                        "status": status,
                        "detail": detail,
                        "seconds": round(seconds),
                    }
                )
            restore(copy, m)
            r = rows[-1]
            print(f"{r['status']:9s} {r['seconds']:5d} s  {m.name:36s} {r['detail'][:90]}", flush=True)
    applicable = [r for r in rows if r["status"] != "stale"]
    killed = [r for r in applicable if r["status"] in ("killed", "timeout")]
    print()
    print("| mutant | status | first failing test |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['status']} | {r['detail'].removeprefix('FAILED ')[:100]} |")
    rate = len(killed) / len(applicable) if applicable else 0.0
    print(f"\nkill rate: {len(killed)}/{len(applicable)} = {rate:.0%}")
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "killed": len(killed), "applicable": len(applicable)}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
