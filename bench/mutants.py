"""Scripted mutation pass over engine/: does the engine test suite notice a wrong method?

Each mutant is one plausible mistake (a list of exact-snippet replacements). It is applied to a
temporary COPY of the repository (engine/, tests/, examples/, pyproject.toml; never to the working
tree), the selected engine tests run against the copy with ``pytest -x``, and the mutant counts as
killed when they fail. Prints a table and the kill rate; ``--json`` writes the rows too.

    .venv/bin/python bench/mutants.py                         # all mutants (~10 min on 2 quiet cores, ~1 h busy)
    .venv/bin/python bench/mutants.py --only b-cfg-wrong-base  # one mutant
    .venv/bin/python bench/mutants.py --list                   # names, mistakes and their test targets

Each mutant runs only its own test targets (``Mutant.tests``: the files, or for the slow end-to-end
tests the single tests, that hold its killers); ``--tests`` runs the given files for every mutant
instead. Exit status 1 when a mutant survives.

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
"""Copied always; every other top-level package (a folder with ``__init__.py``) is copied too, so the
tests never import a package from another checkout (an editable install elsewhere)."""
TESTS = (
    "tests/engine/test_method_invariants.py",
    "tests/engine/test_pacm.py",
    "tests/engine/test_attention.py",
    "tests/engine/test_masks.py",
    "tests/engine/test_pipeline.py",
)

# Test targets: a mutant runs only the files (or tests) that hold its killers, so a pass stays short
# on 2 cores. The slow end-to-end tests are named one by one; the fast unit files run whole.
_MI = "tests/engine/test_method_invariants.py::"
DDIM_INV = (_MI + "test_ddim_inversion_matches_diffusers_ddim_inverse_scheduler",)
SAMPLING = (_MI + "test_sampling_matches_diffusers_controlnet_pipeline",)
EQ6 = (_MI + "test_pose_aware_inversion_equals_eq6_written_out",)
POSE_OPT = (_MI + "test_pose_optimisation_equals_alg1_written_out_frame_by_frame",)
INV_POSE = (_MI + "test_inversion_runs_under_the_source_pose_and_ddim_inversion_at_guidance_one",)
OPT_POSE = (_MI + "test_per_frame_optimisation_is_conditioned_on_each_frames_own_pose",)
GEN_EMB = (_MI + "test_generation_reads_each_frames_embedding_of_the_same_timestep",)
DCAM_ORDER = (_MI + "test_dcam_weights_frame_0_previous_and_current_frame_in_that_order",)
MASK_REFRESH = (_MI + "test_mgdm_masks_refresh_every_step_and_dcam_reads_the_fresh_ones",)
ATTENTION = ("tests/engine/test_attention.py",)
MASKS = ("tests/engine/test_masks.py",)
MGDM = ("tests/engine/test_mgdm_masks.py",)
MGDM_EXACT = ("tests/engine/test_mgdm_exact.py",)
KILLERS = ("tests/engine/test_mutant_killers.py",)
SUBJECT = ("tests/engine/test_subject_tokens.py",)
ALIGNMENT = ("tests/engine/test_alignment.py",)
RETARGET = ("tests/engine/test_retarget.py",)
RENDER = ("tests/engine/test_pose.py",)


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    edits: tuple[tuple[str, str, str], ...]  # (file, old snippet, new snippet)
    tests: tuple[str, ...] = TESTS
    """The test files (or ``file::test`` ids) that must notice it: only these run for this mutant."""


def M(name: str, what: str, *edits: tuple[str, str, str], tests: tuple[str, ...] = TESTS) -> Mutant:
    return Mutant(name, what, edits, tests)


MUTANTS = [
    # --- the three named in issue 13 -------------------------------------------------------------
    M(
        "a-opt-targets-Zt+time-reversed",
        "per-frame optimisation targets Z_t, generation reads Otilde time-reversed",
        ("engine/method/pacm.py", "target = source.latents[t - 1 : t]", "target = source.latents[t : t + 1]"),
        ("engine/method/pipeline.py", "frame_embeddings[T - t, f - 1]", "frame_embeddings[t - 1, f - 1]"),
        tests=POSE_OPT,
    ),
    M(
        "b-cfg-wrong-base",
        "CFG = eps_c + w(eps_c - eps_u)",
        (
            "engine/method/denoiser.py",
            "return eps_uncond + scale * (eps_cond - eps_uncond)",
            "return eps_cond + scale * (eps_cond - eps_uncond)",
        ),
        tests=SAMPLING,
    ),
    M(
        "c-opt-under-source-pose",
        "per-frame optimisation conditioned on p_s instead of p_i",
        (
            "engine/method/pipeline.py",
            "                self._to_device(pose_pixels[chunk]),\n",
            "                self._to_device(pose_pixels[[0] * len(chunk)]),\n",
        ),
        tests=OPT_POSE,
    ),
    # --- DDIM / schedule ----------------------------------------------------------------------------
    M(
        "alphas-prev-two-steps",
        "alpha_{t-1} read two steps away",
        ("engine/method/ddim.py", "prev = timesteps - step", "prev = timesteps - 2 * step"),
        tests=DDIM_INV,
    ),
    M(
        "alphas-off-by-one-timestep",
        "alpha_t read at timestep - 1",
        (
            "engine/method/ddim.py",
            "alphas = cumprod[timesteps]",
            "alphas = cumprod[(timesteps - 1).clamp(min=0)]",
        ),
        tests=DDIM_INV,
    ),
    M(
        "ddim-step-wrong-noise-coef",
        "DDIM step re-noises with sqrt(1 - a_t) instead of sqrt(1 - a_{t-1})",
        (
            "engine/method/ddim.py",
            "return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps",
            "return a_prev**0.5 * x0 + (1 - a_t) ** 0.5 * eps",
        ),
        tests=SAMPLING,
    ),
    M(
        "inversion-eps-previous-timestep",
        "DDIM inversion evaluates eps at the previous step's timestep",
        (
            "engine/method/pacm.py",
            "eps = denoiser(z, t, text, pose)",
            "eps = denoiser(z, max(t - 1, 1), text, pose)",
        ),
        tests=DDIM_INV,
    ),
    M(
        "guidance-in-ddim-inversion",
        "DDIM inversion with CFG 7.5 instead of guidance 1",
        (
            "engine/method/pacm.py",
            "eps = denoiser(z, t, text, pose)",
            "eps = guided(denoiser(z, t, torch.zeros_like(text), pose), denoiser(z, t, text, pose), 7.5)",
        ),
        tests=DDIM_INV,
    ),
    M(
        "null-text-in-ddim-inversion",
        "DDIM inversion conditioned on the null text",
        (
            "engine/method/pipeline.py",
            "latents = ddim_inversion(denoiser, z0, cond, pose, tracker)",
            "latents = ddim_inversion(denoiser, z0, uncond, pose, tracker)",
        ),
        tests=INV_POSE,
    ),
    M(
        "inversion-under-target-pose",
        "source and target poses swapped in inversion (inverts under the last target pose)",
        (
            "engine/method/pipeline.py",
            "source_pose_image = self._to_device(pose_pixels[:1])",
            "source_pose_image = self._to_device(pose_pixels[-1:])",
        ),
        tests=INV_POSE,
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
        tests=EQ6,
    ),
    M(
        "inversion-advances-with-prompt",
        "Zbar advanced with the prompt embedding instead of the optimised one",
        (
            "engine/method/pacm.py",
            "embeddings[T - t : T - t + 1]]),",
            "cond.to(denoiser.dtype)]),",
        ),
        tests=EQ6,
    ),
    M(
        "inversion-targets-Zt",
        "pose-aware inversion loss against Z_t instead of Z_{t-1}",
        ("engine/method/pacm.py", "target = latents[t - 1 : t]", "target = latents[t : t + 1]"),
        tests=EQ6,
    ),
    M(
        "opt-init-time-reversed",
        "Otilde_{i,t} initialised from O_{s,T+1-t}",
        (
            "engine/method/pacm.py",
            "emb = source.embeddings[T - t].float()",
            "emb = source.embeddings[t - 1].float()",
        ),
        tests=POSE_OPT,
    ),
    M(
        "opt-mean-over-frames",
        "per-frame losses averaged over the batch instead of summed",
        ("engine/method/pacm.py", ".flatten(1).mean(1).sum()", ".flatten(1).mean(1).mean()"),
        tests=POSE_OPT,
    ),
    M(
        "opt-trajectory-from-target",
        "per-frame trajectory continues from Z_{t-1} instead of its own sample",
        ("engine/method/pacm.py", "z = z_prev.detach()", "z = target.expand_as(z_prev).clone()"),
        tests=POSE_OPT,
    ),
    # --- generation ---------------------------------------------------------------------------------
    M(
        "frame0-prompt-embedding",
        "generation's frame 0 uses the prompt embedding instead of O_{s,t}",
        ("engine/method/pipeline.py", "source.embeddings[T - t] if f == 0", "cond[0] if f == 0"),
        tests=GEN_EMB,
    ),
    M(
        "sampling-no-guidance",
        "generation at guidance 1 instead of w",
        (
            "engine/method/pipeline.py",
            "guided(eps_uncond, eps_cond, config.guidance_scale)",
            "guided(eps_uncond, eps_cond, 1.0)",
        ),
        tests=SAMPLING,
    ),
    M(
        "sampling-halves-swapped",
        "generation reads the conditional half as unconditional",
        (
            "engine/method/pipeline.py",
            "eps_uncond, eps_cond = eps.chunk(2)",
            "eps_cond, eps_uncond = eps.chunk(2)",
        ),
        tests=SAMPLING,
    ),
    M(
        "controlnet-off",
        "ControlNet residuals scaled to 0 (the pose never enters)",
        (
            "engine/method/denoiser.py",
            "conditioning_scale=self.conditioning_scale,",
            "conditioning_scale=0.0,",
        ),
        tests=DDIM_INV,
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
        tests=DCAM_ORDER,
    ),
    M(
        "lambdas-first-prev-swapped",
        "l1 applied to the previous frame and l2 to frame 0",
        (
            "engine/method/attention.py",
            "[[position[0], position[frame_ids[i] - 1], i] for i in targets]",
            "[[position[frame_ids[i] - 1], position[0], i] for i in targets]",
        ),
        tests=DCAM_ORDER,
    ),
    M(
        "dcam-in-every-block",
        "DCAM installed in down/mid blocks too",
        (
            "engine/method/attention.py",
            'return name.startswith("up_blocks.") and ".attn1." in name',
            'return ".attn1." in name',
        ),
        tests=ATTENTION,
    ),
    M(
        "dcam-in-down-blocks",
        "DCAM installed in the down-blocks instead of the up-blocks",
        (
            "engine/method/attention.py",
            'return name.startswith("up_blocks.") and ".attn1." in name',
            'return name.startswith("down_blocks.") and ".attn1." in name',
        ),
        tests=ATTENTION,
    ),
    M(
        "mask-polarity-output",
        "M_i selects the background branch (Eq. 10 swapped)",
        (
            "engine/method/attention.py",
            "query_region, key_region = region, region",
            "query_region, key_region = 1 - region, region",
        ),
        tests=DCAM_ORDER,
    ),
    M(
        "mask-polarity-keys",
        "character attention over the background keys and vice versa",
        (
            "engine/method/attention.py",
            "query_region, key_region = region, region",
            "query_region, key_region = region, 1 - region",
        ),
        tests=DCAM_ORDER,
    ),
    M(
        "mgdm-padding-keys-attended",
        "MGDM regions: the keys padding a region to the chunk's widest are attended (no padding mask)",
        ("engine/method/attention.py", "                if min(sizes) < span:", "                if False:"),
        tests=MGDM_EXACT,
    ),
    M(
        "mgdm-empty-region-no-fallback",
        "MGDM regions: a region without keys attends nothing instead of all keys",
        (
            "engine/method/attention.py",
            "sizes = [regions.host[key_region][row[r]] or tokens for row in ref_frames]",
            "sizes = [regions.host[key_region][row[r]] for row in ref_frames]",
        ),
        tests=MGDM_EXACT,
    ),
    M(
        "mgdm-padded-queries-kept",
        "MGDM regions: padded query rows are written over real tokens instead of the spare row",
        (
            "engine/method/attention.py",
            "scatter = torch.where(real, queries, tokens)",
            "scatter = queries",
        ),
        tests=MGDM_EXACT,
    ),
    M(
        "mask-threshold-inverted",
        "frame masks keep the pixels BELOW the threshold",
        (
            "engine/method/masks.py",
            "return (normalise(subject) >= threshold).float()",
            "return (normalise(subject) < threshold).float()",
        ),
        tests=MASKS,
    ),
    M(
        "masks-not-refreshed",
        "refreshed masks never handed to DCAM (stale grid masks)",
        (
            "engine/method/pipeline.py",
            "                    masks.update(maps)\n                    controller.set_masks(masks.masks)\n",
            "                    masks.update(maps)\n",
        ),
        tests=MASK_REFRESH,
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
        tests=ATTENTION,
    ),
    # --- MGDM masks (issue 25) -----------------------------------------------------------------------
    M(
        "mgdm-client-mask-recomputed",
        "the client's source mask is replaced by one from cross-attention during sampling",
        ("engine/method/pipeline.py", "source_fixed=mask_array is not None,", "source_fixed=False,"),
        tests=MGDM,
    ),
    M(
        "mgdm-masks-from-all-tokens",
        "frame masks from every prompt token's map instead of the subject tokens'",
        ("engine/method/masks.py", "subject = maps[:, tokens].mean(1)", "subject = maps.mean(1)"),
        tests=MGDM,
    ),
    M(
        "mgdm-masks-from-candidate-tokens",
        "frame masks from every candidate (content) token, not only the chosen subject tokens",
        (
            "engine/method/masks.py",
            "fresh = masks_from_maps(stacked, self.subject_tokens, self._threshold)",
            "fresh = masks_from_maps(stacked, self._candidates, self._threshold)",
        ),
        tests=MGDM,
    ),
    M(
        "precedence-alpha-over-client",
        "the image's alpha channel wins over the client's mask",
        (
            "engine/method/pipeline.py",
            '        if mask is not None:\n            return fit_mask(mask, w, h), "client"\n'
            "        alpha = alpha_mask(image, w, h)\n"
            '        if alpha is not None:\n            return alpha, "alpha"\n',
            "        alpha = alpha_mask(image, w, h)\n"
            '        if alpha is not None:\n            return alpha, "alpha"\n'
            '        if mask is not None:\n            return fit_mask(mask, w, h), "client"\n',
        ),
        tests=(MGDM[0] + "::test_source_mask_precedence_as_dcam_receives_it",),
    ),
    M(
        "precedence-segmenter-over-alpha",
        "the segmenter runs before the image's alpha channel is consulted",
        (
            "engine/method/pipeline.py",
            '        alpha = alpha_mask(image, w, h)\n        if alpha is not None:\n            return alpha, "alpha"\n'
            '        segmenter = self._resolve_backend("_segmenter", get_segmenter)\n'
            "        if segmenter is not None:\n"
            "            probability = segmenter.segment(fitted)\n"
            "            found = probability >= 0.5\n"
            "            if found.any() and not found.all():\n"
            '                return found, f"segmenter:{segmenter.name}"\n',
            '        segmenter = self._resolve_backend("_segmenter", get_segmenter)\n'
            "        if segmenter is not None:\n"
            "            probability = segmenter.segment(fitted)\n"
            "            found = probability >= 0.5\n"
            "            if found.any() and not found.all():\n"
            '                return found, f"segmenter:{segmenter.name}"\n'
            '        alpha = alpha_mask(image, w, h)\n        if alpha is not None:\n            return alpha, "alpha"\n',
        ),
        tests=(MGDM[0] + "::test_source_mask_precedence_as_dcam_receives_it",),
    ),
    M(
        "segmenter-polarity",
        "the segmenter's probability read inverted (background as the character)",
        ("engine/method/pipeline.py", "found = probability >= 0.5", "found = probability < 0.5"),
        tests=(MGDM[0] + "::test_source_mask_precedence_as_dcam_receives_it",),
    ),
    M(
        "subject-words-ignored",
        "the client's subject words are dropped: tokens always chosen automatically",
        (
            "engine/method/pipeline.py",
            "subject = subject_token_indices(self.tokenizer, prompt, words) if words else None",
            "subject = None",
        ),
        tests=MGDM,
    ),
    M(
        "subject-word-first-occurrence-only",
        "a subject word that occurs twice in the prompt maps to its first occurrence only",
        ("engine/method/masks.py", "for start in hits:", "for start in hits[:1]:"),
        tests=SUBJECT,
    ),
    M(
        "subject-auto-best-token-only",
        "automatic subject: only the single best-overlapping token, the ratio ignored",
        (
            "engine/method/masks.py",
            "if score >= ratio * best]",
            "if score >= best]",
        ),
        tests=SUBJECT,
    ),
    M(
        "subject-auto-against-last-frame",
        "automatic subject tokens chosen against the last frame's drawn mask instead of M_0",
        (
            "engine/method/masks.py",
            "self._reference = initial[0].clone()",
            "self._reference = initial[-1].clone()",
        ),
        tests=MASKS,
    ),
    # --- DCAM reference selection ------------------------------------------------------------------
    M(
        "dcam-previous-is-chunk-local",
        "at a chunk boundary the previous frame falls back to the frame itself (no carried reference)",
        (
            "engine/method/attention.py",
            "needed = {0} | {f - 1 for f in frame_ids if f >= 1}",
            "needed = {0} | {f - 1 for f in frame_ids if f - 1 in frame_ids}",
        ),
        (
            "engine/method/attention.py",
            "[[position[0], position[frame_ids[i] - 1], i] for i in targets]",
            "[[position[0], position.get(frame_ids[i] - 1, i), i] for i in targets]",
        ),
        tests=ATTENTION,
    ),
    M(
        "dcam-frame0-is-chunk-first",
        "the l1 reference is the chunk's first frame instead of frame 0",
        (
            "engine/method/attention.py",
            "[[position[0], position[frame_ids[i] - 1], i] for i in targets]",
            "[[0, position[frame_ids[i] - 1], i] for i in targets]",
        ),
        tests=ATTENTION,
    ),
    M(
        "dcam-previous-mask-is-current",
        "MGDM splits the previous frame's keys with the current frame's mask",
        (
            "engine/method/attention.py",
            "ref_frames = [[0, f - 1, f] for f in cur]",
            "ref_frames = [[0, f, f] for f in cur]",
        ),
        tests=DCAM_ORDER,
    ),
    M(
        "dcam-frame0-mask-is-current",
        "MGDM splits frame 0's keys with the current frame's mask",
        (
            "engine/method/attention.py",
            "ref_frames = [[0, f - 1, f] for f in cur]",
            "ref_frames = [[f, f - 1, f] for f in cur]",
        ),
        tests=DCAM_ORDER,
    ),
    # --- chunk boundaries (engine/method/batching.py, the pipeline's chunk bookkeeping) ----------------
    M(
        "batcher-drops-partial-last-chunk",
        "a last chunk shorter than the batch size is never run",
        ("engine/method/batching.py", "while start < len(items):", "while start + self.size <= len(items):"),
        tests=KILLERS,
    ),
    M(
        "batcher-chunks-overlap",
        "consecutive chunks overlap by one frame (the previous frame re-run in the next chunk)",
        (
            "engine/method/batching.py",
            "            start += len(chunk)\n",
            "            start += max(1, len(chunk) - 1)\n",
        ),
        tests=KILLERS,
    ),
    M(
        "batcher-oom-skips-chunk",
        "after an out-of-memory back-off the failed chunk is skipped instead of retried",
        (
            "engine/method/batching.py",
            "                    torch.cuda.empty_cache()\n                continue\n",
            "                    torch.cuda.empty_cache()\n                start += len(chunk)\n                continue\n",
        ),
        tests=KILLERS,
    ),
    M(
        "batcher-oom-size-not-kept",
        "the halved chunk size is used for the retried chunk only, then the old size comes back",
        (
            "engine/method/batching.py",
            "        items = list(frames)\n",
            "        items = list(frames)\n        initial = self.size\n",
        ),
        (
            "engine/method/batching.py",
            "            start += len(chunk)\n",
            "            start += len(chunk)\n            self.size = initial\n",
        ),
        tests=KILLERS,
    ),
    M(
        "optimise-store-chunk-local",
        "each chunk's optimised embeddings stored at the first frames' slots (chunk-local index)",
        (
            "engine/method/pipeline.py",
            "store[:, chunk[0] - 1 : chunk[-1]] = embeddings.cpu()",
            "store[:, : len(chunk)] = embeddings.cpu()",
        ),
        tests=("tests/engine/test_pipeline.py::test_frame_chunks_do_not_change_the_result",),
    ),
    # --- the video probe's limits (engine/inputs/videoprobe.py) --------------------------------------
    M(
        "videoprobe-frame-cap-exclusive",
        "a clip giving exactly max_frames samples is refused",
        ("engine/inputs/videoprobe.py", "if expected > max_frames:", "if expected >= max_frames:"),
        tests=("tests/engine/test_videoprobe.py", *KILLERS),
    ),
    M(
        "videoprobe-trim-ignored-for-duration",
        "a long clip trimmed with end under the duration cap is still refused as too long",
        (
            "engine/inputs/videoprobe.py",
            "if duration > max_duration + EPS and (end is None or end > max_duration):",
            "if duration > max_duration + EPS:",
        ),
        tests=("tests/engine/test_videoprobe.py", *KILLERS),
    ),
    M(
        "videoprobe-frames-floor",
        "sampled frames counted with floor (the sample at the trimmed end's fraction is lost)",
        (
            "engine/inputs/videoprobe.py",
            "return max(math.ceil((end - start) * fps - EPS), 0)",
            "return max(math.floor((end - start) * fps + EPS), 0)",
        ),
        tests=("tests/engine/test_videoprobe.py", *KILLERS),
    ),
    M(
        "videoprobe-frames-ignore-start",
        "sampled frames counted from 0 instead of start",
        (
            "engine/inputs/videoprobe.py",
            "expected = expected_frames(start, stop, rate) if rate else 0",
            "expected = expected_frames(0.0, stop, rate) if rate else 0",
        ),
        tests=("tests/engine/test_videoprobe.py", *KILLERS),
    ),
    M(
        "videoprobe-pixels-per-side",
        "the pixel cap compared against the larger side squared",
        (
            "engine/inputs/videoprobe.py",
            "if width and height and width * height > max_pixels:",
            "if width and height and max(width, height) ** 2 > max_pixels:",
        ),
        tests=("tests/engine/test_videoprobe.py", *KILLERS),
    ),
    # --- input rules (engine/inputs/rules.py) -------------------------------------------------------
    M(
        "rules-range-exclusive",
        "parameter ranges exclude their bounds",
        ("engine/inputs/rules.py", "not low <= value <= high:", "not low < value < high:"),
        tests=("tests/engine/test_rules.py",),
    ),
    M(
        "rules-output-frames-inclusive",
        "exactly max_frames output frames refused",
        ("engine/inputs/rules.py", "    if count > max_frames:", "    if count >= max_frames:"),
        tests=("tests/engine/test_rules.py",),
    ),
    M(
        "rules-subject-word-substring",
        "a subject word matched as a substring (no word boundaries)",
        (
            "engine/inputs/rules.py",
            'pattern = r"(?<!\\w)" + re.escape(word.strip().lower()) + r"(?!\\w)"',
            "pattern = re.escape(word.strip().lower())",
        ),
        tests=("tests/engine/test_rules.py",),
    ),
    M(
        "rules-mask-threshold-strict",
        "a mask pixel of exactly 128 is not marked",
        ("engine/inputs/rules.py", "else array >= 128", "else array > 128"),
        tests=("tests/engine/test_rules.py",),
    ),
    M(
        "rules-image-side-inclusive",
        "an image exactly at the minimum side is refused",
        (
            "engine/inputs/rules.py",
            "if min(width, height) < LIMITS.min_image_side:",
            "if min(width, height) <= LIMITS.min_image_side:",
        ),
        tests=("tests/engine/test_rules.py",),
    ),
    # --- PATA with bone retargeting (engine/poses/alignment.py) --------------------------------------
    M(
        "pata-scale-inverted",
        "the fitted scale is target/source instead of source/target",
        ("engine/poses/alignment.py", "ratios.append(src_len / tgt_len)", "ratios.append(tgt_len / src_len)"),
        tests=ALIGNMENT,
    ),
    M(
        "pata-mean-not-median",
        "the scale is the mean of the torso ratios, not the median",
        ("engine/poses/alignment.py", "scale = float(np.median(ratios))", "scale = float(np.mean(ratios))"),
        tests=ALIGNMENT,
    ),
    M(
        "pata-fit-per-frame",
        "a transform fitted on every target frame (relative motion lost)",
        (
            "engine/poses/alignment.py",
            "aligned = [transform.apply(p) for p in targets]",
            "aligned = [fit_similarity(source, p).apply(p) if _points(p) else transform.apply(p) for p in targets]",
        ),
        tests=(*KILLERS, *ALIGNMENT),
    ),
    M(
        "pata-transition-to-raw-target",
        "the transition runs to the unaligned first target",
        (
            "engine/poses/alignment.py",
            "transition = interpolate_poses(source, aligned[0], transition_frames)",
            "transition = interpolate_poses(source, targets[0], transition_frames)",
        ),
        tests=ALIGNMENT,
    ),
    M(
        "pata-transition-reaches-target",
        "the transition's last pose is the target itself (alpha = k / count)",
        ("engine/poses/alignment.py", "alpha = k / (count + 1)\n", "alpha = k / max(count, 1)\n"),
        tests=ALIGNMENT,
    ),
    M(
        "pata-anchor-mid-hip-first",
        "the translation anchors on the mid-hip before the neck",
        ("engine/poses/alignment.py", "for anchor in (_NECK, _MID_HIP):", "for anchor in (_MID_HIP, _NECK):"),
        tests=ALIGNMENT,
    ),
    M(
        "retarget-ratio-inverted",
        "bone ratios driving/source instead of source/driving",
        (
            "engine/poses/alignment.py",
            "ratios[i] = src[i] / float(np.median(seen))",
            "ratios[i] = float(np.median(seen)) / src[i]",
        ),
        tests=RETARGET,
    ),
    M(
        "retarget-fallback-one",
        "a bone the source lacks keeps its driving length (fallback 1, not the PATA scale)",
        (
            "engine/poses/alignment.py",
            "ratios = np.full(len(LIMBS), float(fallback))",
            "ratios = np.full(len(LIMBS), 1.0)",
        ),
        tests=RETARGET,
    ),
    M(
        "retarget-root-untransformed",
        "the retargeted roots are not placed by the PATA transform",
        (
            "engine/poses/alignment.py",
            "placed[j] = kp[j, :2] * transform.scale + (transform.tx, transform.ty)",
            "placed[j] = kp[j, :2]",
        ),
        tests=RETARGET,
    ),
    M(
        "retarget-orphans-dropped",
        "a keypoint whose parent is missing in the frame is dropped instead of placed by PATA",
        (
            "engine/poses/alignment.py",
            "if seen[j] and (parent is None or not seen[parent[0]]):",
            "if seen[j] and parent is None:",
        ),
        tests=RETARGET,
    ),
    # --- the ControlNet conditioning image (engine/poses/render.py) --------------------------------
    M(
        "render-limbs-not-dimmed",
        "limbs drawn at full brightness (the annotator dims them to 60 %)",
        ("engine/poses/render.py", "_JOINT_DIM = 0.6", "_JOINT_DIM = 1.0"),
        tests=RENDER,
    ),
    M(
        "render-strokes-not-scaled",
        "stick width fixed at the 512-px value whatever the canvas",
        (
            "engine/poses/render.py",
            "stickwidth = _scaled(_STICKWIDTH, width, height)",
            "stickwidth = _STICKWIDTH",
        ),
        tests=RENDER,
    ),
    M(
        "render-limb-colour-by-joint",
        "each limb coloured with its first joint's colour instead of the limb colour",
        (
            "engine/poses/render.py",
            "_fill_convex_poly(pixels, polygon, LIMB_COLORS[i])",
            "_fill_convex_poly(pixels, polygon, KEYPOINT_COLORS[a])",
        ),
        tests=RENDER,
    ),
    M(
        "render-angle-flipped",
        "the limb ellipse's angle measured with y pointing up",
        (
            "engine/poses/render.py",
            "angle = math.degrees(math.atan2(ya - yb, xa - xb))",
            "angle = math.degrees(math.atan2(yb - ya, xa - xb))",
        ),
        tests=RENDER,
    ),
    M(
        "render-limb-with-one-end",
        "a limb drawn when only one end is visible",
        (
            "engine/poses/render.py",
            "if not (visible[a] and visible[b]):",
            "if not (visible[a] or visible[b]):",
        ),
        tests=RENDER,
    ),
]


def make_copy(dest: Path) -> None:
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())
    for name in dict.fromkeys([*COPY, *packages]):
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


def baseline_tests(groups: list[tuple[str, ...]]) -> tuple[str, ...]:
    """Every test the chosen mutants run, once: a whole file makes its single tests redundant."""
    targets = list(dict.fromkeys(t for group in groups for t in group))
    files = {t for t in targets if "::" not in t}
    return tuple(t for t in targets if "::" not in t or t.split("::")[0] not in files)


def run_tests(copy: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", *tests, "-x", "-q", "-p", "no:cacheprovider", "--timeout", "300"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, time.perf_counter() - started, "timeout"
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    if proc.returncode == 1 and not failed:
        return 3, time.perf_counter() - started, proc.stdout[-200:]  # no test failed: not a kill
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
    return proc.returncode, time.perf_counter() - started, (failed[0] if failed else tail[0][:200])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", action="append", help="run only this mutant (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per mutant")
    parser.add_argument(
        "--tests", nargs="*", help="run these test files for every mutant (default: each mutant's own)"
    )
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        print(f"no such mutant: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    def tests_for(m: Mutant) -> tuple[str, ...]:
        return tuple(args.tests) if args.tests else m.tests

    if args.list:
        for m in chosen:
            print(f"{m.name:36s} {m.what}  [{' '.join(tests_for(m))}]")
        return 0
    started_all = time.perf_counter()
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
        code, seconds, _ = run_tests(copy, baseline_tests([tests_for(m) for m in chosen]), args.timeout)
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
                code, seconds, detail = run_tests(copy, tests_for(m), args.timeout)
                # pytest exits 1 when a test failed; anything else (collection or usage error, an
                # import that broke under the copy) is an error to look at, not a kill.
                status = {0: "survived", 1: "killed", -1: "timeout"}.get(code, "error")
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
    print("| mutant | what | result | first failing test |")
    print("|---|---|---|---|")
    for r in rows:
        first = r["detail"].removeprefix("FAILED ").removeprefix("ERROR ").split(" - ")[0]
        print(f"| `{r['name']}` | {r['what']} | {r['status']} | {first[:110]} |")
    rate = len(killed) / len(applicable) if applicable else 0.0
    print(f"\nkill rate: {len(killed)}/{len(applicable)} = {rate:.0%}")
    survived = [r["name"] for r in applicable if r["status"] == "survived"]
    errors = [r["name"] for r in applicable if r["status"] == "error"]
    stale = [r["name"] for r in rows if r["status"] == "stale"]
    print(f"killed {len(killed)}, survived {len(survived)}, errors {len(errors)}, stale {len(stale)}", end="")
    print(f" in {time.perf_counter() - started_all:.0f} s")
    for label, names in (("survived", survived), ("errors", errors)):
        if names:
            print(f"{label}: " + ", ".join(names))
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "killed": len(killed), "applicable": len(applicable)}, indent=2)
        )
    return 1 if survived or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
