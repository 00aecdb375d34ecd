"""Pluggable pose-detector and person-segmenter backends for the source image.

The source pose ``p_s`` and the source mask ``M_0`` may come from the client; when they do not, a
backend finds them. MediaPipe (the ``detect`` extra) works offline because its models ship inside
the wheel; it is imported only when a backend is created, never at module import. Other backends
(DWPose, OpenPose) plug in through :func:`register_pose_detector` / :func:`register_segmenter`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from engine.poses.pose import NUM_KEYPOINTS, Pose, PoseError

__all__ = [
    "MEDIAPIPE_FACE_TO_OPENPOSE",
    "SOURCE_POSE_HINT",
    "DetectorUnavailable",
    "MediaPipeHolisticDetector",
    "MediaPipePoseDetector",
    "MediaPipeSegmenter",
    "PoseDetector",
    "Segmenter",
    "available_pose_detectors",
    "available_segmenters",
    "blazepose_to_coco",
    "face_mesh_to_openpose",
    "get_pose_detector",
    "get_segmenter",
    "hand_landmarks_to_openpose",
    "register_pose_detector",
    "register_segmenter",
]

INSTALL_HINT = "install the detect extra: pip install 'poseanimate[detect]'"
SOURCE_POSE_HINT = (
    "no pose detector is available to find the source pose: send `source_pose` as OpenPose JSON "
    '({"people": [{"pose_keypoints_2d": [x, y, c] * 18}], "canvas_width": W, "canvas_height": H}) '
    'or in the compact form ({"width": W, "height": H, "frames": [[[x, y, c]] * 18]}), '
    f"or {INSTALL_HINT}"
)


class DetectorUnavailable(ValueError):
    """The requested detection backend is unknown or cannot be loaded here."""


@runtime_checkable
class PoseDetector(Protocol):
    """Finds one body pose in an image."""

    name: str

    def detect(self, image: Image.Image) -> Pose | None:
        """The most prominent person's pose in the image's pixel coordinates (canvas = image size),
        or ``None`` when nobody is found."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Separates the person from the background."""

    name: str

    def segment(self, image: Image.Image) -> np.ndarray:
        """(H, W) float32 person probability in [0, 1], H x W = the image size."""
        ...


def _import_mediapipe() -> Any:
    try:
        import mediapipe as mp
    except ImportError:
        raise DetectorUnavailable(f"mediapipe is not installed; {INSTALL_HINT}") from None
    return mp


def _rgb_array(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8, C-contiguous, as MediaPipe wants it."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(image).__name__}")
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


# COCO-18 index -> BlazePose landmark index (or a pair to average). Both formats name sides after
# the person's own left and right, so no mirroring is needed.
_BLAZEPOSE_TO_COCO: tuple[int | tuple[int, int], ...] = (
    0,  # nose
    (11, 12),  # neck = mid-shoulders
    12,  # r_shoulder
    14,  # r_elbow
    16,  # r_wrist
    11,  # l_shoulder
    13,  # l_elbow
    15,  # l_wrist
    24,  # r_hip
    26,  # r_knee
    28,  # r_ankle
    23,  # l_hip
    25,  # l_knee
    27,  # l_ankle
    5,  # r_eye
    2,  # l_eye
    8,  # r_ear
    7,  # l_ear
)


def blazepose_to_coco(landmarks: np.ndarray, width: int, height: int, *, min_visibility: float) -> np.ndarray:
    """Map BlazePose's 33 landmarks to COCO-18 keypoints.

    ``landmarks``: (33, 3) ``(x, y, visibility)`` with x, y normalized to the image. Returns (18, 3)
    ``(x, y, confidence)`` in pixels; confidence is the visibility, 0 below ``min_visibility`` or
    outside the image. The neck is the mid-shoulder point with the lower of the two visibilities.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (33, 3):
        raise PoseError("pose_keypoint_count", f"expected (33, 3) BlazePose landmarks, got {lm.shape}")
    out = np.zeros((NUM_KEYPOINTS, 3))
    for coco, source in enumerate(_BLAZEPOSE_TO_COCO):
        if isinstance(source, tuple):
            a, b = lm[source[0]], lm[source[1]]
            out[coco] = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2]))
        else:
            out[coco] = lm[source]
    out[:, 0] *= width
    out[:, 1] *= height
    inside = (out[:, 0] >= 0) & (out[:, 0] < width) & (out[:, 1] >= 0) & (out[:, 1] < height)
    keep = inside & (out[:, 2] >= min_visibility)
    out[:, 2] = np.clip(out[:, 2], 0.0, 1.0)
    out[~keep] = 0.0
    return out


class MediaPipePoseDetector:
    """BlazePose (MediaPipe 0.10.21 ``solutions.pose``, static-image mode), mapped to COCO-18.

    The MediaPipe graph is built on first use and reused; a lock serialises calls, so one instance
    can serve a worker's threads.
    """

    name = "mediapipe"

    def __init__(self, *, min_visibility: float = 0.3, model_complexity: int = 1) -> None:
        # BlazePose under-reports occluded but well-placed joints (elbows behind props); 0.3 keeps
        # them while still dropping guesses outside the body.
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"min_visibility must be in [0, 1], got {min_visibility}")
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity}")
        self._mp = _import_mediapipe()
        self.min_visibility = min_visibility
        self.model_complexity = model_complexity
        self._lock = threading.Lock()
        self._graph: Any = None

    def detect(self, image: Image.Image) -> Pose | None:
        pixels = _rgb_array(image)
        with self._lock:
            if self._graph is None:
                self._graph = self._mp.solutions.pose.Pose(
                    static_image_mode=True, model_complexity=self.model_complexity
                )
            result = self._graph.process(pixels)
        if result.pose_landmarks is None:
            return None
        landmarks = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark])
        keypoints = blazepose_to_coco(
            landmarks, image.width, image.height, min_visibility=self.min_visibility
        )
        if not (keypoints[:, 2] > 0).any():
            return None
        return Pose(keypoints, image.width, image.height)

    def close(self) -> None:
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None


# OpenPose face point (iBUG 68 order) -> MediaPipe Face Mesh landmark (of 468). iBUG numbers the
# jaw from the person's right ear to their left, then the right brow (17-21), the left brow (22-26),
# the nose bridge (27-30) and base (31-35), the right eye (36-41) and left eye (42-47) clockwise from
# the outer corner, the outer lips (48-59) from the right corner, the inner lips (60-67). Face Mesh
# indices follow its canonical face model (the person's right is the image's left for a face
# looking at the camera, as in iBUG). OpenPose's points 68 and 69 (right and left pupil) are the
# centroids of the eye contours (36-41, 42-47): Face Mesh without iris refinement has no pupil.
MEDIAPIPE_FACE_TO_OPENPOSE: tuple[int, ...] = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,  # jaw 0-16
    70, 63, 105, 66, 107,  # right brow 17-21
    336, 296, 334, 293, 300,  # left brow 22-26
    168, 197, 5, 4,  # nose bridge 27-30
    75, 97, 2, 326, 305,  # nose base 31-35
    33, 160, 158, 133, 153, 144,  # right eye 36-41
    362, 385, 387, 263, 373, 380,  # left eye 42-47
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips 60-67
)  # fmt: skip


def face_mesh_to_openpose(
    landmarks: np.ndarray, width: int, height: int, confidence: float = 1.0
) -> np.ndarray:
    """Face Mesh's 468 (or 478, with irises) normalised landmarks -> OpenPose's 70 face points in
    pixels (:data:`MEDIAPIPE_FACE_TO_OPENPOSE`; pupils from the eye contours, or the iris centres
    468/473 when given). Points outside the image are missing."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if lm.ndim != 2 or len(lm) < 468:
        raise PoseError("pose_keypoint_count", f"expected 468 Face Mesh landmarks, got {len(lm)}")
    xy = lm[list(MEDIAPIPE_FACE_TO_OPENPOSE)]
    # refined (478): the iris centres 468 (the person's right) and 473 (left); else the eye contours'
    contours = np.stack([xy[36:42].mean(axis=0), xy[42:48].mean(axis=0)])
    pupils = lm[[468, 473]] if len(lm) >= 478 else contours
    return _pixels(np.concatenate([xy, pupils]), width, height, confidence)


def hand_landmarks_to_openpose(
    landmarks: np.ndarray, width: int, height: int, confidence: float = 1.0
) -> np.ndarray:
    """MediaPipe's 21 hand landmarks -> OpenPose's 21 hand points in pixels: both number the wrist
    0, then four points per finger from the thumb, base to tip, so the order is the same."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if lm.shape != (21, 2):
        raise PoseError("pose_keypoint_count", f"expected 21 hand landmarks, got {len(lm)}")
    return _pixels(lm, width, height, confidence)


def _pixels(xy: np.ndarray, width: int, height: int, confidence: float) -> np.ndarray:
    out = np.zeros((len(xy), 3))
    out[:, 0] = xy[:, 0] * width
    out[:, 1] = xy[:, 1] * height
    inside = (out[:, 0] >= 0) & (out[:, 0] < width) & (out[:, 1] >= 0) & (out[:, 1] < height)
    out[inside, 2] = confidence
    out[~inside] = 0.0
    return out


class MediaPipeHolisticDetector(MediaPipePoseDetector):
    """The whole body: MediaPipe 0.10.21 ``solutions.holistic`` (complexity 1, the model the wheel
    ships), BlazePose mapped to COCO-18 as :class:`MediaPipePoseDetector` does, plus each hand found
    (21 points, OpenPose order; the person's left hand is ``hands[0]``) and the face (Face Mesh
    mapped to OpenPose's 70 points). Hands and face get confidence 1 when found: MediaPipe gives no
    per-point score for them."""

    name = "mediapipe-holistic"

    def __init__(self, *, min_visibility: float = 0.3) -> None:
        super().__init__(min_visibility=min_visibility, model_complexity=1)

    def detect(self, image: Image.Image) -> Pose | None:
        pixels = _rgb_array(image)
        with self._lock:
            if self._graph is None:
                self._graph = self._mp.solutions.holistic.Holistic(static_image_mode=True, model_complexity=1)
            result = self._graph.process(pixels)
        if result.pose_landmarks is None:
            return None
        w, h = image.width, image.height
        landmarks = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark])
        keypoints = blazepose_to_coco(landmarks, w, h, min_visibility=self.min_visibility)
        if not (keypoints[:, 2] > 0).any():
            return None

        def points(found: Any) -> np.ndarray | None:
            return None if found is None else np.array([(p.x, p.y) for p in found.landmark])

        left, right = points(result.left_hand_landmarks), points(result.right_hand_landmarks)
        hands = None
        if left is not None or right is not None:
            hands = np.stack(
                [
                    np.zeros((21, 3)) if lm is None else hand_landmarks_to_openpose(lm, w, h)
                    for lm in (left, right)
                ]
            )
        face_lm = points(result.face_landmarks)
        face = None if face_lm is None else face_mesh_to_openpose(face_lm, w, h)
        return Pose(keypoints, w, h, hands=hands, face=face)


class MediaPipeSegmenter:
    """MediaPipe selfie segmentation (general model, 256 x 256 input), reusable under a lock."""

    name = "mediapipe"

    def __init__(self, *, model_selection: int = 0) -> None:
        # Model 0 (general) handles full and half bodies; model 1 is tuned for landscape video calls.
        if model_selection not in (0, 1):
            raise ValueError(f"model_selection must be 0 or 1, got {model_selection}")
        self._mp = _import_mediapipe()
        self.model_selection = model_selection
        self._lock = threading.Lock()
        self._graph: Any = None

    def segment(self, image: Image.Image) -> np.ndarray:
        pixels = _rgb_array(image)
        with self._lock:
            if self._graph is None:
                self._graph = self._mp.solutions.selfie_segmentation.SelfieSegmentation(
                    model_selection=self.model_selection
                )
            result = self._graph.process(pixels)
        mask = result.segmentation_mask
        if mask is None:
            return np.zeros((image.height, image.width), dtype=np.float32)
        return np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)

    def close(self) -> None:
        with self._lock:
            if self._graph is not None:
                self._graph.close()
                self._graph = None


# Name -> factory; a factory raises DetectorUnavailable when its dependencies are missing.
# Insertion order is the "auto" preference order: Holistic first, so a detected pose has the hands and
# face the image shows (the same BlazePose body; the hand and face models ship in the same wheel).
_POSE_DETECTORS: dict[str, Callable[[], PoseDetector]] = {
    "mediapipe-holistic": MediaPipeHolisticDetector,
    "mediapipe": MediaPipePoseDetector,
}
_SEGMENTERS: dict[str, Callable[[], Segmenter]] = {"mediapipe": MediaPipeSegmenter}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or name in ("auto", "none"):
        raise ValueError(f"backend name must be a non-empty string other than 'auto'/'none', got {name!r}")
    return name


def register_pose_detector(name: str, factory: Callable[[], PoseDetector]) -> None:
    """Make ``get_pose_detector(name)`` build ``factory()``; replaces a backend of the same name.

    The factory should raise :class:`DetectorUnavailable` when its dependencies are missing.
    """
    _POSE_DETECTORS[_check_name(name)] = factory


def register_segmenter(name: str, factory: Callable[[], Segmenter]) -> None:
    """Make ``get_segmenter(name)`` build ``factory()``; see :func:`register_pose_detector`."""
    _SEGMENTERS[_check_name(name)] = factory


def available_pose_detectors() -> tuple[str, ...]:
    """Registered pose-detector names, in ``"auto"`` preference order."""
    return tuple(_POSE_DETECTORS)


def available_segmenters() -> tuple[str, ...]:
    """Registered segmenter names, in ``"auto"`` preference order."""
    return tuple(_SEGMENTERS)


def _get(registry: dict[str, Callable[[], Any]], name: str, kind: str) -> Any:
    if name == "none":
        return None
    if name == "auto":
        for factory in registry.values():
            try:
                return factory()
            except DetectorUnavailable:
                continue
        return None
    if name not in registry:
        known = ", ".join(["auto", "none", *registry])
        raise DetectorUnavailable(f"unknown {kind} {name!r}; choose one of: {known}")
    return registry[name]()


def get_pose_detector(name: str = "auto") -> PoseDetector | None:
    """A pose detector by name.

    ``"auto"``: the first registered backend that loads here (MediaPipe Holistic first: body, hands
    and face), else ``None``;
    ``"none"``: ``None``; a backend name: that backend, or :class:`DetectorUnavailable` (with an
    install hint) when it cannot load.
    """
    return _get(_POSE_DETECTORS, name, "pose detector")


def get_segmenter(name: str = "auto") -> Segmenter | None:
    """A person segmenter by name; same rules as :func:`get_pose_detector`."""
    return _get(_SEGMENTERS, name, "segmenter")
