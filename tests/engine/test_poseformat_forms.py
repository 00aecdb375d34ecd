"""The accepted pose forms of the engine's one pose parser (``engine.inputs.poseformat``, which the API
uses to refuse a bad job): compact, OpenPose, normalised coordinates, units, the bundled examples, and
the stable code of each refusal."""

import json
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.inputs.poseformat import PoseError as PoseValidationError
from engine.inputs.poseformat import normalize_poses, normalize_source_pose, parse_pose_json
from jobs.contract import EXAMPLE_POSES
from tests.support.strategies import json_values

FRAME = EXAMPLE_POSES["frames"][0]


def openpose_frame(points, canvas=(512, 512)):
    flat = [v for p in points for v in p]
    frame = {"people": [{"pose_keypoints_2d": flat}]}
    if canvas:
        frame["canvas_width"], frame["canvas_height"] = canvas
    return frame


def code_of(obj, max_frames=64):
    with pytest.raises(PoseValidationError) as info:
        normalize_poses(obj, max_frames=max_frames)
    return info.value.code


def test_compact_form_round_trips_unchanged():
    assert normalize_poses(EXAMPLE_POSES, max_frames=64) == {
        "width": 512,
        "height": 512,
        "units": "pixels",
        "frames": [[[float(v) for v in p] for p in FRAME]] * 2,
    }


def test_openpose_single_frame_and_list_become_compact():
    one = normalize_poses(openpose_frame(FRAME), max_frames=64)
    many = normalize_poses([openpose_frame(FRAME)] * 3, max_frames=64)
    assert one["width"] == 512 and len(one["frames"]) == 1
    assert len(many["frames"]) == 3 and many["frames"][0] == one["frames"][0]


def test_normalized_coordinates_without_canvas_are_scaled_to_pixels():
    frame = [[x / 512, y / 512, c] for x, y, c in FRAME]
    out = normalize_poses(openpose_frame(frame, canvas=None), max_frames=64)
    assert out["width"] == 512
    assert out["frames"][0][1][:2] == pytest.approx([256, 150], abs=0.01)


def test_missing_keypoints_are_zeroed():
    frame = [list(p) for p in FRAME]
    frame[4] = [999999, -5, 0]  # confidence 0: position is meaningless
    assert normalize_poses({"width": 512, "height": 512, "frames": [frame]}, max_frames=4)["frames"][0][
        4
    ] == [0, 0, 0]


def test_source_pose_must_be_one_frame():
    assert len(normalize_source_pose(openpose_frame(FRAME))["frames"]) == 1
    with pytest.raises(PoseValidationError):
        normalize_source_pose(EXAMPLE_POSES)


@pytest.mark.parametrize(
    "obj,code",
    [
        ({"width": 512, "height": 512, "frames": [FRAME[:16]]}, "pose_keypoint_count"),
        (openpose_frame(FRAME[:16]), "pose_keypoint_count"),
        ({"width": 512, "height": 512, "frames": [[[math.nan, 1, 1], *FRAME[1:]]]}, "pose_not_finite"),
        ({"width": 512, "height": 512, "frames": [[[math.inf, 1, 1], *FRAME[1:]]]}, "pose_not_finite"),
        ({"width": 512, "height": 512, "frames": [[["1", 1, 1], *FRAME[1:]]]}, "pose_not_numeric"),
        ({"width": 512, "height": 512, "frames": [[[True, 1, 1], *FRAME[1:]]]}, "pose_not_numeric"),
        ({"width": 512, "height": 512, "frames": []}, "pose_frame_count"),
        ({"width": 512, "height": 512, "frames": [[[1000000000.0, 1, 1], *FRAME[1:]]]}, "pose_out_of_bounds"),
        ({"width": 512, "height": 512, "frames": [[[-2000, 1, 1], *FRAME[1:]]]}, "pose_out_of_bounds"),
        ({"width": 512, "height": 512, "frames": [[[1, 1, 2], *FRAME[1:]]]}, "pose_confidence"),
        ({"width": 512, "height": 512, "frames": [[[0, 0, 0]] * 18]}, "pose_empty_frame"),
        ({"width": 0, "height": 512, "frames": [FRAME]}, "pose_canvas_invalid"),
        ([openpose_frame(FRAME, (512, 512)), openpose_frame(FRAME, (640, 480))], "pose_canvas_inconsistent"),
        ({"people": []}, "pose_empty_frame"),
        ("not a pose", "pose_malformed"),
        ({"width": 512, "height": 512, "frames": "x"}, "pose_malformed"),
    ],
)
def test_bad_poses_are_refused_with_a_stable_code(obj, code):
    assert code_of(obj) == code


def test_too_many_frames_is_refused():
    assert code_of({"width": 512, "height": 512, "frames": [FRAME] * 5}, max_frames=4) == "pose_frame_count"


def test_malformed_and_deeply_nested_json_are_refused():
    for text in ("{", "[" * 100000 + "]" * 100000, '{"a": NaN'):
        with pytest.raises(PoseValidationError) as info:
            parse_pose_json(text, max_bytes=10**6)
        assert info.value.code == "pose_malformed"
    with pytest.raises(PoseValidationError) as info:
        parse_pose_json("[" * 100, max_bytes=10)
    assert info.value.code == "pose_too_large"


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_pose_parser_never_raises_anything_but_a_pose_error(obj):
    try:
        out = normalize_poses(obj, max_frames=8)
    except PoseValidationError:
        return
    assert all(len(f) == 18 for f in out["frames"])
    json.dumps(out, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 512), st.floats(0, 512), st.floats(0.01, 1)), min_size=18, max_size=18)
)
def test_any_in_canvas_pose_is_accepted(points):
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    assume(max(max(xs) - min(xs), max(ys) - min(ys)) >= 2)  # a single point is pose_degenerate
    out = normalize_poses({"width": 512, "height": 512, "frames": [[list(p) for p in points]]}, max_frames=1)
    assert len(out["frames"][0]) == 18


def test_explicit_units_are_honoured():
    tiny = [[0.5, 0.5, 1.0]] * 17 + [[0.9, 0.1, 1.0]]
    as_pixels = normalize_poses(
        {
            "width": 512,
            "height": 512,
            "units": "pixels",
            "frames": [[[x * 10, y * 10, c] for x, y, c in tiny]],
        },
        max_frames=1,
    )
    assert as_pixels["frames"][0][0] == [5.0, 5.0, 1.0]
    scaled = normalize_poses(
        {"width": 512, "height": 512, "units": "normalized", "frames": [tiny]}, max_frames=1
    )
    assert scaled["frames"][0][0] == [256.0, 256.0, 1.0]
    with pytest.raises(PoseValidationError):
        normalize_poses({"width": 512, "height": 512, "units": "inches", "frames": [tiny]}, max_frames=1)


@pytest.mark.parametrize("name", ["raise_arms.json", "wave_openpose.json", "astronaut_pose.json"])
def test_bundled_examples_are_accepted(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / name
    if not path.exists():
        pytest.skip("examples not present")
    out = normalize_poses(parse_pose_json(path.read_bytes(), max_bytes=10**6), max_frames=64)
    assert out["units"] == "pixels" and all(len(f) == 18 for f in out["frames"])


def test_a_pose_collapsed_to_one_point_is_degenerate():
    with pytest.raises(PoseValidationError) as info:
        normalize_poses({"width": 512, "height": 512, "frames": [[[100, 100, 1.0]] * 18]}, max_frames=1)
    assert info.value.code == "pose_degenerate"


@pytest.mark.parametrize(
    "obj",
    [
        {"people": [], "canvas_width": 512, "canvas_height": 512},
        {"width": 512, "height": 512, "frames": [[[0, 0, 0]] * 18]},
    ],
)
def test_empty_frames_are_refused_by_the_one_parser_the_engine_uses_too(obj):
    from engine.poses.pose import PoseSequence

    with pytest.raises(PoseValidationError) as info:
        normalize_poses(obj, max_frames=1)
    assert info.value.code == "pose_empty_frame"
    with pytest.raises(PoseValidationError):
        PoseSequence.from_json(obj)
