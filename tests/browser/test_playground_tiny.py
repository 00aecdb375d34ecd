"""The playground end to end on the real method: the worker runs the tiny random-weight model on
the CPU (S3 storage on moto, as in tests/integration), so the page follows real engine stages and
plays the MP4 the engine encoded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.clips import astronaut_mp4
from tests.support.stack import API_KEY, Service, running_service

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
_EXAMPLE = json.loads((Path(__file__).resolve().parents[2] / "examples/raise_arms.json").read_text())
TWO_FRAMES = json.dumps({**_EXAMPLE, "frames": _EXAMPLE["frames"][:2]}).encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (make services installs Debian's chromium)")
    with running_service(tmp_path_factory.mktemp("browser-tiny")) as svc:
        yield svc


@pytest.fixture
def open_page(stack):
    """A page on the playground with the key saved and the example photo chosen; yields (page, the
    console and page errors)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(bypass_csp=True)
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(stack.api_url + "/")
        page.fill("#api-key", API_KEY)
        page.click("#save-key")
        page.click("#use-example-image")
        yield page, errors
        browser.close()


def run_to_the_end(page, **fields: str) -> set[str]:
    """Fill the parameters, submit, and follow the job to its end; returns the stages seen active."""
    for field, value in fields.items():
        page.fill(f"#{field}", value)
    page.click("#submit")
    stages: set[str] = set()
    for _ in range(1200):
        stages |= set(page.eval_on_selector_all("#stages li.active", "els => els.map(e => e.dataset.stage)"))
        if page.text_content("#job-status") in ("succeeded", "failed", "canceled"):
            break
        page.wait_for_timeout(100)
    assert page.text_content("#job-status") == "succeeded", page.text_content("#error")
    page.wait_for_function("document.getElementById('result-video').readyState >= 2", timeout=20000)
    assert page.evaluate("document.getElementById('result-video').duration") > 0
    return stages


def test_a_dance_clip_becomes_poses_you_can_see_then_a_video(open_page, stack):
    page, errors = open_page
    page.check("input[name=motion][value=video]")
    clip = astronaut_mp4(3, fps=8)  # 3 frames of the astronaut photo sliding right
    page.set_input_files("#video-file", {"name": "dance.mp4", "mimeType": "video/mp4", "buffer": clip})
    page.click("#extract-poses")
    page.wait_for_function(
        "(window.playground.state.motionName || '').endsWith('(extracted)')", timeout=60000
    )
    assert page.evaluate("window.playground.state.motion.frames.length") == 3
    assert "sampled at 8 fps" in page.text_content("#motion-state")
    run_to_the_end(page, steps="2", size="64", transition_frames="1", seed="1")
    # The result's frames: the source, one transition frame and the clip's three poses.
    job_id = page.evaluate("window.playground.state.job.id")
    job = stack.api.get(f"/animations/{job_id}").json()
    assert job["num_frames"] == 1 + 1 + 3 and job["output"]["skeleton_url"]
    assert errors == []


def test_a_truncated_clip_is_refused_with_its_code_and_no_motion_is_set(open_page):
    page, _ = open_page
    page.check("input[name=motion][value=video]")
    clip = astronaut_mp4(8, fps=8)
    page.set_input_files(
        "#video-file", {"name": "cut.mp4", "mimeType": "video/mp4", "buffer": clip[: len(clip) // 2]}
    )
    page.click("#extract-poses")
    page.wait_for_selector("#error:not([hidden])")
    assert "422" in page.text_content("#error-title") or "422" in page.text_content("#error-meta")
    assert "video_unreadable" in page.text_content("#error-meta")
    assert page.text_content("#motion-state") == "pose extraction failed"


def test_the_tiny_model_job_runs_through_the_engine_stages_and_plays(open_page, stack):
    page, errors = open_page
    # An uploaded pose JSON (the example's first two frames): few frames keep the CPU job short.
    page.check("input[name=motion][value=file]")
    page.set_input_files(
        "#pose-file", {"name": "two.json", "mimeType": "application/json", "buffer": TWO_FRAMES}
    )
    page.wait_for_function(
        "window.playground.state.motionName === 'two.json' && window.playground.state.sourcePose"
    )
    stages = run_to_the_end(page, steps="2", size="64", transition_frames="1", seed="1")
    assert stages & {"inverting", "optimizing", "sampling"}, stages
    assert "random weights" in page.text_content("#job-note")
    # The MP4 comes from the storage's presigned link (moto here: its own origin, like S3).
    src = page.evaluate("document.getElementById('result-video').currentSrc")
    assert urlsplit(src).netloc == urlsplit(stack.s3_endpoint).netloc
    assert errors == []
