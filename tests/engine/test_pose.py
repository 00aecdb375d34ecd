import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from engine.method.masks import pose_mask
from engine.poses import pose as pose_module
from engine.poses.pose import (
    KEYPOINT_NAMES,
    LIMBS,
    NUM_KEYPOINTS,
    Pose,
    PoseError,
    PoseSequence,
    fit_transform,
)
from engine.poses.render import KEYPOINT_COLORS, LIMB_COLORS, render_pose
from tests.support.payloads import STANDING as STANDING_FRAME

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

STANDING = np.array(STANDING_FRAME, dtype=np.float64)
GAPPY = STANDING.copy()
GAPPY[[4, 10, 13, 16], 2] = 0.0  # r_wrist, r_ankle, l_ankle, r_ear missing

# sha256 of the (512, 512, 3) uint8 arrays that the ControlNet v1.1 annotator's draw_bodypose
# (OpenCV: ellipse2Poly + fillConvexPoly + circle) produces for STANDING and GAPPY.
ANNOTATOR_SHA256 = {
    "standing": "3a1b53daff243f6b4821c9fa31880221ba6d53b389c450e4a935f1256b647a3c",
    "gappy": "09ccae9cdd0566a657aa0363d9babff71c8bfb0b64eb02f8d08f9b0981fd0e51",
}


def standing(width: int = 512, height: int = 512) -> Pose:
    return Pose(STANDING, width, height)


def openpose_frame(kp: np.ndarray, width: int = 512, height: int = 512) -> dict:
    return {
        "people": [{"pose_keypoints_2d": kp.reshape(-1).tolist()}],
        "canvas_width": width,
        "canvas_height": height,
    }


# --- constants ----------------------------------------------------------------------------------


def test_keypoint_order_is_coco18_openpose():
    assert NUM_KEYPOINTS == len(KEYPOINT_NAMES) == len(KEYPOINT_COLORS) == 18
    assert KEYPOINT_NAMES[:2] == ("nose", "neck")
    assert KEYPOINT_NAMES[14:] == ("r_eye", "l_eye", "r_ear", "l_ear")


def test_limbs_are_the_annotator_limbseq_zero_indexed_with_matching_colours():
    limb_seq = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12]]
    limb_seq += [[12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18]]
    assert [list(limb) for limb in LIMBS] == [[a - 1, b - 1] for a, b in limb_seq]
    assert KEYPOINT_COLORS[:17] == LIMB_COLORS
    assert KEYPOINT_COLORS[0] == (255, 0, 0) and KEYPOINT_COLORS[12] == (0, 0, 255)


# --- Pose ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keypoints", "width", "height", "message"),
    [
        (np.zeros((17, 3)), 512, 512, "shape"),
        (np.zeros((18, 2)), 512, 512, "shape"),
        (np.full((18, 3), np.nan), 512, 512, "finite"),
        (np.c_[np.zeros((18, 2)), np.full(18, 1.5)], 512, 512, "confidence"),
        (np.c_[np.zeros((18, 2)), np.full(18, -0.1)], 512, 512, "confidence"),
        (np.zeros((18, 3)), 0, 512, "width"),
        (np.zeros((18, 3)), 512, -4, "height"),
        (np.zeros((18, 3)), 512.5, 512, "width"),
        ([["a"] * 3] * 18, 512, 512, "numbers"),
    ],
)
def test_pose_rejects_invalid_keypoints_and_canvas(keypoints, width, height, message):
    with pytest.raises(PoseError, match=message):
        Pose(keypoints, width, height)


def test_pose_error_is_a_value_error():
    assert issubclass(PoseError, ValueError)


def test_pose_stores_a_read_only_copy_and_zeroes_missing_keypoints():
    kp = GAPPY.copy()
    kp[4, :2] = (123.0, 45.0)  # coordinates of a missing keypoint carry no information
    pose = Pose(kp, 512, 512)
    kp[0, 0] = -1.0
    assert pose.keypoints[0, 0] == 256.0
    assert pose.keypoints[4].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        pose.keypoints[0, 0] = 1.0
    assert pose.keypoints.dtype == np.float64


def test_pose_visible_is_confidence_above_zero():
    assert Pose(GAPPY, 512, 512).visible.tolist() == (GAPPY[:, 2] > 0).tolist()


def test_poses_with_equal_values_are_equal_and_hash_alike():
    a, b = Pose(STANDING, 512, 512), Pose(STANDING.copy(), 512, 512)
    assert a == b and hash(a) == hash(b)
    assert a != Pose(STANDING, 512, 513)
    assert a != a.with_keypoints(GAPPY)


def test_with_keypoints_keeps_the_canvas_unless_given():
    moved = standing(640, 480).with_keypoints(GAPPY)
    assert (moved.width, moved.height) == (640, 480)
    assert moved.with_keypoints(GAPPY, width=100, height=50).width == 100


# --- canvas geometry ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"),
    [((640, 480), (512, 512)), ((480, 640), (512, 512)), ((300, 200), (600, 400)), ((512, 512), (256, 384))],
)
def test_fit_transform_matches_imageops_fit_pixel_for_pixel(src, dst):
    # A float image whose value is the x (then y) coordinate of each pixel centre: bilinear resampling
    # of a linear ramp is exact, so ImageOps.fit reveals where each output pixel came from.
    sw, sh = src
    scale, ox, oy = fit_transform(sw, sh, *dst)
    ramp_x = Image.fromarray(np.tile(np.arange(sw, dtype=np.float32) + 0.5, (sh, 1)), mode="F")
    ramp_y = Image.fromarray(np.tile((np.arange(sh, dtype=np.float32) + 0.5)[:, None], (1, sw)), mode="F")
    fit_x = np.asarray(ImageOps.fit(ramp_x, dst, Image.Resampling.BILINEAR, centering=(0.5, 0.5)))
    fit_y = np.asarray(ImageOps.fit(ramp_y, dst, Image.Resampling.BILINEAR, centering=(0.5, 0.5)))
    u = np.arange(dst[0]) + 0.5
    v = np.arange(dst[1]) + 0.5
    # Away from the borders (where resampling clamps), output centre u came from (u - ox) / scale.
    inner_x, inner_y = slice(2, -2), slice(2, -2)
    # Downscaling filters a ramp with slightly lopsided discrete weights: a few hundredths of a pixel;
    # a geometry slip (wrong crop branch, half-pixel offset) is off by far more.
    np.testing.assert_allclose(fit_x[dst[1] // 2, inner_x], ((u - ox) / scale)[inner_x], atol=0.05)
    np.testing.assert_allclose(fit_y[inner_y, dst[0] // 2], ((v - oy) / scale)[inner_y], atol=0.05)


def test_fit_transform_rejects_non_positive_sizes():
    with pytest.raises(PoseError, match="positive"):
        fit_transform(0, 10, 10, 10)


def test_to_canvas_maps_keypoints_like_the_image_and_keeps_confidence():
    pose = Pose(GAPPY, 640, 480)
    mapped = pose.to_canvas(512, 512)
    scale, ox, oy = fit_transform(640, 480, 512, 512)
    vis = pose.visible
    np.testing.assert_allclose(mapped.keypoints[vis, 0], GAPPY[vis, 0] * scale + ox)
    np.testing.assert_allclose(mapped.keypoints[vis, 1], GAPPY[vis, 1] * scale + oy)
    assert mapped.keypoints[:, 2].tolist() == pose.keypoints[:, 2].tolist()
    assert (mapped.width, mapped.height) == (512, 512)


def test_to_canvas_keeps_keypoints_that_fall_outside_the_new_canvas():
    kp = STANDING.copy()
    kp[4, :2] = (10.0, 240.0)  # near the left edge of a wide canvas: cropped away by the fit
    mapped = Pose(kp, 1024, 512).to_canvas(512, 512)
    assert mapped.keypoints[4, 0] < 0
    assert mapped.visible[4]


def test_to_canvas_on_the_same_size_is_identity():
    pose = standing()
    assert pose.to_canvas(512, 512) == pose


# --- parsing --------------------------------------------------------------------------------------


def test_from_json_reads_one_openpose_frame_in_pixels():
    seq = PoseSequence.from_json(openpose_frame(STANDING, 640, 480))
    assert len(seq) == 1 and (seq.width, seq.height) == (640, 480)
    np.testing.assert_array_equal(seq[0].keypoints, STANDING)


def test_from_json_reads_a_list_of_openpose_frames_and_uses_the_first_person():
    other = STANDING + np.array([5.0, 5.0, 0.0])
    frames = [
        {
            "people": [
                {"pose_keypoints_2d": STANDING.reshape(-1).tolist()},
                {"pose_keypoints_2d": other.reshape(-1).tolist()},
            ]
        },
        openpose_frame(GAPPY),
    ]
    frames[0].update(canvas_width=512, canvas_height=512)
    seq = PoseSequence.from_json(frames)
    assert len(seq) == 2
    np.testing.assert_array_equal(seq[0].keypoints, STANDING)
    np.testing.assert_array_equal(seq[1].keypoints, Pose(GAPPY, 512, 512).keypoints)


def test_openpose_frame_without_people_is_refused_like_the_api_does():
    with pytest.raises(PoseError) as info:
        PoseSequence.from_json(
            [openpose_frame(STANDING), {"people": [], "canvas_width": 512, "canvas_height": 512}]
        )
    assert info.value.code == "pose_empty_frame"


def test_openpose_without_canvas_uses_the_other_frames_size_and_pixels_need_one():
    bare = {"people": [{"pose_keypoints_2d": STANDING.reshape(-1).tolist()}]}
    assert PoseSequence.from_json([bare, openpose_frame(STANDING, 600, 700)]).width == 600
    # Target poses alone get the smallest canvas from the origin that holds them; a source pose
    # (it must match its image) is refused.
    derived = PoseSequence.from_json(bare)
    assert (derived.width, derived.height) == (
        int(STANDING[STANDING[:, 2] > 0, 0].max()) + 1,
        int(STANDING[STANDING[:, 2] > 0, 1].max()) + 1,
    )
    with pytest.raises(PoseError) as info:
        Pose.from_json(bare)
    assert info.value.code == "pose_canvas_missing"


def test_xy_pairs_read_as_confident_keypoints():
    seq = PoseSequence.from_json({"width": 512, "height": 512, "frames": [STANDING[:, :2].tolist()]})
    assert seq[0].keypoints[:, :2].tolist() == STANDING[:, :2].tolist()
    assert (seq[0].keypoints[:, 2] == 1.0).all()


def test_from_json_reads_exactly_what_the_pose_format_normalises():
    from engine.inputs.poseformat import normalize_poses

    data = {
        "width": 640,
        "height": 480,
        "frames": [(STANDING + np.array([0.123456, 0, 0])).tolist(), GAPPY.tolist()],
    }
    expected = normalize_poses(data, max_frames=8)
    seq = PoseSequence.from_json(data)
    np.testing.assert_array_equal(seq.keypoints(), np.array(expected["frames"]))
    assert seq.to_compact() == expected


def test_compact_form_reads_nested_triples():
    data = {"width": 512, "height": 512, "frames": [STANDING.tolist(), GAPPY.tolist()]}
    seq = PoseSequence.from_json(data)
    np.testing.assert_array_equal(seq.keypoints()[0], STANDING)


def test_normalized_coordinates_are_detected_and_scaled_to_pixels():
    norm = STANDING.copy()
    norm[:, 0] /= 640
    norm[:, 1] /= 480
    seq = PoseSequence.from_json({"width": 640, "height": 480, "frames": [norm.tolist()]})
    np.testing.assert_allclose(seq[0].keypoints, STANDING)
    seq = PoseSequence.from_json(openpose_frame(norm, 640, 480))
    np.testing.assert_allclose(seq[0].keypoints, STANDING)


def test_from_json_accepts_text_bytes_and_paths(tmp_path):
    data = {"width": 512, "height": 512, "frames": [STANDING.tolist()]}
    path = tmp_path / "poses.json"
    path.write_text(json.dumps(data))
    expected = PoseSequence.from_json(data)
    assert PoseSequence.from_json(json.dumps(data)) == expected
    assert PoseSequence.from_json(json.dumps(data).encode()) == expected
    assert PoseSequence.from_json(path) == expected


def _frame_with(index: int, value) -> dict:
    flat = STANDING.reshape(-1).tolist()
    flat[index] = value
    return {"people": [{"pose_keypoints_2d": flat}], "canvas_width": 512, "canvas_height": 512}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({"people": [{"pose_keypoints_2d": [1.0] * 72}]}, "pose_keypoint_count"),
        ({"width": 512, "height": 512, "frames": [STANDING[:16].tolist()]}, "pose_keypoint_count"),
        (_frame_with(0, float("nan")), "pose_not_finite"),
        (_frame_with(0, float("inf")), "pose_not_finite"),
        (_frame_with(0, "12"), "pose_not_numeric"),
        (_frame_with(0, None), "pose_not_numeric"),
        (_frame_with(2, True), "pose_not_numeric"),
        (_frame_with(2, -0.5), "pose_confidence"),
        (_frame_with(2, 1.01), "pose_confidence"),
        (_frame_with(0, 6000.0), "pose_out_of_bounds"),
        (_frame_with(1, -6000.0), "pose_out_of_bounds"),
        (_frame_with(0, 1200.0), "pose_out_of_bounds"),  # within the engine's old 10x, beyond 1x
        ([], "pose_frame_count"),
        ({"width": 512, "height": 512, "frames": []}, "pose_frame_count"),
        (
            [openpose_frame(STANDING, 512, 512), openpose_frame(STANDING, 640, 480)],
            "pose_canvas_inconsistent",
        ),
        ({"width": 0, "height": 512, "frames": [STANDING.tolist()]}, "pose_canvas_invalid"),
        ({"width": 20000, "height": 512, "frames": [STANDING.tolist()]}, "pose_canvas_invalid"),
        ({"people": [], "canvas_width": 512, "canvas_height": -1}, "pose_empty_frame"),
        ({"width": 512, "frames": [STANDING.tolist()]}, "pose_canvas_invalid"),
        ({"width": 512, "height": 512, "units": "inches", "frames": [STANDING.tolist()]}, "pose_malformed"),
        ({"width": 512, "height": 512, "frames": [[[256, 256, 1.0]] * 18]}, "pose_degenerate"),
        ({"width": 512, "height": 512, "frames": [np.zeros((18, 3)).tolist()]}, "pose_empty_frame"),
        ({"pose": []}, "pose_malformed"),
        ("{not json", "pose_malformed"),
        (b"\xff\xfe", "pose_malformed"),
        ({"people": [{"face_keypoints_2d": []}]}, "pose_malformed"),
    ],
)
def test_from_json_rejects_malformed_input_with_the_pose_format_code(data, code):
    with pytest.raises(PoseError) as info:
        PoseSequence.from_json(data)
    assert info.value.code == code


def test_nan_written_by_pythons_json_encoder_is_rejected():
    text = json.dumps(_frame_with(3, float("nan")))
    assert "NaN" in text
    with pytest.raises(PoseError, match="finite"):
        PoseSequence.from_json(text)


def test_from_json_limits_the_number_of_frames():
    data = {"width": 512, "height": 512, "frames": [STANDING.tolist()] * 5}
    assert len(PoseSequence.from_json(data, max_frames=5)) == 5
    with pytest.raises(PoseError, match=r"5 frames; allowed 1\.\.4"):
        PoseSequence.from_json(data, max_frames=4)
    with pytest.raises(PoseError, match=r"301 frames; allowed 1\.\.300"):
        PoseSequence.from_json({"width": 512, "height": 512, "frames": [STANDING.tolist()] * 301})


def test_compact_round_trip_is_exact_in_pixels_and_normalized():
    seq = PoseSequence([Pose(STANDING, 640, 480), Pose(GAPPY, 640, 480)])
    assert PoseSequence.from_json(seq.to_compact()) == seq
    back = PoseSequence.from_json(json.dumps(seq.to_compact(units="normalized")))
    np.testing.assert_allclose(back.keypoints(), seq.keypoints(), atol=1e-9)


def test_openpose_round_trip_is_exact():
    seq = PoseSequence([Pose(STANDING, 640, 480), Pose(GAPPY, 640, 480)])
    assert PoseSequence.from_json(json.dumps(seq.to_openpose())) == seq
    assert Pose.from_json(seq[1].to_openpose()) == seq[1]


def test_pose_from_json_reads_one_pose_and_rejects_several():
    assert Pose.from_json({"width": 512, "height": 512, "keypoints": STANDING.tolist()}) == standing()
    with pytest.raises(PoseError, match=r"2 frames; allowed 1\.\.1"):
        Pose.from_json([openpose_frame(STANDING), openpose_frame(GAPPY)])


def test_example_pose_files_parse():
    source = Pose.from_json(EXAMPLES / "astronaut_pose.json")
    raise_arms = PoseSequence.from_json(EXAMPLES / "raise_arms.json")
    wave = PoseSequence.from_json(EXAMPLES / "wave_openpose.json")
    assert (source.width, source.height) == (512, 512)
    assert 12 <= len(raise_arms) <= 16 and len(wave) == 8
    assert (wave.width, wave.height) == (640, 480)


# --- PoseSequence ---------------------------------------------------------------------------------


def test_pose_sequence_is_an_immutable_list_of_one_canvas():
    seq = PoseSequence([standing(), standing().with_keypoints(GAPPY)])
    assert len(seq) == 2 and list(seq) == list(seq.poses) and seq[-1] == seq.poses[1]
    assert isinstance(seq.poses, tuple)
    assert isinstance(seq[1:], PoseSequence) and len(seq[1:]) == 1
    with pytest.raises(AttributeError):
        seq.poses = ()  # type: ignore[misc]
    with pytest.raises(PoseError, match="differs"):
        PoseSequence([standing(), standing(640, 480)])
    with pytest.raises(PoseError, match="empty"):
        PoseSequence([])


def test_pose_sequence_to_canvas_maps_every_pose():
    seq = PoseSequence([standing(640, 480)] * 3).to_canvas(256, 256)
    assert all(p == standing(640, 480).to_canvas(256, 256) for p in seq)


# --- rendering --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "kp"), [("standing", STANDING), ("gappy", GAPPY)])
def test_render_pose_is_pixel_identical_to_the_controlnet_annotator(name, kp):
    image = render_pose(Pose(kp, 512, 512), 512, 512)
    assert image.mode == "RGB" and image.size == (512, 512)
    assert hashlib.sha256(np.asarray(image).tobytes()).hexdigest() == ANNOTATOR_SHA256[name]


def test_render_pose_dims_limbs_but_not_joints_on_black():
    pixels = np.asarray(render_pose(standing(), 512, 512)).astype(int)
    assert pixels[5, 5].tolist() == [0, 0, 0]
    # Midpoint of the r_hip -> r_knee limb (limb 7) and the r_knee joint itself.
    mid = ((STANDING[8, :2] + STANDING[9, :2]) / 2).astype(int)
    assert pixels[mid[1], mid[0]].tolist() == [int(c * 0.6) for c in LIMB_COLORS[7]]
    assert pixels[372, 226].tolist() == list(KEYPOINT_COLORS[9])


def test_render_pose_draws_a_limb_only_when_both_ends_are_visible():
    kp = STANDING.copy()
    kp[4, 2] = 0.0  # r_wrist gone: limb 3 (r_elbow -> r_wrist) must vanish
    pixels = np.asarray(render_pose(Pose(kp, 512, 512), 512, 512))
    limb3 = np.array([int(c * 0.6) for c in LIMB_COLORS[3]])
    assert not (pixels == limb3).all(axis=-1).any()
    full = np.asarray(render_pose(standing(), 512, 512))
    assert (full == limb3).all(axis=-1).any()


def test_render_pose_draws_a_zero_length_limb_on_a_small_canvas():
    # All keypoints at one point, on 64 px (stick half-width 1): a limb polygon on a single row,
    # which once crashed with numpy's "zero-size array to reduction operation".
    kp = np.tile([26.3, 30.7, 1.0], (18, 1))
    kp[0] = (26.3, 30.6, 1.0)
    pixels = np.asarray(render_pose(Pose(kp, 64, 64), 64, 64))
    assert pixels[30, 26].any()


def test_render_pose_of_an_empty_pose_is_black():
    assert not np.asarray(render_pose(Pose(np.zeros((18, 3)), 512, 512), 512, 512)).any()


def test_render_pose_scales_strokes_with_the_canvas():
    def drawn(size: int) -> int:
        pose = Pose(STANDING * [size / 512, size / 512, 1], size, size)
        return int(np.asarray(render_pose(pose, size, size)).any(axis=-1).sum())

    # Pixel area grows with the square of the size when stroke widths scale with it.
    assert drawn(1024) / drawn(512) == pytest.approx(4.0, rel=0.1)
    assert drawn(64) > 0


def test_render_pose_maps_the_pose_onto_the_requested_canvas_first():
    big = Pose(STANDING * [2, 2, 1], 1024, 1024)
    assert np.array_equal(
        np.asarray(render_pose(big, 512, 512)), np.asarray(render_pose(standing(), 512, 512))
    )


def test_render_pose_draws_the_on_canvas_part_of_a_limb_that_leaves_the_canvas():
    kp = STANDING.copy()
    kp[4, :2] = (-40.0, 600.0)  # r_wrist below-left of the canvas
    pixels = np.asarray(render_pose(Pose(kp, 512, 512), 512, 512))
    limb3 = np.array([int(c * 0.6) for c in LIMB_COLORS[3]])
    hits = np.argwhere((pixels == limb3).all(axis=-1))
    assert len(hits) and hits[:, 0].max() == 511  # reaches the bottom edge


# --- body mask --------------------------------------------------------------------------------------


def test_pose_mask_covers_the_skeleton_but_not_the_background():
    mask = pose_mask(standing(), 512, 512)
    assert mask.shape == (512, 512) and mask.dtype == bool
    for i in range(NUM_KEYPOINTS):
        x, y = STANDING[i, :2].astype(int)
        assert mask[y, x], KEYPOINT_NAMES[i]
    centre = ((STANDING[2, :2] + STANDING[5, :2] + STANDING[8, :2] + STANDING[11, :2]) / 4).astype(int)
    assert mask[centre[1], centre[0]]  # torso filled, not just outlined
    assert 0.05 < mask.mean() < 0.5
    assert not mask[:, :100].any() and not mask[:25].any()


def test_pose_mask_extends_the_torso_below_the_shoulders_when_the_hips_are_missing():
    kp = STANDING.copy()
    kp[8:14, 2] = 0.0  # a portrait: no hips or legs
    mask = pose_mask(Pose(kp, 512, 512), 512, 512, dilation=0)
    assert mask[250, 256]  # chest, between the arms, well below the shoulder line (y = 150)
    assert not mask[420, 256]


def test_pose_mask_thickness_follows_body_size():
    small = pose_mask(Pose(STANDING * [0.5, 0.5, 1] + [128, 128, 0], 512, 512), 512, 512).sum()
    assert pose_mask(standing(), 512, 512).sum() / small == pytest.approx(4.0, rel=0.15)


def test_pose_mask_dilation_grows_the_mask():
    thin = pose_mask(standing(), 512, 512, dilation=0)
    thick = pose_mask(standing(), 512, 512, dilation=12)
    assert thick.sum() > thin.sum() and (thick | thin).sum() == thick.sum()
    with pytest.raises(PoseError, match="dilation"):
        pose_mask(standing(), 512, 512, dilation=-1)


@pytest.mark.parametrize("pair", [(0, 1), (3, 4), (14, 15), (8, 11)])
def test_pose_mask_is_never_empty_with_two_visible_keypoints(pair):
    kp = np.zeros((18, 3))
    kp[list(pair)] = STANDING[list(pair)]
    kp[list(pair), 2] = 1.0
    assert pose_mask(Pose(kp, 512, 512), 512, 512).any()


def test_pose_mask_of_an_empty_pose_is_empty():
    assert not pose_mask(Pose(np.zeros((18, 3)), 64, 64), 64, 64).any()


def test_pose_mask_is_drawn_on_the_requested_canvas():
    mask = pose_mask(standing(), 256, 128)
    assert mask.shape == (128, 256)


# --- purity ------------------------------------------------------------------------------------------


def test_pose_module_imports_only_numpy_pil_stdlib_and_the_pose_format():
    tree = ast.parse(Path(pose_module.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module if node.module.startswith("engine.") else node.module.split(".")[0])
    assert roots <= {
        "engine.inputs.poseformat",
        "__future__",
        "json",
        "math",
        "numbers",
        "collections",
        "dataclasses",
        "pathlib",
        "typing",
    } | {"numpy"}


def test_importing_poses_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, engine.poses.pose, engine.poses.alignment; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)
