"""``poseanimate eval`` and ``poseanimate eval ablations`` on synthetic videos and the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from engine.poses.video import encode_mp4

    root = tmp_path_factory.mktemp("videos")
    photo = np.asarray(Image.open(EXAMPLES / "astronaut.jpg").convert("RGB").resize((160, 160)))
    ordered = [photo[20 + 4 * i : 84 + 4 * i, 10 + 4 * i : 74 + 4 * i] for i in range(8)]
    shuffled = [ordered[i] for i in (0, 5, 2, 7, 1, 6, 3, 4)]
    Image.fromarray(ordered[0]).save(root / "source.png")
    paths = {"source": root / "source.png"}
    for name, frames in (("still", [ordered[0]] * 6), ("ordered", ordered), ("shuffled", shuffled)):
        paths[name] = encode_mp4([Image.fromarray(f) for f in frames], root / f"{name}.mp4", fps=8)
    return paths


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=16,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("clip")
    CLIPVisionModelWithProjection(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        path
    )
    return path


def _json(capsys, *argv) -> dict:
    assert main(["eval", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_json_on_identical_frames_gives_fc_100_and_we_0(videos, clip_dir, capsys):
    out = _json(capsys, videos["still"], "--source", videos["source"], "--clip", clip_dir)
    assert out["fc"] == pytest.approx(100.0, abs=1e-3)
    assert out["we"] == pytest.approx(0.0, abs=1e-12)
    assert out["flow_method"] == "dis" and out["lpips"] is None  # no LPIPS weights given: null
    assert set(out) >= {"lpips", "clip_i", "fc", "we", "ssim", "psnr", "l1", "flow_method"}


def test_eval_json_scores_a_shuffled_video_worse(videos, clip_dir, capsys):
    ordered = _json(capsys, videos["ordered"], "--source", videos["source"], "--clip", clip_dir)
    shuffled = _json(capsys, videos["shuffled"], "--source", videos["source"], "--clip", clip_dir)
    assert shuffled["fc"] < ordered["fc"] and shuffled["we"] > ordered["we"]


def test_eval_table_with_a_reference_video(videos, capsys):
    argv = ["eval", str(videos["ordered"]), "--source", str(videos["source"])]
    assert main([*argv, "--reference", str(videos["ordered"]), "--flow", "farneback"]) == 0
    text = capsys.readouterr().out
    assert "psnr" in text and "farneback" in text and "inf" in text


def test_eval_user_errors_are_one_line(videos, tmp_path, capsys):
    assert main(["eval", str(videos["ordered"])]) == 2
    assert "--source" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "none.mp4"), "--source", str(videos["source"])]) == 2
    assert "cannot read video" in capsys.readouterr().err
    assert main(["eval", "ablations", "--image", str(videos["source"])]) == 2
    assert "--poses" in capsys.readouterr().err


def test_eval_ablations_writes_table_json_and_contact_sheet(tiny_model_dir, tmp_path, capsys):
    targets = json.loads((EXAMPLES / "raise_arms.json").read_text())
    if isinstance(targets, dict) and "frames" in targets:
        targets["frames"] = targets["frames"][:2]
    poses = tmp_path / "poses.json"
    poses.write_text(json.dumps(targets))
    out = tmp_path / "ablations"
    argv = [
        "eval", "ablations", "--image", str(EXAMPLES / "astronaut.jpg"), "--poses", str(poses),
        "--source-pose", str(EXAMPLES / "astronaut_pose.json"), "--prompt", "an astronaut",
        "--model", str(tiny_model_dir), "--steps", "2", "--size", "64", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert list(rows) == ["full", "w/o PACM", "w/o DCAM", "w/o MGDM", "w/o PATA"]
    assert all(r["we"] is not None and r["lpips"] is None for r in rows.values())
    table = (out / "metrics.md").read_text()
    assert table.startswith("| variant |") and "w/o MGDM" in table
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[1] == 5 * 64 and sheet.size[0] >= 3 * 64
    assert len(list(out.glob("*.mp4"))) == 5
