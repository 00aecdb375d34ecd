"""`poseanimate make-tiny-model` and `poseanimate animate`, through the installed console script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _poseanimate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("poseanimate", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "cli.main"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("cli") / "m"
    done = _poseanimate("make-tiny-model", str(target))
    assert done.returncode == 0, done.stderr
    assert "RANDOM-WEIGHT" in done.stdout
    return target


def _first_poses(tmp_path: Path, count: int = 4) -> Path:
    """The first ``count`` frames of the raise-arms example: every stage runs, at a fraction of the
    14 frames' cost on the tiny model (the slowest CLI tests stay well inside the per-test timeout)."""
    doc = json.loads((EXAMPLES / "raise_arms.json").read_text())
    return _write(tmp_path / "poses.json", {**doc, "frames": doc["frames"][:count]})


def _animate(model: Path, out: Path, poses: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _poseanimate(
        "animate", "--model", str(model),
        "--image", str(EXAMPLES / "astronaut.jpg"),
        "--poses", str(poses),
        "--source-pose", str(EXAMPLES / "astronaut_pose.json"),
        "--prompt", "an astronaut",
        "--out", str(out),
        "--steps", "2", "--size", "64", "--transition-frames", "3", *extra,
    )  # fmt: skip


def test_animate_writes_an_mp4_with_one_plus_transition_plus_target_frames(cli_model, tmp_path):
    from engine.poses.video import probe_mp4

    out, poster, poses = tmp_path / "a.mp4", tmp_path / "poster.png", _first_poses(tmp_path)
    done = _animate(cli_model, out, poses, "--poster", str(poster), "--fps", "12")
    assert done.returncode == 0, done.stderr
    targets = len(json.loads(poses.read_text())["frames"])
    info = probe_mp4(out)
    assert info["frames"] == 1 + 3 + targets
    assert (info["width"], info["height"], info["codec"], info["pix_fmt"]) == (64, 64, "h264", "yuv420p")
    assert info["fps"] == 12 and info["faststart"]
    assert poster.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RANDOM-WEIGHT" in done.stderr  # the tiny model is labelled as such
    assert "inverting" in done.stderr and "encoding" in done.stderr  # per-stage progress bars
    # ... counting steps (T=2: 2 DDIM + 2 pose-aware inversion steps) and frames, not per-mille
    frames = 1 + 3 + targets
    assert re.search(r"inverting.*\b4/4 ", done.stderr), done.stderr
    assert re.search(rf"encoding.*\b{frames}/{frames} ", done.stderr), done.stderr
    assert "‰" not in done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--poses", "missing.json"), "cannot read poses"),
        (("--image", str(EXAMPLES / "raise_arms.json")), "not an image"),
        (("--size", "63"), "multiple of 8"),
        (("--steps", "0"), "num_inference_steps"),
        (("--subject", "dragon"), "does not occur"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(cli_model, tmp_path, change, message):
    out = tmp_path / "a.mp4"
    args = dict(zip(change[::2], change[1::2], strict=True))
    base = {
        "--image": str(EXAMPLES / "astronaut.jpg"),
        "--poses": str(EXAMPLES / "raise_arms.json"),
        "--prompt": "an astronaut",
        "--steps": "2",
        "--size": "64",
    }
    extra = [x for k, v in args.items() if k not in base for x in (k, v)]
    base.update({k: v for k, v in args.items() if k in base})
    done = _poseanimate(
        "animate", "--model", str(cli_model), "--source-pose", str(EXAMPLES / "astronaut_pose.json"),
        "--out", str(out), *[x for kv in base.items() for x in kv], *extra,
    )  # fmt: skip
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("poseanimate: error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()  # no half-written video is left behind


def _write(path: Path, content: object) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif hasattr(content, "save"):
        content.save(path)
    else:
        path.write_text(json.dumps(content))
    return path


def _truncated_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.effect_noise((128, 128), 60).convert("RGB").save(out, format="PNG")
    return out.getvalue()[:3000]


def _late_refusals():
    from PIL import Image

    one_point = {"width": 512, "height": 512, "frames": [[[200, 200, 1.0]] * 18]}
    return {
        "image 8x8": ("--image", "img.png", Image.new("RGB", (8, 8)), "image is 8x8"),
        "image 1x4000": ("--image", "img.png", Image.new("RGB", (1, 4000)), "at least 32 px"),
        "truncated image": ("--image", "img.png", _truncated_png(), "truncated or corrupt"),
        "all-black mask": ("--mask", "mask.png", Image.new("L", (64, 64), 0), "mask is empty"),
        "transparent mask": (
            "--mask",
            "mask.png",
            Image.new("RGBA", (64, 64), (255, 255, 255, 0)),
            "mask is empty",
        ),
        "truncated mask": ("--mask", "mask.png", _truncated_png(), "truncated or corrupt"),
        "prompt of spaces": ("--prompt", None, "   ", "prompt must be a non-empty string"),
        "subject not in prompt": ("--subject", None, "dancer", "does not occur in the prompt"),
        "degenerate pose": ("--poses", "p.json", one_point, "span less than 2 px"),
        "people []": (
            "--poses",
            "p.json",
            {"people": [], "canvas_width": 512, "canvas_height": 512},
            "no people",
        ),
        "zero confidence": (
            "--poses",
            "p.json",
            {"width": 512, "height": 512, "frames": [[[5, 5, 0]] * 18]},
            "no confident keypoint",
        ),
    }


@pytest.mark.parametrize("case", list(_late_refusals()))
def test_the_cli_refuses_what_the_api_refuses_before_loading_a_model(tmp_path, case):
    flag, name, content, message = _late_refusals()[case]
    value = str(_write(tmp_path / name, content)) if name else content
    args = {
        "--image": str(EXAMPLES / "astronaut.jpg"),
        "--poses": str(EXAMPLES / "raise_arms.json"),
        "--prompt": "an astronaut",
    }
    extra: list[str] = []
    if flag in args:
        args[flag] = value
    else:
        extra = [flag, value]
    # A model directory that does not exist: the refusal must come first, from the input rules.
    done = _poseanimate(
        "animate", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "a.mp4"),
        "--size", "64", *[x for kv in args.items() for x in kv], *extra, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("poseanimate: error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "a.mp4").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--device", "cuda"], "no usable CUDA device"),
        (["--model", "stable-diffusion-v1-5/stable-diffusion-v1-5"], "--model tiny"),
    ],
    ids=["cuda without cuda", "hub model offline"],
)
def test_machine_and_model_mistakes_print_one_line_with_a_way_out(tmp_path, extra, message):
    import torch

    if extra[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = _poseanimate(
        "animate", "--image", str(EXAMPLES / "astronaut.jpg"), "--poses", str(EXAMPLES / "raise_arms.json"),
        "--source-pose", str(EXAMPLES / "astronaut_pose.json"), "--prompt", "an astronaut",
        "--out", str(tmp_path / "a.mp4"), "--size", "64", *extra, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("poseanimate: error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("flag", [(), ("--no-allocator-tuning",)])
def test_animate_on_a_cpu_tunes_the_allocator_unless_told_not_to(cli_model, tmp_path, monkeypatch, flag):
    from cli.main import main
    from engine.weights import runtime

    calls: list[bool] = []
    monkeypatch.setattr(runtime, "tune_cpu_allocator", lambda: calls.append(True) or True)
    code = main([
        "animate", "--model", str(cli_model), "--device", "cpu",
        "--image", str(EXAMPLES / "astronaut.jpg"),
        "--poses", str(_first_poses(tmp_path, 2)),
        "--source-pose", str(EXAMPLES / "astronaut_pose.json"),
        "--prompt", "an astronaut", "--out", str(tmp_path / "a.mp4"),
        "--steps", "1", "--size", "64", "--transition-frames", "1", *flag,
    ])  # fmt: skip
    assert code == 0 and (tmp_path / "a.mp4").stat().st_size > 0
    assert calls == ([] if flag else [True])


def test_a_refused_animate_never_imports_torch(tmp_path):
    from PIL import Image

    """The input rules run before torch, diffusers or transformers are imported: a refusal is quick.
    The last command passes them and is refused by the mask's fit, which does import torch: the probe
    sees an import when there is one."""
    ok = {
        "--image": str(EXAMPLES / "astronaut.jpg"),
        "--poses": str(EXAMPLES / "raise_arms.json"),
        "--prompt": "an astronaut",
        "--out": str(tmp_path / "a.mp4"),
        "--size": "64",
        "--model": str(tmp_path / "no-model"),
    }
    degenerate = _write(
        tmp_path / "p.json", {"width": 512, "height": 512, "frames": [[[200, 200, 1.0]] * 18]}
    )
    refusals = [
        {"--prompt": "   "},
        {"--subject": "dancer"},
        {"--image": str(_write(tmp_path / "img.png", _truncated_png()))},
        {"--poses": str(degenerate)},
        {"--size": "63"},
        {"--out": str(tmp_path / "a.mov")},
    ]
    black = {"--mask": str(_write(tmp_path / "mask.png", Image.new("L", (64, 64), 0)))}
    argvs = [
        ["animate", *[x for kv in {**ok, **change}.items() for x in kv]] for change in [*refusals, black]
    ]
    probe = (
        "import json, sys\n"
        "from cli.main import main\n"
        "heavy = ('torch', 'diffusers', 'transformers')\n"
        "seen = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    code = main(argv)\n"
        "    seen.append([code, sorted(m for m in heavy if m in sys.modules)])\n"
        "print(json.dumps(seen))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(argvs)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen[:-1] == [[2, []]] * len(refusals), done.stderr
    assert seen[-1][0] == 2 and "torch" in seen[-1][1], done.stderr  # fitting the mask does import torch
    errors = [line for line in done.stderr.splitlines() if line.startswith("poseanimate: error:")]
    assert len(errors) == len(refusals) + 1 and "mask is empty" in errors[-1], done.stderr
