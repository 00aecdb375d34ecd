"""PATA: the pose alignment transition algorithm (paper Sec. 3, DESIGN 2.2).

The target sequence is moved onto the source character with ONE uniform-scale + translation
transform fitted on the first target pose, so the motion itself is untouched; ``t`` interpolated
poses then carry the character from its own pose ``p_s`` into the aligned first target.

Retargeting (``retarget="bones"``): Bone-length retargeting: the driving skeleton with the character's proportions (UniAnimate-style).

PATA moves the driving motion onto the character with ONE uniform scale,
so a long-legged dancer keeps long legs on a short-legged character. :func:`retarget_bones` instead
walks the COCO-18 kinematic tree from the neck outward (the order of :data:`engine.poses.pose.LIMBS`:
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

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from engine.poses.pose import KEYPOINT_NAMES, LIMBS, NUM_KEYPOINTS, Pose, PoseSequence

__all__ = [
    "MIN_CONFIDENCE",
    "SCALE_RANGE",
    "AlignmentError",
    "SimilarityTransform",
    "align_poses",
    "bone_lengths",
    "bone_ratios",
    "fit_similarity",
    "interpolate_poses",
    "reference_pose",
    "retarget_bones",
]

# A keypoint must be at least this confident in both poses to take part in the fit.
MIN_CONFIDENCE = 0.05
# A fitted scale outside this range means a broken pose, not a real body-size difference.
SCALE_RANGE = (0.1, 10.0)

_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}
_NECK, _R_HIP, _L_HIP = _INDEX["neck"], _INDEX["r_hip"], _INDEX["l_hip"]
_MID_HIP = "mid_hip"
# Torso segments: the body parts that change least with the motion, so they set the body size.
_TORSO_SEGMENTS: tuple[tuple[int | str, int | str], ...] = (
    (_NECK, _R_HIP),
    (_NECK, _L_HIP),
    (_INDEX["r_shoulder"], _INDEX["l_shoulder"]),
    (_R_HIP, _L_HIP),
    (_NECK, _MID_HIP),
)
_EPS = 1e-6


class AlignmentError(ValueError):
    """Bad arguments to the pose alignment."""


@dataclass(frozen=True)
class SimilarityTransform:
    """``(x, y) -> (scale * x + tx, scale * y + ty)`` in pixels; confidences are untouched."""

    scale: float = 1.0
    tx: float = 0.0
    ty: float = 0.0

    def apply(self, pose: Pose) -> Pose:
        """The transformed pose, on the same canvas: body, hands and face through the one transform.
        Points may leave the canvas; they are kept."""
        return pose.map_points(self.scale, self.tx, self.ty)


def _points(pose: Pose) -> dict[int | str, np.ndarray]:
    """Confident keypoints by index, plus the virtual mid-hip when both hips are confident."""
    kp = pose.keypoints
    points: dict[int | str, np.ndarray] = {i: kp[i, :2] for i in range(len(kp)) if kp[i, 2] > MIN_CONFIDENCE}
    if _R_HIP in points and _L_HIP in points:
        points[_MID_HIP] = (points[_R_HIP] + points[_L_HIP]) / 2
    return points


def _length_ratios(
    src: dict[int | str, np.ndarray],
    tgt: dict[int | str, np.ndarray],
    segments: tuple[tuple[int | str, int | str], ...],
) -> list[float]:
    ratios = []
    for a, b in segments:
        if a in src and b in src and a in tgt and b in tgt:
            src_len = float(np.linalg.norm(src[a] - src[b]))
            tgt_len = float(np.linalg.norm(tgt[a] - tgt[b]))
            if src_len > _EPS and tgt_len > _EPS:
                ratios.append(src_len / tgt_len)
    return ratios


def fit_similarity(source: Pose, target: Pose) -> SimilarityTransform:
    """The transform that puts ``target`` on ``source``'s body size and position.

    Scale: median ratio source/target of the torso segment lengths present in both, else of all
    skeleton limbs present in both, else of the RMS spread about the common keypoints' centroid,
    else 1; clamped to :data:`SCALE_RANGE`. Translation: the target's neck (else mid-hip, else the
    common centroid) lands on the source's; no translation without common keypoints. Both poses
    should be on the same canvas (pixels are compared as they are).
    """
    src, tgt = _points(source), _points(target)
    common = sorted(k for k in src.keys() & tgt.keys() if isinstance(k, int))

    ratios = _length_ratios(src, tgt, _TORSO_SEGMENTS) or _length_ratios(src, tgt, LIMBS)
    scale = 1.0
    if ratios:
        scale = float(np.median(ratios))
    elif len(common) >= 2:
        src_pts = np.stack([src[k] for k in common])
        tgt_pts = np.stack([tgt[k] for k in common])
        src_rms = math.sqrt(float(((src_pts - src_pts.mean(axis=0)) ** 2).sum(axis=1).mean()))
        tgt_rms = math.sqrt(float(((tgt_pts - tgt_pts.mean(axis=0)) ** 2).sum(axis=1).mean()))
        if src_rms > _EPS and tgt_rms > _EPS:
            scale = src_rms / tgt_rms
    scale = min(max(scale, SCALE_RANGE[0]), SCALE_RANGE[1])

    for anchor in (_NECK, _MID_HIP):
        if anchor in src and anchor in tgt:
            src_anchor, tgt_anchor = src[anchor], tgt[anchor]
            break
    else:
        if not common:
            return SimilarityTransform(scale=scale)
        src_anchor = np.stack([src[k] for k in common]).mean(axis=0)
        tgt_anchor = np.stack([tgt[k] for k in common]).mean(axis=0)
    tx, ty = src_anchor - scale * tgt_anchor
    return SimilarityTransform(scale=scale, tx=float(tx), ty=float(ty))


def interpolate_poses(a: Pose, b: Pose, count: int) -> list[Pose]:
    """``count`` poses strictly between ``a`` and ``b``, at ``alpha = k / (count + 1)``, k = 1..count.

    A keypoint visible in both moves linearly and blends its confidence. A keypoint visible on one
    side only never travels (it would fly in from wherever the missing side stores it): it stays at
    its own position, visible while ``alpha < 0.5`` if it belongs to ``a``, ``alpha >= 0.5`` if to
    ``b``. Both poses must share one canvas.

    Hands and face follow the same rule point by point, except that a hand or face point seen on one
    side only is carried by its anchor (the wrist for a hand, the nose for the face) instead of
    waiting at its own place: a hand that appears only at the target shows up, from ``alpha >= 0.5``,
    attached to the interpolated wrist with the target's shape (when that wrist is not visible in the
    transition pose, at its own place). Nothing ever comes from (0, 0).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise AlignmentError(f"count must be a non-negative integer, got {count!r}")
    if (a.width, a.height) != (b.width, b.height):
        raise AlignmentError(
            f"poses are on different canvases: {a.width}x{a.height} and {b.width}x{b.height}"
        )
    ka, kb = a.keypoints, b.keypoints
    both = a.visible & b.visible
    only_a = a.visible & ~b.visible
    only_b = b.visible & ~a.visible
    poses = []
    for k in range(1, count + 1):
        alpha = k / (count + 1)
        kp = np.zeros_like(ka)
        kp[both] = (1 - alpha) * ka[both] + alpha * kb[both]
        if alpha < 0.5:
            kp[only_a] = ka[only_a]
        else:
            kp[only_b] = kb[only_b]
        hands = None
        if a.hands is not None or b.hands is not None:
            hands = np.stack(
                [
                    _interpolate_part(_hand(a, side), _hand(b, side), a, b, kp, _WRISTS[side], alpha)
                    for side in (0, 1)
                ]
            )
        face = None
        if a.face is not None or b.face is not None:
            face = _interpolate_part(a.face, b.face, a, b, kp, _NOSE, alpha)
        poses.append(Pose(kp, a.width, a.height, hands=hands, face=face))
    return poses


_WRISTS = (_INDEX["l_wrist"], _INDEX["r_wrist"])  # hands[0] is the left hand, hands[1] the right
_NOSE = _INDEX["nose"]


def _hand(pose: Pose, side: int) -> np.ndarray | None:
    return None if pose.hands is None else pose.hands[side]


def _interpolate_part(
    pa: np.ndarray | None,
    pb: np.ndarray | None,
    a: Pose,
    b: Pose,
    body: np.ndarray,
    anchor: int,
    alpha: float,
) -> np.ndarray:
    """One hand or face at ``alpha`` between ``a`` and ``b`` (see :func:`interpolate_poses`); ``body``
    is the interpolated body, whose ``anchor`` keypoint carries one-sided points."""
    n = len(pa if pa is not None else pb)  # type: ignore[arg-type]
    pa = np.zeros((n, 3)) if pa is None else pa
    pb = np.zeros((n, 3)) if pb is None else pb
    va, vb = pa[:, 2] > 0, pb[:, 2] > 0
    out = np.zeros((n, 3))
    both = va & vb
    out[both] = (1 - alpha) * pa[both] + alpha * pb[both]
    side, points, pose = (va & ~vb, pa, a) if alpha < 0.5 else (vb & ~va, pb, b)
    out[side] = points[side]
    if body[anchor, 2] > 0 and pose.keypoints[anchor, 2] > 0:
        out[side, :2] += body[anchor, :2] - pose.keypoints[anchor, :2]
    return out


def reference_pose(source: Pose, targets: PoseSequence) -> Pose:
    """The target pose the transform is fitted on: the first that shares a confident keypoint with
    ``source`` (a first frame with nobody in it, as when the dancer walks in, says nothing about
    size or position), else the first."""
    src_points = _points(source)
    return next(
        (p for p in targets if any(isinstance(k, int) for k in src_points.keys() & _points(p).keys())),
        targets[0],
    )


def align_poses(
    source_pose: Pose,
    target_poses: PoseSequence,
    transition_frames: int,
    *,
    width: int | None = None,
    height: int | None = None,
    retarget: Literal["scale", "bones"] = "scale",
) -> PoseSequence:
    """PATA: ``[p_s, t transition poses, M aligned target poses]``, ``N + 1 = 1 + t + M`` poses.

    Everything is first mapped (:meth:`Pose.to_canvas`) onto ``width`` x ``height`` if given, else
    onto the source pose's canvas. One :class:`SimilarityTransform` is fitted on the first target
    pose that shares a confident keypoint with ``p_s`` (normally the first one) and applied to every
    target, so relative motion is preserved; the transition runs from ``p_s`` to the aligned first
    target (:func:`interpolate_poses`).

    ``retarget="bones"`` (:func:`engine.poses.alignment.retarget_bones`) additionally gives every driving
    bone the source's length, keeping its direction; ``"scale"`` (the default, the paper's PATA)
    keeps the driving proportions.
    """
    if isinstance(transition_frames, bool) or not isinstance(transition_frames, int):
        raise AlignmentError(f"transition_frames must be an integer, got {transition_frames!r}")
    if transition_frames < 0:
        raise AlignmentError(f"transition_frames must be >= 0, got {transition_frames}")
    if (width is None) != (height is None):
        raise AlignmentError("give both width and height, or neither")
    if not isinstance(source_pose, Pose) or not isinstance(target_poses, PoseSequence):
        raise AlignmentError("expected a Pose and a PoseSequence")
    if width is None or height is None:
        width, height = source_pose.width, source_pose.height
    source = source_pose.to_canvas(width, height)
    targets = target_poses.to_canvas(width, height)

    if retarget not in ("scale", "bones"):
        raise AlignmentError(f"retarget must be 'scale' or 'bones', got {retarget!r}")
    transform = fit_similarity(source, reference_pose(source, targets))
    if retarget == "bones":
        aligned = list(retarget_bones(source, targets, transform=transform))
    else:
        aligned = [transform.apply(p) for p in targets]
    transition = interpolate_poses(source, aligned[0], transition_frames)
    return PoseSequence([source, *transition, *aligned])


# --- Bone-length retargeting -------------------------------------------------------------------

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
    fitted as :func:`engine.poses.alignment.align_poses` does. Returns one pose per target, on that canvas;
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
        out.append(_attach_parts(pose, result, ratios, transform))
    return PoseSequence(out)


# The bone whose length scales each part: the forearm (elbow -> wrist) for a hand, the neck -> nose
# bone for the face.
_PART_BONES = {
    "left": LIMBS.index((_INDEX["l_elbow"], _INDEX["l_wrist"])),
    "right": LIMBS.index((_INDEX["r_elbow"], _INDEX["r_wrist"])),
    "face": LIMBS.index((_NECK, _NOSE)),
}


def _attach_parts(
    driving: Pose, body: np.ndarray, ratios: np.ndarray, transform: SimilarityTransform
) -> Pose:
    """The retargeted body with the driving hands and face: each hand hangs from its retargeted
    wrist and the face from the retargeted nose, keeping the driving shape scaled by the ratio of the
    bone that carries it (forearm, neck -> nose); where that anchor is missing, the part goes where
    the PATA transform puts it."""

    def attach(part: np.ndarray, anchor: int, ratio: float) -> np.ndarray:
        out = part.copy()
        seen = part[:, 2] > 0
        if driving.keypoints[anchor, 2] > 0 and body[anchor, 2] > 0:
            out[seen, :2] = body[anchor, :2] + ratio * (part[seen, :2] - driving.keypoints[anchor, :2])
        else:
            out[seen, :2] = part[seen, :2] * transform.scale + (transform.tx, transform.ty)
        return out

    hands = None
    if driving.hands is not None:
        hands = np.stack(
            [
                attach(driving.hands[0], _WRISTS[0], float(ratios[_PART_BONES["left"]])),
                attach(driving.hands[1], _WRISTS[1], float(ratios[_PART_BONES["right"]])),
            ]
        )
    face = None if driving.face is None else attach(driving.face, _NOSE, float(ratios[_PART_BONES["face"]]))
    return Pose(body, driving.width, driving.height, hands=hands, face=face)
