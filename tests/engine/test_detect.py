import ast
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.poses import detect
from engine.poses.detect import (
    SOURCE_POSE_HINT,
    DetectorUnavailable,
    MediaPipeHolisticDetector,
    MediaPipePoseDetector,
    MediaPipeSegmenter,
    PoseDetector,
    Segmenter,
    available_pose_detectors,
    blazepose_to_coco,
    get_pose_detector,
    get_segmenter,
    register_pose_detector,
    register_segmenter,
)
from engine.poses.pose import KEYPOINT_NAMES, Pose, PoseError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.open(EXAMPLES / "astronaut.jpg").convert("RGB")


@pytest.fixture(scope="module")
def detector() -> MediaPipePoseDetector:
    pytest.importorskip("mediapipe")
    found = MediaPipePoseDetector()
    yield found
    found.close()


@pytest.fixture(scope="module")
def segmenter() -> MediaPipeSegmenter:
    pytest.importorskip("mediapipe")
    found = MediaPipeSegmenter()
    yield found
    found.close()


@pytest.fixture
def no_mediapipe(monkeypatch):
    """Make ``import mediapipe`` fail as it does where the extra is not installed."""
    monkeypatch.setitem(sys.modules, "mediapipe", None)


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(detect, "_POSE_DETECTORS", dict(detect._POSE_DETECTORS))
    monkeypatch.setattr(detect, "_SEGMENTERS", dict(detect._SEGMENTERS))


# --- MediaPipe on the example image ---------------------------------------------------------------


def test_mediapipe_finds_the_astronauts_head_and_shoulders(detector, astronaut):
    pose = detector.detect(astronaut)
    assert isinstance(pose, Pose)
    assert (pose.width, pose.height) == astronaut.size
    kp = pose.keypoints
    for name in ("nose", "neck", "r_shoulder", "l_shoulder", "r_eye", "l_eye"):
        assert pose.visible[KP[name]], name
        x, y = kp[KP[name], :2]
        assert 0 <= x < 512 and 0 <= y < 512, name
    assert kp[KP["nose"], 1] < kp[KP["neck"], 1]
    # Facing the camera: the person's right shoulder is on the image's left.
    assert kp[KP["r_shoulder"], 0] < kp[KP["neck"], 0] < kp[KP["l_shoulder"], 0]
    # The neck is the mid-shoulder point.
    np.testing.assert_allclose(
        kp[KP["neck"], :2], (kp[KP["r_shoulder"], :2] + kp[KP["l_shoulder"], :2]) / 2, atol=1.0
    )
    # Her face is in the upper middle of the portrait (nose around (223, 131)).
    assert 180 < kp[KP["nose"], 0] < 270 and 90 < kp[KP["nose"], 1] < 170


def test_mediapipe_detection_matches_the_shipped_example_pose(detector, astronaut):
    shipped = Pose.from_json(EXAMPLES / "astronaut_pose.json")
    found = detector.detect(astronaut)
    both = shipped.visible & found.visible
    assert both.sum() >= 8
    np.testing.assert_allclose(found.keypoints[both, :2], shipped.keypoints[both, :2], atol=3.0)


def test_mediapipe_returns_none_on_an_empty_picture(detector):
    assert detector.detect(Image.new("RGB", (256, 256), (30, 30, 30))) is None


def test_mediapipe_detector_accepts_other_modes_and_sizes(detector, astronaut):
    pose = detector.detect(astronaut.resize((384, 384)).convert("RGBA"))
    assert pose is not None and (pose.width, pose.height) == (384, 384)


def test_one_detector_serves_several_threads(detector, astronaut):
    results = []
    threads = [threading.Thread(target=lambda: results.append(detector.detect(astronaut))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and all(r == results[0] for r in results)


def test_mediapipe_segmentation_covers_the_person_not_the_frame(segmenter, astronaut):
    mask = segmenter.segment(astronaut)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    person = mask > 0.5
    assert 0.2 < person.mean() < 0.85
    assert person[131, 223] and person[300, 200]  # face, chest
    assert not person[20, 480] and not person[20, 20]  # grey backdrop, flag


def test_backends_satisfy_the_protocols(detector, segmenter):
    assert isinstance(detector, PoseDetector)
    assert isinstance(segmenter, Segmenter)
    assert detector.name == segmenter.name == "mediapipe"


# --- BlazePose -> COCO-18 -------------------------------------------------------------------------------


def _landmarks(visibility: float = 0.9) -> np.ndarray:
    lm = np.zeros((33, 3))
    lm[:, 2] = visibility
    lm[:, 0] = np.linspace(0.1, 0.9, 33)
    lm[:, 1] = np.linspace(0.2, 0.8, 33)
    return lm


def test_blazepose_mapping_follows_the_persons_sides():
    lm = _landmarks()
    kp = blazepose_to_coco(lm, 200, 100, min_visibility=0.5)
    pairs = {"nose": 0, "r_shoulder": 12, "l_shoulder": 11, "r_elbow": 14, "l_wrist": 15, "r_hip": 24}
    pairs |= {"l_knee": 25, "r_ankle": 28, "r_eye": 5, "l_eye": 2, "r_ear": 8, "l_ear": 7}
    for name, idx in pairs.items():
        np.testing.assert_allclose(kp[KP[name], :2], lm[idx, :2] * [200, 100], err_msg=name)
    np.testing.assert_allclose(kp[KP["neck"], :2], (lm[11, :2] + lm[12, :2]) / 2 * [200, 100])


def test_blazepose_neck_takes_the_weaker_shoulder_visibility():
    lm = _landmarks()
    lm[11, 2], lm[12, 2] = 0.95, 0.6
    assert blazepose_to_coco(lm, 100, 100, min_visibility=0.5)[KP["neck"], 2] == pytest.approx(0.6)


def test_blazepose_drops_low_visibility_and_off_image_landmarks():
    lm = _landmarks()
    lm[14, 2] = 0.2  # r_elbow hidden
    lm[27, 1] = 1.3  # l_ankle below the image
    kp = blazepose_to_coco(lm, 100, 100, min_visibility=0.5)
    assert kp[KP["r_elbow"]].tolist() == [0.0, 0.0, 0.0]
    assert kp[KP["l_ankle"]].tolist() == [0.0, 0.0, 0.0]
    assert kp[KP["nose"], 2] == pytest.approx(0.9)


def test_blazepose_mapping_rejects_the_wrong_landmark_count():
    with pytest.raises(PoseError, match="33"):
        blazepose_to_coco(np.zeros((25, 3)), 100, 100, min_visibility=0.5)


# --- selection and registry -------------------------------------------------------------------------------


def test_none_selects_no_backend():
    assert get_pose_detector("none") is None
    assert get_segmenter("none") is None


def test_auto_selects_mediapipe_holistic_when_installed(astronaut):
    pytest.importorskip("mediapipe")
    assert available_pose_detectors()[0] == "mediapipe-holistic"
    detector = get_pose_detector()
    assert isinstance(detector, MediaPipeHolisticDetector) and detector.name == "mediapipe-holistic"
    try:  # the source pose (the pipeline's "auto" detector) has the face the photo shows
        pose = detector.detect(astronaut)
    finally:
        detector.close()
    assert pose is not None and pose.face is not None and (pose.face[:, 2] > 0).sum() >= 60
    assert isinstance(get_segmenter("auto"), MediaPipeSegmenter)


def test_auto_returns_none_when_mediapipe_is_missing(no_mediapipe):
    assert get_pose_detector("auto") is None
    assert get_segmenter("auto") is None


def test_naming_mediapipe_when_missing_raises_with_an_install_hint(no_mediapipe):
    with pytest.raises(DetectorUnavailable, match=r"pip install 'poseanimate\[detect\]'"):
        get_pose_detector("mediapipe")
    with pytest.raises(DetectorUnavailable, match="mediapipe is not installed"):
        get_segmenter("mediapipe")


def test_unknown_backend_names_are_rejected():
    with pytest.raises(DetectorUnavailable, match="unknown pose detector 'dwpose'"):
        get_pose_detector("dwpose")
    assert issubclass(DetectorUnavailable, ValueError)


def test_registered_backends_are_selectable_and_join_auto(clean_registry, no_mediapipe):
    class Fixed:
        name = "fixed"

        def detect(self, image):
            return Pose(np.zeros((18, 3)), *image.size)

    register_pose_detector("fixed", Fixed)
    assert isinstance(get_pose_detector("fixed"), Fixed)
    assert isinstance(get_pose_detector("auto"), Fixed)  # mediapipe is missing, the next one loads

    class Blank:
        name = "blank"

        def segment(self, image):
            return np.zeros((image.height, image.width), np.float32)

    register_segmenter("blank", Blank)
    assert isinstance(get_segmenter("auto"), Blank)
    with pytest.raises(ValueError, match="backend name"):
        register_pose_detector("auto", Fixed)


def test_source_pose_hint_says_how_to_supply_a_pose_or_install_detection():
    for needle in ("source_pose", "pose_keypoints_2d", "frames", "pip install 'poseanimate[detect]'"):
        assert needle in SOURCE_POSE_HINT


def test_detect_module_imports_mediapipe_lazily():
    tree = ast.parse(Path(detect.__file__).read_text())
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top_level for a in n.names} | {
        n.module for n in top_level if isinstance(n, ast.ImportFrom)
    }
    assert not any(name and name.startswith("mediapipe") for name in names)
