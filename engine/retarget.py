"""Bone-length retargeting: the driving skeleton with the character's proportions (UniAnimate-style).

PATA (:mod:`engine.alignment`) moves the driving motion onto the character with ONE uniform scale,
so a long-legged dancer keeps long legs on a short-legged character. :func:`retarget_bones` instead
walks the COCO-18 kinematic tree from the neck outward (the order of :data:`engine.pose.LIMBS`:
each limb's first keypoint is placed before its second) and rebuilds every frame bone by bone:

    out[child] = out[parent] + ratio[bone] * (driving[child] - driving[parent])

so each bone keeps its direction in every frame (the motion's joint angles) and gets the length
``ratio[bone] * driving length``, where ``ratio[bone] = source length / driving reference length``
(the driving bone's median length over the frames where it is seen). A bone that is constant in the
driving clip thus has exactly the character's length in every frame, and foreshortening (a bone
that shrinks as it turns away) is kept. A bone the source pose does not show (hidden wrists, cropped
legs) keeps the driving length scaled by the PATA scale. The neck, and any keypoint whose parent is
missing in a frame, is placed by the PATA transform; its subtree then grows from it.
"""

from __future__ import annotations

import numpy as np

from engine.alignment import MIN_CONFIDENCE, SimilarityTransform, fit_similarity, reference_pose
from engine.pose import LIMBS, NUM_KEYPOINTS, Pose, PoseSequence

__all__ = ["bone_lengths", "bone_ratios", "retarget_bones"]

_EPS = 1e-6


def bone_lengths(pose: Pose) -> np.ndarray:
    """(len(LIMBS),) length of each limb in pixels; NaN where an end is missing."""
    kp = pose.keypoints
    seen = kp[:, 2] > MIN_CONFIDENCE
    out = np.full(len(LIMBS), np.nan)
    for i, (a, b) in enumerate(LIMBS):
        if seen[a] and seen[b]:
            out[i] = float(np.linalg.norm(kp[a, :2] - kp[b, :2]))
    return out


def bone_ratios(source: Pose, targets: PoseSequence, fallback: float) -> np.ndarray:
    """(len(LIMBS),) source length / the driving bone's median length; ``fallback`` (the PATA
    scale) where either side never shows the bone or it has no length."""
    src = bone_lengths(source)
    drv = np.stack([bone_lengths(p) for p in targets])  # (frames, limbs)
    ratios = np.full(len(LIMBS), float(fallback))
    for i in range(len(LIMBS)):
        seen = drv[:, i][np.isfinite(drv[:, i])]
        if np.isfinite(src[i]) and len(seen) and np.median(seen) > _EPS and src[i] > _EPS:
            ratios[i] = src[i] / float(np.median(seen))
    return ratios


def retarget_bones(
    source_pose: Pose,
    target_poses: PoseSequence,
    *,
    width: int | None = None,
    height: int | None = None,
    transform: SimilarityTransform | None = None,
) -> PoseSequence:
    """The target motion with the source's bone lengths, positioned on the source (see the module
    docstring).

    Everything is first mapped onto ``width`` x ``height`` (default: the source pose's canvas).
    ``transform``: the PATA transform placing the roots and setting the fallback scale; by default
    fitted as :func:`engine.alignment.align_poses` does. Returns one pose per target, on that canvas;
    confidences are the targets'.
    """
    if (width is None) != (height is None):
        raise ValueError("give both width and height, or neither")
    if width is None or height is None:
        width, height = source_pose.width, source_pose.height
    source = source_pose.to_canvas(width, height)
    targets = target_poses.to_canvas(width, height)
    if transform is None:
        transform = fit_similarity(source, reference_pose(source, targets))
    ratios = bone_ratios(source, targets, transform.scale)
    parent_of = {b: (a, i) for i, (a, b) in enumerate(LIMBS)}

    out = []
    for pose in targets:
        kp = pose.keypoints
        seen = kp[:, 2] > 0
        placed = np.zeros((NUM_KEYPOINTS, 2))
        done = np.zeros(NUM_KEYPOINTS, dtype=bool)
        # Roots: the neck, and every keypoint whose parent is missing in this frame (or that has no
        # parent in the tree): where PATA would put it.
        for j in range(NUM_KEYPOINTS):
            parent = parent_of.get(j)
            if seen[j] and (parent is None or not seen[parent[0]]):
                placed[j] = kp[j, :2] * transform.scale + (transform.tx, transform.ty)
                done[j] = True
        for a, b in LIMBS:  # parents before children
            if seen[a] and seen[b] and done[a]:
                placed[b] = placed[a] + ratios[parent_of[b][1]] * (kp[b, :2] - kp[a, :2])
                done[b] = True
        result = np.zeros((NUM_KEYPOINTS, 3))
        result[done, :2] = placed[done]
        result[done, 2] = kp[done, 2]
        out.append(pose.with_keypoints(result))
    return PoseSequence(out)
