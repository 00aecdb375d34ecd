"""Driving video -> pose sequence: decode, resample, detect, bridge short gaps, smooth.

``extract_poses(video, fps=8)`` decodes a clip with PyAV (MP4/H.264, WebM/VP9, MOV, animated GIF),
samples it at the requested frame rate by timestamps, finds one body per sampled frame with a
registered pose detector (:mod:`engine.poses.detect`, MediaPipe BlazePose mapped to COCO-18 by
:func:`engine.poses.detect.blazepose_to_coco`) with, as ``parts`` asks (``full`` by default), the
two hands (21 points each) and the face (70 points) that MediaPipe Holistic finds, then cleans the
track. Every keypoint of every part (18 body + 2 x 21 hand + 70 face) is cleaned alike:

1. **Gaps**: a keypoint missing for at most ``max_gap`` consecutive frames between two frames where it
   is seen is bridged by linear interpolation (confidence: the lower of the two ends). Longer gaps,
   and gaps at the start or end of the clip, stay missing (confidence 0): nothing is extrapolated.
   A hand lost for a few frames is bridged like an elbow; a hand gone longer is absent (its points
   have confidence 0 and are never drawn), never placed at (0, 0).
2. **Smoothing** (x, y only, within each run of frames where a keypoint is seen): Savitzky-Golay
   (quadratic, ``window`` frames; keeps constant-velocity motion exactly) or One-Euro (adaptive
   low-pass, little lag on fast moves), or none.
3. **Frames with no person** left after bridging follow ``no_person``: ``"drop"`` (default; removed
   and listed in the report), ``"keep"`` (an empty pose, as OpenPose JSON writes a frame with no
   people), ``"hold"`` (the last pose seen before it, or the first one seen for frames before anybody
   appears: every sampled frame stays, at its clip time, so a driven video keeps the clip's timing
   and its sound stays in sync) or ``"error"``. A clip in which nobody is ever found raises
   :class:`NoPersonFound`.

Limits are checked from the container header before anything is decoded (resolution, duration, the
number of frames the clip would give; :mod:`engine.inputs.videoprobe`, which the API also runs at
submission) and again while decoding, since headers can lie. Every refusal is an
:class:`ExtractionError` (a ``ValueError``) with a stable ``code``.

PyAV is imported when extraction starts; MediaPipe when the detector is first built.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from engine.inputs.rules import POSE_PARTS, PoseParts, part_flags
from engine.inputs.videoprobe import (
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_PIXELS,
    EPS,
    MAX_SOURCE_FPS,
    ExtractionError,
    Sampling,
    VideoTooLarge,
    VideoTooLong,
    VideoUnreadable,
    check_header,
    declared_duration,
    looks_truncated,
    open_video,
    source_rate,
    why,
)
from engine.poses.detect import SOURCE_POSE_HINT, DetectorUnavailable, PoseDetector, get_pose_detector
from engine.poses.pose import (
    DEFAULT_MAX_FRAMES,
    FACE_KEYPOINTS,
    HAND_KEYPOINTS,
    NUM_KEYPOINTS,
    Pose,
    PoseSequence,
)

__all__ = [
    "DEFAULT_MAX_DURATION_S",
    "DEFAULT_MAX_GAP",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_WINDOW",
    "ExtractionError",
    "ExtractionResult",
    "NoPersonFound",
    "VideoTooLarge",
    "VideoTooLong",
    "VideoUnreadable",
    "bridge_gaps",
    "extract_poses",
    "smooth_track",
]

Smoothing = Literal["savgol", "one_euro", "none"]
NoPersonPolicy = Literal["drop", "keep", "hold", "error"]

# One frame's detection as one (130, 3) array: the body, the left then the right hand, the face.
_HANDS = slice(NUM_KEYPOINTS, NUM_KEYPOINTS + 2 * HAND_KEYPOINTS)
_FACE = slice(_HANDS.stop, _HANDS.stop + FACE_KEYPOINTS)
_ALL_POINTS = _FACE.stop

# At 8-12 fps, 3 frames is a quarter of a second: a blink of occlusion, not a different motion.
DEFAULT_MAX_GAP = 3
# Five frames (about half a second at 8-12 fps) removes detector jitter without rounding off a beat.
DEFAULT_WINDOW = 5
_POLYORDER = 2
# One-Euro (Casiez et al. 2012): cutoff in Hz at rest, speed coefficient per (pixel/s), derivative cutoff.
_ONE_EURO = (1.0, 0.02, 1.0)
# MediaPipe resizes to 256 px inside; converting a 4K frame at full size only costs time.
_DETECT_MAX_SIDE = 1024


class NoPersonFound(ExtractionError):
    """The detector found nobody (in any frame, or in some frame under ``no_person="error"``)."""

    code = "no_person"


@dataclass(frozen=True)
class ExtractionResult:
    """The extracted :class:`PoseSequence` (on the video's ``width`` x ``height`` canvas) and what
    happened on the way."""

    poses: PoseSequence
    fps: float
    """Frame rate of ``poses`` (the requested one, or the source's)."""
    source_fps: float
    width: int
    height: int
    duration_s: float
    """Declared duration of the video (0 when the container does not say)."""
    frames_decoded: int
    frames_sampled: int
    times: tuple[float, ...]
    """Timestamp (seconds from the first frame) of each pose in ``poses``."""
    frames_without_person: tuple[int, ...]
    """Sampled frames (indices into the sampled clip) where the detector found nobody."""
    frames_bridged: tuple[int, ...]
    """Of those, the frames filled by interpolating across a short gap."""
    frames_dropped: tuple[int, ...]
    """Of those, the frames removed (``no_person="drop"``)."""
    frames_held: tuple[int, ...]
    """Of those, the frames given the nearest earlier pose (``no_person="hold"``)."""
    keypoint_gaps_bridged: int
    """Single-keypoint gaps (a joint lost for <= ``max_gap`` frames) filled by interpolation."""
    detector: str
    smoothing: str
    settings: dict[str, Any] = field(default_factory=dict)

    def report(self) -> dict[str, Any]:
        """JSON-ready summary (no keypoints)."""
        return {
            "frames": len(self.poses),
            "fps": self.fps,
            "source_fps": self.source_fps,
            "width": self.width,
            "height": self.height,
            "duration_s": self.duration_s,
            "frames_decoded": self.frames_decoded,
            "frames_sampled": self.frames_sampled,
            "frames_without_person": list(self.frames_without_person),
            "frames_bridged": list(self.frames_bridged),
            "frames_dropped": list(self.frames_dropped),
            "frames_held": list(self.frames_held),
            "keypoint_gaps_bridged": self.keypoint_gaps_bridged,
            "detector": self.detector,
            "frames_with_hands": sum(p.has_hands for p in self.poses),
            "frames_with_face": sum(p.has_face for p in self.poses),
            "smoothing": self.smoothing,
            **self.settings,
        }


# --------------------------------------------------------------------------------------------------
# Arguments


def _positive(value: Any, name: str, *, integer: bool = False, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ExtractionError(f"{name} must be a positive number, got {value!r}")
    if integer and value != int(value):
        raise ExtractionError(f"{name} must be a positive integer, got {value!r}")
    if value <= 0:
        raise ExtractionError(f"{name} must be positive, got {value!r}")
    return int(value) if integer else float(value)


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ExtractionError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------
# Decoding


def _frames(container: Any, stream: Any, label: str) -> Iterator[tuple[float | None, Any]]:
    """Decoded frames with their timestamps (seconds, or None when the frame has none)."""
    import av

    decoded = 0
    try:
        for frame in container.decode(stream):
            decoded += 1
            t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
            yield t, frame
    except av.FFmpegError as exc:
        if decoded == 0:
            raise VideoUnreadable(
                f"{label} is damaged or truncated: no frame could be decoded ({why(exc)})"
            ) from None
        raise VideoUnreadable(
            f"{label} is damaged or truncated: decoding failed after {decoded} frames ({why(exc)})"
        ) from None


def _to_image(frame: Any) -> Image.Image:
    """The frame as displayed: RGB, rotated by its display matrix, at most ``_DETECT_MAX_SIDE``."""
    image = frame.to_image()
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    if rotation in (90, 180, 270):
        # PyAV reports the counter-clockwise display rotation; PIL rotates counter-clockwise too.
        image = image.rotate(rotation, expand=True)
    return image


# --------------------------------------------------------------------------------------------------
# Track cleaning (pure numpy; (frames, keypoints, 3) arrays, confidence 0 = missing)


def bridge_gaps(keypoints: np.ndarray, max_gap: int) -> tuple[np.ndarray, int]:
    """Fill each keypoint's interior gaps of at most ``max_gap`` frames by linear interpolation.

    ``keypoints``: (F, K, 3) (K = 18 for a body, 130 with hands and face). A gap is bridged only
    when the point is seen on both sides; its confidence is the lower of the two ends. Returns the
    new array and the number of gaps filled.
    """
    kp = np.array(keypoints, dtype=np.float64)
    filled = 0
    if max_gap <= 0:
        return kp, 0
    for j in range(kp.shape[1]):
        seen = np.flatnonzero(kp[:, j, 2] > 0)
        for a, b in itertools.pairwise(seen.tolist()):
            gap = b - a - 1
            if 0 < gap <= max_gap:
                alpha = (np.arange(1, gap + 1) / (gap + 1))[:, None]
                kp[a + 1 : b, j, :2] = (1 - alpha) * kp[a, j, :2] + alpha * kp[b, j, :2]
                kp[a + 1 : b, j, 2] = min(kp[a, j, 2], kp[b, j, 2])
                filled += 1
    return kp, filled


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def _savgol(values: np.ndarray, window: int, polyorder: int) -> np.ndarray:
    """Savitzky-Golay smoothing of (n, d) samples; near the ends the window is shifted inside the
    run and the fit evaluated off-centre (scipy's ``mode="interp"``)."""
    n = len(values)
    window = min(window, n if n % 2 else n - 1)
    if window <= polyorder:
        return values.copy()
    half = window // 2
    out = np.empty_like(values)
    for i in range(n):
        start = min(max(i - half, 0), n - window)
        out[i] = _savgol_weights(window, polyorder, start - i) @ values[start : start + window]
    return out


@functools.lru_cache(maxsize=256)
def _savgol_weights(window: int, polyorder: int, shift: int) -> np.ndarray:
    """Weights giving the fitted value at sample 0 from ``window`` samples starting at ``shift``."""
    x = np.arange(window) + shift  # positions relative to the evaluated sample
    return np.linalg.pinv(np.vander(x, polyorder + 1, increasing=True))[0]


def _one_euro(values: np.ndarray, fps: float) -> np.ndarray:
    """One-Euro filter of (n, d) samples taken at ``fps``."""
    min_cutoff, beta, d_cutoff = _ONE_EURO
    dt = 1.0 / fps

    def alpha(cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    out = np.empty_like(values)
    out[0] = values[0]
    derivative = np.zeros(values.shape[1])
    for i in range(1, len(values)):
        raw_derivative = (values[i] - out[i - 1]) / dt
        a_d = alpha(d_cutoff)
        derivative = a_d * raw_derivative + (1 - a_d) * derivative
        a = alpha(min_cutoff + beta * np.abs(derivative))
        out[i] = a * values[i] + (1 - a) * out[i - 1]
    return out


def smooth_track(
    keypoints: np.ndarray, method: Smoothing, *, fps: float, window: int = DEFAULT_WINDOW
) -> np.ndarray:
    """Smooth each keypoint's x, y over time within each run of frames where it is seen.

    ``keypoints``: (F, K, 3); confidences and missing keypoints are left as they are.
    """
    kp = np.array(keypoints, dtype=np.float64)
    if method == "none":
        return kp
    for j in range(kp.shape[1]):
        for start, stop in _runs(kp[:, j, 2] > 0):
            if stop - start < 2:
                continue
            xy = kp[start:stop, j, :2]
            if method == "savgol":
                kp[start:stop, j, :2] = _savgol(xy, window, _POLYORDER)
            else:
                kp[start:stop, j, :2] = _one_euro(xy, fps)
    return kp


# --------------------------------------------------------------------------------------------------
# Extraction


def _resolve_detector(detector: str | PoseDetector, parts: str) -> PoseDetector:
    if detector == "auto" and parts == "body":
        # the body alone: BlazePose without the hand and face models, about twice as fast
        try:
            return _resolve_detector("mediapipe", parts)
        except DetectorUnavailable:
            pass
    if isinstance(detector, str):
        found = get_pose_detector(detector)
        if found is None:
            raise DetectorUnavailable(
                "no pose detector is available to extract poses from a video; "
                + SOURCE_POSE_HINT.split(", or ", 1)[-1]
            )
        return found
    if not callable(getattr(detector, "detect", None)):
        raise ExtractionError(
            f"detector must be a name or have .detect(image), got {type(detector).__name__}"
        )
    return detector


def _detect(
    detector: PoseDetector, image: Image.Image, width: int, height: int, keep: tuple[bool, bool]
) -> np.ndarray:
    """(130, 3) keypoints on the ``width`` x ``height`` frame: the body, the hands (when ``keep[0]``)
    and the face (when ``keep[1]``); zeros where nobody or no such part is found."""
    scale = 1.0
    if max(image.size) > _DETECT_MAX_SIDE:
        scale = max(image.size) / _DETECT_MAX_SIDE
        image = image.resize(
            (max(round(image.width / scale), 1), max(round(image.height / scale), 1)),
            Image.Resampling.BILINEAR,
        )
    out = np.zeros((_ALL_POINTS, 3))
    pose = detector.detect(image)
    if pose is None:
        return out
    pose = pose.to_canvas(image.width, image.height)
    out[:NUM_KEYPOINTS] = pose.keypoints
    if keep[0] and pose.hands is not None:
        out[_HANDS] = pose.hands.reshape(-1, 3)
    if keep[1] and pose.face is not None:
        out[_FACE] = pose.face
    out[:, :2] *= (width / image.width, height / image.height)
    return out


def _pose(points: np.ndarray, width: int, height: int) -> Pose:
    """A cleaned (130, 3) row as a :class:`Pose` (a part with no point seen is absent)."""
    return Pose(
        points[:NUM_KEYPOINTS],
        width,
        height,
        hands=points[_HANDS].reshape(2, HAND_KEYPOINTS, 3),
        face=points[_FACE],
    )


def _check_sampling(
    fps: Any, start: Any, end: Any, max_frames: Any, max_pixels: Any, max_duration: Any
) -> Sampling:
    fps = _positive(fps, "fps", allow_none=True)
    start = _seconds(start, "start") or 0.0
    end = _seconds(end, "end")
    if end is not None and end <= start:
        raise ExtractionError(f"end ({end:g} s) must be after start ({start:g} s)")
    return Sampling(
        fps,
        start,
        end,
        _positive(max_frames, "max_frames", integer=True),
        _positive(max_pixels, "max_pixels", integer=True),
        _positive(max_duration, "max_duration"),
    )


def _check_cleaning(smoothing: Any, window: Any, max_gap: Any, no_person: Any, parts: Any) -> None:
    if parts not in POSE_PARTS:
        raise ExtractionError(f"parts must be one of {', '.join(POSE_PARTS)}, got {parts!r}")
    if smoothing not in ("savgol", "one_euro", "none"):
        raise ExtractionError(f"smoothing must be 'savgol', 'one_euro' or 'none', got {smoothing!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ExtractionError(f"window must be an odd integer >= 3, got {window!r}")
    if isinstance(max_gap, bool) or not isinstance(max_gap, int) or max_gap < 0:
        raise ExtractionError(f"max_gap must be an integer >= 0, got {max_gap!r}")
    if no_person not in ("drop", "keep", "hold", "error"):
        raise ExtractionError(f"no_person must be 'drop', 'keep', 'hold' or 'error', got {no_person!r}")


class _Sampler:
    """Timestamp sampling: fed the decoded frames in order, it detects a pose in each sampled frame.

    With ``fps``, sample ``k`` is at ``start + k / fps`` and takes the frame on screen at that time
    (the last frame whose timestamp is not after it); without, every frame in [start, end) is taken.
    Enforces the frame, pixel and duration caps while decoding, since headers can lie.
    """

    def __init__(
        self,
        label: str,
        sampling: Sampling,
        *,
        source_fps: float,
        promised: int,
        detector: PoseDetector,
        progress: Callable[[int, int], None] | None,
        trim: bool = False,
        keep: tuple[bool, bool] = (True, True),
    ) -> None:
        self.label, self.sampling, self.source_fps = label, sampling, source_fps
        self.trim, self.trimmed = trim, False
        """With ``trim``, frames past ``max_frames`` end the sampling (``trimmed``) instead of refusing."""
        self.promised, self.detector, self.progress = promised, detector, progress
        self.keep = keep
        """(hands, face): the parts kept of each detection."""
        self.detections: list[np.ndarray] = []
        self.times: list[float] = []
        self.canvas: tuple[int, int] | None = None
        """Size of the first sampled frame as displayed (after any rotation); later ones are fitted to it."""
        self.decoded = 0
        self.last_t = 0.0
        self._t0: float | None = None
        self._previous: tuple[float, Any] | None = None
        self._next_k = 0

    def _sample_time(self) -> float:
        assert self.sampling.fps is not None
        return self.sampling.start + self._next_k / self.sampling.fps

    def feed(self, raw_t: float | None, frame: Any) -> bool:
        """Take the samples this frame settles; True once no later frame can be sampled."""
        s = self.sampling
        t = self._timestamp(raw_t)
        if s.fps is None:
            if t >= s.start - EPS and (s.end is None or t < s.end - EPS):
                self._take(frame, t)
        else:
            # Every sample time before this frame's timestamp shows the previous frame.
            self._take_previous_before(t if s.end is None else min(t, s.end))
        self._previous = (t, frame)
        return self.trimmed or (
            s.end is not None and t >= s.end - EPS and (s.fps is None or self._sample_time() >= s.end - EPS)
        )

    def finish(self, duration: float) -> None:
        """After the last frame: the samples it still covers, then the truncation and empty checks."""
        s, label = self.sampling, self.label
        if self._previous is None:
            raise VideoUnreadable(f"{label} holds no decodable frames")
        if s.fps is not None and not self.trimmed:
            # The last frame stays on screen for one frame interval.
            stop_t = self._previous[0] + 1.0 / (self.source_fps or s.fps)
            self._take_previous_before(stop_t if s.end is None else min(stop_t, s.end))
        last_t = self.last_t
        if (
            not self.trimmed
            and (s.end is None or s.end > last_t)
            and looks_truncated(last_t + 1.0 / (self.source_fps or 1.0), duration)
        ):
            raise VideoUnreadable(
                f"{label} is truncated: frames stop at {last_t:.2f} s of its declared {duration:.2f} s"
            )
        if not self.detections:
            raise ExtractionError(
                f"no frames between {s.start:g} s and {s.end if s.end is not None else last_t:g} s"
            )

    def _timestamp(self, raw_t: float | None) -> float:
        """Seconds from the first frame, never running backwards; caps the decoding work."""
        s, label = self.sampling, self.label
        self.decoded += 1
        if self.decoded > MAX_SOURCE_FPS * s.max_duration:
            raise VideoTooLong(f"{label} holds more than {self.decoded - 1} frames; it is not a short clip")
        if raw_t is None:
            raw_t = (self.decoded - 1) / self.source_fps if self.source_fps else float(self.decoded - 1)
        if self._t0 is None:
            self._t0 = raw_t
        t = raw_t - self._t0
        if t < self.last_t - EPS and self._previous is not None:
            t = self.last_t  # out-of-order timestamps: keep the display order
        self.last_t = t
        if t > s.max_duration + EPS:
            raise VideoTooLong(f"{label} runs past {s.max_duration:g} s; at most that much is decoded")
        return t

    def _take_previous_before(self, stop_t: float) -> None:
        """Sample times before ``stop_t`` show the previous frame (those before it appeared are skipped)."""
        previous = self._previous
        while previous is not None and self._sample_time() < stop_t - EPS:
            if self._sample_time() >= previous[0] - EPS:
                self._take(previous[1], self._sample_time())
            self._next_k += 1

    def _take(self, frame: Any, t: float) -> None:
        s, label = self.sampling, self.label
        if len(self.detections) >= s.max_frames and self.trim:
            self.trimmed = True
            return
        if len(self.detections) >= s.max_frames:
            raise VideoTooLong(
                f"{label} gives more than {s.max_frames} frames"
                + (f" at {s.fps:g} fps" if s.fps else "")
                + "; lower fps or trim with start/end"
            )
        if frame.width * frame.height > s.max_pixels:
            raise VideoTooLarge(
                f"{label} has a {frame.width}x{frame.height} frame; "
                f"at most {s.max_pixels:,} pixels per frame are allowed"
            )
        image = _to_image(frame)
        if self.canvas is None:
            self.canvas = image.size
        elif image.size != self.canvas:
            image = image.resize(self.canvas, Image.Resampling.BILINEAR)
        self.detections.append(_detect(self.detector, image, image.width, image.height, self.keep))
        self.times.append(t)
        if self.progress is not None:
            self.progress(len(self.detections), max(self.promised, len(self.detections)))


@dataclass(frozen=True)
class _Track:
    """The cleaned track and what cleaning did (frame indices into the sampled clip)."""

    keypoints: np.ndarray
    """(F, 130, 3) after bridging and smoothing, all sampled frames (body, hands, face)."""
    keep: np.ndarray
    """Indices of the frames that stay (all but the dropped ones)."""
    without_person: tuple[int, ...]
    bridged: tuple[int, ...]
    dropped: tuple[int, ...]
    held: tuple[int, ...]
    gaps_bridged: int


def _clean_track(
    raw: np.ndarray,
    label: str,
    *,
    rate: float,
    smoothing: Smoothing,
    window: int,
    max_gap: int,
    no_person: NoPersonPolicy,
) -> _Track:
    """Bridge short gaps, smooth, and apply the no-person policy to the (F, K, 3) detections (the
    first 18 points are the body, which says whether a person is there)."""
    empty = ~(raw[:, :NUM_KEYPOINTS, 2] > 0).any(axis=1)
    if empty.all():
        raise NoPersonFound(f"no person found in {label} ({len(raw)} frames sampled)")
    bridged_kp, gaps = bridge_gaps(raw, max_gap)
    still_empty = ~(bridged_kp[:, :NUM_KEYPOINTS, 2] > 0).any(axis=1)
    smooth = smooth_track(bridged_kp, smoothing, fps=rate, window=window)
    smooth[..., :2] = np.where(smooth[..., 2:] > 0, smooth[..., :2], 0.0)
    dropped: tuple[int, ...] = ()
    held: tuple[int, ...] = ()
    keep = np.arange(len(smooth))
    if still_empty.any():
        missing = np.flatnonzero(still_empty).tolist()
        if no_person == "error":
            shown = ", ".join(str(i) for i in missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise NoPersonFound(f"no person found in sampled frames {shown} of {label}")
        if no_person == "drop":
            dropped = tuple(missing)
            keep = np.flatnonzero(~still_empty)
        if no_person == "hold":
            held = tuple(missing)
            smooth = _hold(smooth, still_empty)
    return _Track(
        keypoints=smooth,
        keep=keep,
        without_person=tuple(np.flatnonzero(empty).tolist()),
        bridged=tuple(np.flatnonzero(empty & ~still_empty).tolist()),
        dropped=dropped,
        held=held,
        gaps_bridged=gaps,
    )


def _hold(keypoints: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Each ``empty`` frame takes the last non-empty frame before it (the first one after it at the
    start of the clip)."""
    seen = np.flatnonzero(~empty)
    source = np.maximum.accumulate(np.where(empty, -1, np.arange(len(empty))))
    source[source < 0] = seen[0]
    return keypoints[source]


def _close_if_owned(detector: str | PoseDetector, resolved: PoseDetector | None) -> None:
    """A detector built here from a name is closed here; one the caller passed stays open."""
    if isinstance(detector, str) and resolved is not None:
        close = getattr(resolved, "close", None)
        if callable(close):
            close()


def _promised_frames(container: Any, stream: Any, label: str, sampling: Sampling, trim: bool) -> int:
    """The frames the header promises (refused when too many); with ``trim`` it may promise more
    than ``max_frames`` (the first ``max_frames`` are kept), up to what ``max_duration`` allows."""
    header_cap = int(MAX_SOURCE_FPS * sampling.max_duration) + 1 if trim else sampling.max_frames
    promised = check_header(container, stream, label, dataclasses.replace(sampling, max_frames=header_cap))
    return min(promised, sampling.max_frames)


def extract_poses(
    video: str | Path | bytes | bytearray | memoryview,
    *,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_duration: float = DEFAULT_MAX_DURATION_S,
    smoothing: Smoothing = "savgol",
    window: int = DEFAULT_WINDOW,
    max_gap: int = DEFAULT_MAX_GAP,
    no_person: NoPersonPolicy = "drop",
    parts: PoseParts = "full",
    detector: str | PoseDetector = "auto",
    progress: Callable[[int, int], None] | None = None,
    trim: bool = False,
) -> ExtractionResult:
    """Extract one person's COCO-18 pose per sampled frame of ``video`` (a path or the file's bytes).

    ``fps``: sample rate (frames at ``start + k / fps``, each taking the frame on screen at that
    time); ``None`` keeps every source frame. ``start`` / ``end``: seconds from the first frame.
    ``max_frames``: cap on sampled frames, checked from the header before decoding and enforced while
    decoding. ``max_pixels`` (width x height) and ``max_duration`` (seconds) bound the decoding work.
    ``smoothing``, ``window``, ``max_gap``, ``no_person``: see the module docstring. ``parts``: what
    of each person is kept: ``body``, ``body+hands``, ``body+face`` or ``full`` (the default); hands
    and face come only from a detector that finds them. ``detector``: a name from
    :func:`engine.poses.detect.available_pose_detectors` (``"auto"``: the first that loads, MediaPipe
    Holistic first; for ``parts="body"`` the body-only MediaPipe model, which is faster) or a
    :class:`~engine.poses.detect.PoseDetector`. ``progress(done, total)`` is called after each sampled
    frame is detected (``total``: the frames the header promises, at least ``done``); an exception it
    raises stops the extraction and propagates (how a caller cancels). ``trim``: a longer clip keeps
    its first ``max_frames`` samples (report: ``"trimmed": true``) instead of being refused.

    Raises :class:`ExtractionError` subclasses (all ``ValueError``) for bad arguments and refused or
    unreadable videos, :class:`NoPersonFound` when nobody is found, and
    :class:`~engine.poses.detect.DetectorUnavailable` when no detector can load.
    """
    # 1. Check arguments
    sampling = _check_sampling(fps, start, end, max_frames, max_pixels, max_duration)
    _check_cleaning(smoothing, window, max_gap, no_person, parts)

    # 2. Open and check the header before decoding anything
    container, label = open_video(video)
    resolved: PoseDetector | None = None
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        promised = _promised_frames(container, stream, label, sampling, trim)
        duration = declared_duration(container, stream)
        source_fps = source_rate(stream)
        resolved = _resolve_detector(detector, parts)

        # 3. Decode, sample by timestamps, detect
        sampler = _Sampler(
            label,
            sampling,
            source_fps=source_fps,
            promised=promised,
            detector=resolved,
            progress=progress,
            trim=trim,
            keep=part_flags(parts),
        )
        for raw_t, frame in _frames(container, stream, label):
            if sampler.feed(raw_t, frame):
                break
        sampler.finish(duration)
    finally:
        container.close()
        _close_if_owned(detector, resolved)

    # 4. Clean the track: bridge short gaps, smooth, apply the no-person policy
    rate = sampling.fps or source_fps or 1.0
    raw = np.stack(sampler.detections)  # (F, 130, 3)
    track = _clean_track(
        raw, label, rate=rate, smoothing=smoothing, window=window, max_gap=max_gap, no_person=no_person
    )
    return _result(
        sampler,
        track,
        rate=rate,
        source_fps=source_fps,
        duration=duration,
        detector=str(getattr(resolved, "name", type(resolved).__name__)),
        smoothing=smoothing,
        settings={
            "start": sampling.start,
            "end": sampling.end,
            "max_gap": max_gap,
            "window": window,
            "no_person": no_person,
            "parts": parts,
            **({"max_frames": sampling.max_frames, "trimmed": sampler.trimmed} if trim else {}),
        },
    )


def _result(
    sampler: _Sampler,
    track: _Track,
    *,
    rate: float,
    source_fps: float,
    duration: float,
    detector: str,
    smoothing: str,
    settings: dict[str, Any],
) -> ExtractionResult:
    """The kept frames of the cleaned ``track`` as poses on the sampled frames' canvas, and the report."""
    assert sampler.canvas is not None  # set by the first sampled frame
    frame_w, frame_h = sampler.canvas
    return ExtractionResult(
        poses=PoseSequence(_pose(track.keypoints[i], frame_w, frame_h) for i in track.keep),
        fps=float(rate),
        source_fps=source_fps,
        width=frame_w,
        height=frame_h,
        duration_s=duration,
        frames_decoded=sampler.decoded,
        frames_sampled=len(track.keypoints),
        times=tuple(sampler.times[i] for i in track.keep),
        frames_without_person=track.without_person,
        frames_bridged=track.bridged,
        frames_dropped=track.dropped,
        frames_held=track.held,
        keypoint_gaps_bridged=track.gaps_bridged,
        detector=detector,
        smoothing=smoothing,
        settings=settings,
    )
