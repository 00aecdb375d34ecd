"""The one pose-format parser (engine/inputs/poseformat.py): every accepted form, every rule, every code.

Includes the cases where the API's and the engine's parsers used to drift (issue 9): canvas limit,
out-of-bounds margin, ``{"people": []}``, all-zero frames, ``[x, y]`` pairs, degenerate poses.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.inputs.poseformat import (
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
    POSE_ERROR_CODES,
    POSE_LIMITS,
    PoseError,
    normalize_poses,
    normalize_source_pose,
    parse_pose_json,
)
from engine.poses import pose as pose_module
from tests.support.payloads import STANDING

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

FRAME = STANDING
PIXELS = [[float(v) for v in p] for p in FRAME]


def compact(*frames, width=512, height=512, **extra):
    frames_out = [[list(p) if isinstance(p, list) else p for p in f] for f in frames]
    return {"width": width, "height": height, "frames": frames_out, **extra}


def openpose(points, canvas=(512, 512)):
    frame = {"people": [{"pose_keypoints_2d": [v for p in points for v in p]}]}
    if canvas is not None:
        frame["canvas_width"], frame["canvas_height"] = canvas
    return frame


def with_point(index, point, frame=FRAME):
    out = [list(p) for p in frame]
    out[index] = list(point)
    return out


def code_of(obj, **kwargs):
    kwargs.setdefault("max_frames", 64)
    with pytest.raises(PoseError) as info:
        normalize_poses(obj, **kwargs)
    assert info.value.code in POSE_ERROR_CODES and info.value.message == str(info.value)
    return info.value.code


# --- constants and the error type ---------------------------------------------------------------


def test_constants_and_the_error_type_are_shared_with_engine_pose():
    assert NUM_KEYPOINTS == len(KEYPOINT_NAMES) == 18 and KEYPOINT_NAMES[:2] == ("nose", "neck")
    assert pose_module.PoseError is PoseError and issubclass(PoseError, ValueError)
    assert pose_module.KEYPOINT_NAMES is KEYPOINT_NAMES and pose_module.NUM_KEYPOINTS == NUM_KEYPOINTS


def test_one_limits_table():
    assert POSE_LIMITS.max_canvas == 16384
    assert POSE_LIMITS.out_of_bounds_margin == 1.0
    assert POSE_LIMITS.normalized_canvas == 512
    assert POSE_LIMITS.max_bytes == 4 * 1024 * 1024


# --- accepted forms -------------------------------------------------------------------------------


def test_compact_form_becomes_the_canonical_pixel_form():
    assert normalize_poses(compact(FRAME, FRAME), max_frames=2) == {
        "width": 512,
        "height": 512,
        "units": "pixels",
        "frames": [PIXELS, PIXELS],
    }


@pytest.mark.parametrize(
    "obj",
    [
        openpose(FRAME),
        [openpose(FRAME)],
        {"width": 512, "height": 512, "keypoints": FRAME},
        compact(FRAME),
        compact([v for p in FRAME for v in p]),  # flat 54 numbers in the compact form
        {"people": [{"pose_keypoints_2d": FRAME}], "canvas_width": 512, "canvas_height": 512},  # triples
    ],
    ids=["openpose-frame", "openpose-list", "single-pose", "compact", "compact-flat", "openpose-triples"],
)
def test_every_form_gives_the_same_canonical_frame(obj):
    out = normalize_poses(obj, max_frames=4)
    assert out == {"width": 512, "height": 512, "units": "pixels", "frames": [PIXELS]}


def test_xy_pairs_have_confidence_one_in_every_form():
    pairs = [p[:2] for p in FRAME]
    expected = [[float(x), float(y), 1.0] for x, y, _ in FRAME]
    assert normalize_poses(compact(pairs), max_frames=1)["frames"] == [expected]
    assert normalize_poses(
        {"people": [{"pose_keypoints_2d": pairs}]} | {"canvas_width": 512, "canvas_height": 512}, max_frames=1
    )["frames"] == [expected]


def test_json_text_bytes_and_paths_are_read(tmp_path):
    obj = compact(FRAME)
    path = tmp_path / "p.json"
    path.write_text(json.dumps(obj))
    expected = normalize_poses(obj, max_frames=1)
    for data in (json.dumps(obj), json.dumps(obj).encode(), path, parse_pose_json(path, max_bytes=10**6)):
        assert normalize_poses(data, max_frames=1) == expected


def test_openpose_uses_the_first_person_and_a_shared_canvas():
    other = [[x + 5, y + 5, c] for x, y, c in FRAME]
    frame = {"people": [{"pose_keypoints_2d": [v for p in FRAME for v in p]}, {"pose_keypoints_2d": []}]}
    out = normalize_poses([frame, openpose(other, (640, 480))], max_frames=2)
    assert (out["width"], out["height"]) == (640, 480) and out["frames"][0] == PIXELS


def test_normalized_coordinates_are_detected_and_scaled():
    norm = [[x / 640, y / 480, c] for x, y, c in FRAME]
    out = normalize_poses(compact(norm, width=640, height=480), max_frames=1)
    np.testing.assert_allclose(out["frames"][0], PIXELS, atol=1e-3)


def test_normalized_coordinates_without_a_canvas_go_on_512():
    norm = [[x / 512, y / 512, c] for x, y, c in FRAME]
    out = normalize_poses(openpose(norm, canvas=None), max_frames=1)
    assert (out["width"], out["height"]) == (512, 512)
    np.testing.assert_allclose(out["frames"][0], PIXELS, atol=1e-3)
    assert normalize_poses({"frames": [norm]}, max_frames=1)["width"] == 512


def test_target_pixels_without_a_canvas_get_the_smallest_canvas_holding_them():
    # One pixel past the furthest confident point on each axis.
    xs = [p[0] for p in FRAME if p[2] > 0]
    ys = [p[1] for p in FRAME if p[2] > 0]
    for obj in (openpose(FRAME, canvas=None), {"frames": [FRAME]}):
        out = normalize_poses(obj, max_frames=1)
        assert (out["width"], out["height"]) == (int(max(xs)) + 1, int(max(ys)) + 1)
        np.testing.assert_allclose(out["frames"][0], PIXELS, atol=1e-3)
    assert normalize_poses(openpose(FRAME, canvas=None), max_frames=1, canvas=(600, 700))["width"] == 600


def test_source_pixels_without_a_canvas_are_refused_unless_the_image_size_is_given():
    assert code_of(openpose(FRAME, canvas=None), derive_canvas=False) == "pose_canvas_missing"
    with pytest.raises(PoseError) as info:
        normalize_source_pose(openpose(FRAME, canvas=None))
    assert info.value.code == "pose_canvas_missing"
    assert normalize_source_pose(openpose(FRAME, canvas=None), canvas=(512, 640))["height"] == 640


def test_explicit_units_override_the_guess():
    small = with_point(0, [0.5, 0.75, 1.0], [[0.25, 0.25, 1.0]] * 18)
    assert normalize_poses(compact(small), max_frames=1)["frames"][0][0] == [256.0, 384.0, 1.0]
    # Read as pixels, the same numbers are a sub-pixel pose: degenerate, not rescaled.
    assert code_of(compact(small, units="pixels")) == "pose_degenerate"
    near_origin = with_point(0, [0.5, 0.75, 1.0])
    as_pixels = normalize_poses(compact(near_origin, units="pixels"), max_frames=1)["frames"][0]
    assert as_pixels[0] == [0.5, 0.75, 1.0]
    big = [[x / 512, y / 512, c] for x, y, c in FRAME]
    np.testing.assert_allclose(
        normalize_poses(compact(big, units="normalized"), max_frames=1)["frames"][0], PIXELS, atol=1e-3
    )
    assert code_of(compact(FRAME, units="inches")) == "pose_malformed"


def test_a_two_pixel_canvas_is_never_treated_as_normalized():
    frame = [[0.0, 0.0, 0.0]] * 16 + [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    # pixels (not scaled to 2 px) -> a 1 px span -> degenerate, never silently rescaled
    assert code_of(compact(frame, width=2, height=2)) == "pose_degenerate"


def test_missing_keypoints_are_zeroed_and_confidences_rounded_before_visibility():
    frame = with_point(4, [999999, -5, 0])  # confidence 0: position is meaningless (and not bounds-checked)
    frame = with_point(5, [300, 150, 0.00004], frame)  # rounds to 0 at 4 places: missing
    frame = with_point(6, [318, 220, 0.123456], frame)
    out = normalize_poses(compact(frame), max_frames=1)["frames"][0]
    assert out[4] == [0.0, 0.0, 0.0] and out[5] == [0.0, 0.0, 0.0] and out[6] == [318.0, 220.0, 0.1235]


def test_coordinates_are_rounded_to_a_thousandth_of_a_pixel():
    out = normalize_poses(compact(with_point(0, [256.123456, 96.0004, 1.0])), max_frames=1)
    assert out["frames"][0][0][:2] == [256.123, 96.0]


def test_source_pose_is_exactly_one_frame():
    assert len(normalize_source_pose(openpose(FRAME))["frames"]) == 1
    with pytest.raises(PoseError) as info:
        normalize_source_pose(compact(FRAME, FRAME))
    assert info.value.code == "pose_frame_count"


def test_frame_count_bounds_come_from_the_caller():
    assert len(normalize_poses(compact(*[FRAME] * 5), max_frames=5)["frames"]) == 5
    assert code_of(compact(*[FRAME] * 5), max_frames=4) == "pose_frame_count"
    assert code_of(compact(FRAME), max_frames=4, min_frames=2) == "pose_frame_count"
    assert code_of(compact(), max_frames=4) == "pose_frame_count"
    assert code_of([]) == "pose_frame_count"


# --- refusals, one code each ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        (compact(FRAME[:16]), "pose_keypoint_count"),
        (openpose(FRAME[:16]), "pose_keypoint_count"),
        (
            {"people": [{"pose_keypoints_2d": [1.0] * 72}], "canvas_width": 9, "canvas_height": 9},
            "pose_keypoint_count",
        ),
        (compact(with_point(0, [1, 2, 3, 4])), "pose_malformed"),
        (compact(with_point(0, [math.nan, 1, 1])), "pose_not_finite"),
        (compact(with_point(0, [math.inf, 1, 1])), "pose_not_finite"),
        (compact(with_point(0, [10**400, 1, 1])), "pose_not_finite"),
        (compact(with_point(0, ["1", 1, 1])), "pose_not_numeric"),
        (compact(with_point(0, [None, 1, 1])), "pose_not_numeric"),
        (compact(with_point(0, [True, 1, 1])), "pose_not_numeric"),
        (compact(with_point(0, [1, 1, 1.01])), "pose_confidence"),
        (compact(with_point(0, [1, 1, -0.5])), "pose_confidence"),
        (compact([[0, 0, 0]] * 18), "pose_empty_frame"),
        ({"people": [], "canvas_width": 512, "canvas_height": 512}, "pose_empty_frame"),
        ({"people": []}, "pose_empty_frame"),
        ([openpose(FRAME), {"people": []}], "pose_empty_frame"),
        (compact(FRAME, width=0), "pose_canvas_invalid"),
        (compact(FRAME, width=512.5), "pose_canvas_invalid"),
        (compact(FRAME, width="512"), "pose_canvas_invalid"),
        (compact(FRAME, width=10**400), "pose_canvas_invalid"),
        ({"width": 512, "frames": [FRAME]}, "pose_canvas_invalid"),
        (
            {"people": [{"pose_keypoints_2d": [v for p in FRAME for v in p]}], "canvas_width": 512},
            "pose_canvas_invalid",
        ),
        ([openpose(FRAME, (512, 512)), openpose(FRAME, (640, 480))], "pose_canvas_inconsistent"),
        ({"pose": []}, "pose_malformed"),
        ("not a pose", "pose_malformed"),
        (b"\xff\xfe", "pose_malformed"),
        (42, "pose_malformed"),
        (compact(FRAME) | {"frames": "x"}, "pose_malformed"),
        ([1, 2], "pose_malformed"),
        ({"people": "x"}, "pose_malformed"),
        ({"people": [{"face_keypoints_2d": []}], "canvas_width": 9, "canvas_height": 9}, "pose_malformed"),
    ],
)
def test_bad_poses_are_refused_with_a_stable_code(obj, code):
    assert code_of(obj) == code


def test_the_largest_canvas_is_16384_not_65536():  # drift: the engine allowed 65536
    assert normalize_poses(compact(FRAME, width=16384, height=16384), max_frames=1)["width"] == 16384
    assert code_of(compact(FRAME, width=16385)) == "pose_canvas_invalid"
    assert code_of(compact(FRAME, width=65536)) == "pose_canvas_invalid"


@pytest.mark.parametrize(
    ("point", "ok"),
    [
        ((-500, 10), True),
        ((1020, 10), True),
        ((10, 1024), True),
        ((-520, 10), False),
        ((1030, 10), False),
        ((10, 5000), False),
    ],
)
def test_keypoints_may_leave_the_canvas_by_one_canvas_size_not_ten(point, ok):  # drift: engine allowed 10
    obj = compact(with_point(4, [*point, 1.0]))
    if ok:
        assert normalize_poses(obj, max_frames=1)["frames"][0][4][:2] == [float(v) for v in point]
    else:
        assert code_of(obj) == "pose_out_of_bounds"


@pytest.mark.parametrize(
    "frame",
    [
        [[256, 256, 1.0]] * 18,  # all 18 at one point (crashed the engine's renderer before)
        [[256 + (i % 2), 256, 1.0] for i in range(18)],  # a 1 px span
        [[0, 0, 0]] * 17 + [[256, 256, 1.0]],  # a single confident keypoint
    ],
    ids=["one-point", "one-pixel", "single-keypoint"],
)
def test_degenerate_poses_are_refused(frame):
    assert code_of(compact(FRAME, frame)) == "pose_degenerate"


def test_a_two_pixel_span_is_enough():
    frame = [[0, 0, 0]] * 16 + [[256, 256, 1.0], [258, 256, 1.0]]
    assert normalize_poses(compact(frame), max_frames=1)["frames"][0][17] == [258.0, 256.0, 1.0]


# --- JSON text --------------------------------------------------------------------------------------


def test_json_text_is_size_capped_and_malformed_text_refused(tmp_path):
    for text in ("{", "[" * 100000 + "]" * 100000, '{"a": NaN', b"\xff\xfe"):
        with pytest.raises(PoseError) as info:
            parse_pose_json(text, max_bytes=10**6)
        assert info.value.code == "pose_malformed"
    for big in ("[" * 100, b"[" * 100):
        with pytest.raises(PoseError) as info:
            parse_pose_json(big, max_bytes=10)
        assert info.value.code == "pose_too_large"
    path = tmp_path / "big.json"
    path.write_text(json.dumps(compact(FRAME)))
    with pytest.raises(PoseError) as info:
        parse_pose_json(path, max_bytes=10)
    assert info.value.code == "pose_too_large"
    with pytest.raises(PoseError) as info:
        parse_pose_json(tmp_path / "missing.json", max_bytes=10)
    assert info.value.code == "pose_malformed"


def test_nan_from_pythons_json_encoder_is_not_finite():
    text = json.dumps(compact(with_point(3, [float("nan"), 1, 1])))
    assert "NaN" in text and code_of(text) == "pose_not_finite"


def test_output_is_plain_finite_json():
    out = normalize_poses(compact(with_point(2, [-0.0, 5, 1.0])), max_frames=1)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert math.copysign(1.0, out["frames"][0][2][0]) == 1.0  # no -0.0 in stored JSON


@pytest.mark.parametrize("name", ["raise_arms.json", "wave_openpose.json", "astronaut_pose.json"])
def test_bundled_examples_are_accepted(name):
    out = normalize_poses(EXAMPLES / name, max_frames=64)
    assert out["units"] == "pixels" and all(len(f) == NUM_KEYPOINTS for f in out["frames"])


# --- purity --------------------------------------------------------------------------------------------


def test_importing_the_pose_format_loads_neither_torch_nor_pil():
    code = (
        "import sys, engine.inputs.poseformat; "
        "assert 'torch' not in sys.modules and 'PIL' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
