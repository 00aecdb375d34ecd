"""Metric invariants (engine/evaluation.py) with randomly initialised networks: no weights, no hub."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.evaluation import LPIPS, evaluate, load_clip, psnr, read_video, ssim, warping_error

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    """A tiny random CLIP vision tower + image processor saved like a hub checkpoint."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )
    path = tmp_path_factory.mktemp("clip")
    CLIPVisionModelWithProjection(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path
    )
    return path


@pytest.fixture(scope="module")
def clip(clip_dir):
    return load_clip(clip_dir)


@pytest.fixture(scope="module")
def lpips_net() -> LPIPS:
    torch.manual_seed(0)
    net = LPIPS()
    for lin in net.lins:  # LPIPS' lin weights are non-negative
        lin.weight.data.abs_()
    return net


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    image = Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((160, 160))
    return np.asarray(image)


def _moving(photo: np.ndarray, n: int = 8, step: int = 3, size: int = 64) -> list[np.ndarray]:
    """A smooth video: a window sliding right and down over the photo by ``step`` px per frame."""
    return [
        photo[20 + i * step : 20 + i * step + size, 10 + i * step : 10 + i * step + size] for i in range(n)
    ]


def test_identical_frames_give_lpips_0_fc_100_we_0_and_clip_i_1(photo, clip, lpips_net):
    frame = _moving(photo)[0]
    out = evaluate([frame] * 5, frame, clip=clip, lpips=lpips_net)
    assert out["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert out["fc"] == pytest.approx(100.0, abs=1e-3)
    assert out["we"] == pytest.approx(0.0, abs=1e-12)
    assert out["clip_i"] == pytest.approx(1.0, abs=1e-5)
    assert out["flow_method"] == "dis" and out["ssim"] is None  # no reference video given


def test_metrics_without_weights_are_null(photo):
    video = _moving(photo, n=3)
    out = evaluate(video, video[0])
    assert out["lpips"] is None and out["clip_i"] is None and out["fc"] is None
    assert out["we"] is not None


@pytest.mark.parametrize("flow", ["dis", "farneback"])
def test_a_known_translation_is_recovered_and_scores_near_zero_warping_error(photo, flow):
    video = _moving(photo, n=4, step=2)
    we = warping_error(video, flow)
    noise = [np.random.default_rng(i).integers(0, 256, video[0].shape, dtype=np.uint8) for i in range(4)]
    assert we < 0.01, we
    assert warping_error(noise, flow) > 10 * we


def test_a_shuffled_video_scores_worse_on_fc_and_we(photo, clip):
    ordered = _moving(photo, n=8, step=4)
    shuffled = [ordered[i] for i in (0, 5, 2, 7, 1, 6, 3, 4)]
    a = evaluate(ordered, ordered[0], clip=clip)
    b = evaluate(shuffled, ordered[0], clip=clip)
    assert b["fc"] < a["fc"], (a["fc"], b["fc"])
    assert b["we"] > a["we"], (a["we"], b["we"])


def test_lpips_is_zero_on_itself_positive_elsewhere_and_disco_range_differs(photo, lpips_net):
    video = _moving(photo, n=3, step=6)
    correct = evaluate(video, video[0], lpips=lpips_net)
    disco = evaluate(video, video[0], lpips=lpips_net, disco_compat=True)
    assert correct["lpips"] > 0 and disco["lpips"] > 0
    assert correct["lpips"] != pytest.approx(disco["lpips"], rel=1e-3)
    assert correct["lpips_input_range"] == "[-1,1]" and disco["lpips_input_range"] == "[0,1] (DisCo)"


def test_lpips_loads_the_lpips_package_and_torchvision_weight_layouts(tmp_path, lpips_net):
    lin = {
        f"lin{i}.model.1.weight": torch.full_like(lpips_net.lins[i].weight, 0.1 * (i + 1)) for i in range(5)
    }
    vgg = {f"features.{k}": torch.full_like(v, 0.01) for k, v in lpips_net.features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision's file holds the classifier too
    torch.save(lin, tmp_path / "vgg.pth")
    torch.save(vgg, tmp_path / "vgg16.pth")
    net = LPIPS.from_pretrained(tmp_path / "vgg.pth", tmp_path / "vgg16.pth")
    assert torch.all(net.lins[4].weight == 0.5)
    assert torch.all(net.features[0].weight == 0.01)
    assert not any(p.requires_grad for p in net.parameters())


def test_reference_metrics_in_float64(photo):
    video = _moving(photo, n=3)
    same = evaluate(video, video[0], reference_frames=video)
    assert same["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert same["psnr"] == float("inf") and same["l1"] == 0.0
    off = [np.clip(f.astype(int) + 10, 0, 255).astype(np.uint8) for f in video]
    other = evaluate(video, video[0], reference_frames=off)
    assert other["ssim"] < 1.0 and other["l1"] > 0
    assert 25 < other["psnr"] < 30  # a +10 offset on unclipped pixels: 20*log10(255/10) = 28.1
    assert ssim(video[0], video[0]) == 1.0 and psnr(video[0], off[0]) < 30


def test_videos_are_read_with_pyav(tmp_path, photo):
    from engine.poses.video import encode_mp4

    video = _moving(photo, n=4)
    path = tmp_path / "v.mp4"
    encode_mp4([Image.fromarray(f) for f in video], path, fps=8)
    frames = read_video(path)
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3)
    assert np.abs(frames[1].astype(int) - video[1]).mean() < 8  # lossy H.264, but the same picture
    with pytest.raises(ValueError, match="cannot read video"):
        read_video(tmp_path / "missing.mp4")
