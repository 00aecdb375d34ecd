"""Property-based fuzzing of the two pose parsers (issue 6): the API's (``engine.inputs.poseformat``,
torch-free, which keeps bad poses off the GPU) and the engine's (``engine.poses.pose``, which runs on
the GPU worker).

Inputs are near-valid poses with one or more fields mutated (hostile numbers, wrong shapes, wrong
types), where parser bugs hide, besides arbitrary JSON. Properties: the API parser refuses with a
PoseValidationError (a 422 code) and nothing else; whatever it accepts, the engine accepts too,
with the same keypoints, so a job that passed the API never fails in the engine over its pose.
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.inputs.poseformat import PoseError as PoseValidationError
from engine.inputs.poseformat import normalize_poses, parse_pose_json
from engine.poses.pose import PoseError, PoseSequence
from tests.support.strategies import json_values

HOSTILE_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),  # beyond float range
    st.sampled_from([0, -1, 1, 0.5, 1e-320, 1e308, -1e308, 2**63, True, False]),
)
ANY_LEAF = st.one_of(HOSTILE_NUMBERS, st.none(), st.text(max_size=4), st.lists(st.integers(), max_size=3))
COORD = st.floats(-100, 700, allow_nan=False)
CONF = st.floats(0, 1)


@st.composite
def near_valid_poses(draw: st.DrawFn) -> object:
    """A compact or OpenPose pose sequence, then a few of its values, lengths or types mutated."""
    n_frames = draw(st.integers(1, 4))
    frames = [[[draw(COORD), draw(COORD), draw(CONF)] for _ in range(18)] for _ in range(n_frames)]
    compact = draw(st.booleans())
    if compact:
        pose: dict[str, object] = {
            "width": draw(st.sampled_from([512, 640, 1])),
            "height": 512,
            "frames": frames,
        }
        if draw(st.booleans()):
            pose["units"] = draw(st.sampled_from(["pixels", "normalized", "inches", None, 3]))
    for _ in range(draw(st.integers(0, 3))):
        frame = draw(st.integers(0, n_frames - 1))
        kind = draw(st.sampled_from(["value", "point", "frame", "canvas"]))
        point = draw(st.integers(0, 17))
        if kind == "value" and point < len(frames[frame]) and len(frames[frame][point]) == 3:
            frames[frame][point][draw(st.integers(0, 2))] = draw(ANY_LEAF)
        elif kind == "point" and point < len(frames[frame]):
            frames[frame][point] = draw(st.lists(ANY_LEAF, max_size=4))
        elif kind == "frame":
            frames[frame] = frames[frame][: draw(st.integers(0, 19))]
        elif kind == "canvas" and compact:
            pose[draw(st.sampled_from(["width", "height"]))] = draw(ANY_LEAF)
    if compact:
        return pose
    return [
        {
            "people": [{"pose_keypoints_2d": [v for p in f for v in (p if isinstance(p, list) else [p])]}],
            "canvas_width": 512,
            "canvas_height": 512,
        }
        for f in frames
    ]


FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(near_valid_poses())  # arbitrary JSON: tests/engine/test_poseformat_forms.py
def test_api_pose_parser_refuses_only_with_a_pose_error(obj):
    try:
        out = normalize_poses(obj, max_frames=8)
    except PoseValidationError as exc:
        assert exc.code.startswith("pose_") and exc.message
        return
    assert all(len(f) == 18 for f in out["frames"]) and 1 <= len(out["frames"]) <= 8
    json.dumps(out, allow_nan=False)  # what is stored for the worker is plain, finite JSON


@FUZZ
@given(near_valid_poses())
def test_what_the_api_accepts_the_engine_accepts_with_the_same_keypoints(obj):
    try:
        out = normalize_poses(obj, max_frames=8)
    except PoseValidationError:
        return
    sequence = PoseSequence.from_json(json.loads(json.dumps(out)))  # as the worker reads it back
    assert (sequence.width, sequence.height) == (out["width"], out["height"]) and len(sequence) == len(
        out["frames"]
    )
    expected = np.array(out["frames"], dtype=np.float64)
    got = np.stack([p.keypoints for p in sequence])
    np.testing.assert_allclose(got, expected, atol=1e-6)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_api_pose_text_parser_refuses_only_with_a_pose_error(text):
    try:
        parse_pose_json(text, max_bytes=1000)
    except PoseValidationError as exc:
        assert exc.code in ("pose_malformed", "pose_too_large")


@FUZZ
@given(st.one_of(near_valid_poses(), json_values))
def test_engine_pose_parser_refuses_only_with_a_pose_error(obj):
    with contextlib.suppress(PoseError):  # anything else (TypeError, KeyError, ...) fails the test
        PoseSequence.from_json(obj)


def test_engine_pose_parser_refuses_an_integer_beyond_float_range_with_a_pose_error():
    frame = [[300, 200, 1]] * 18
    frame[0] = [10**400, 200, 1]
    with pytest.raises(PoseError):
        PoseSequence.from_json({"width": 512, "height": 512, "frames": [frame]})
