"""The playground in a real browser (Debian's chromium driven by Playwright, never a downloaded
browser) against the real stack: redis-server, the API under uvicorn, ``poseanimate worker`` with
the noop backend, local storage (so the MP4 is served by the API's own ``/files`` links)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.stack import API_KEY, Service, running_service

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent (make services installs Debian's chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("browser")
    with running_service(
        tmp,
        animator="noop",
        noop_step_seconds="0.03",
        storage_url=f"file://{tmp}/storage",
        link_signing_secret="p" * 64,
    ) as svc:
        yield svc
    shutil.rmtree(tmp / "storage", ignore_errors=True)


class Page:
    """A fresh page that records every request URL and every console error."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        # Playwright's wait_for_function polls with eval, which the page's CSP forbids (as it should);
        # test_the_page_works_under_its_content_security_policy runs without the bypass.
        self.page = browser.new_page(viewport={"width": 1400, "height": 1400}, bypass_csp=True)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, key: str | None = API_KEY) -> Any:
        self.page.goto(self.base + "/")
        self.page.wait_for_function("document.getElementById('example-select').options.length > 0")
        if key is not None:
            self.page.fill("#api-key", key)
            self.page.click("#save-key")
        return self.page

    def foreign_requests(self) -> list[str]:
        origin = urlsplit(self.base).netloc
        return [
            u for u in self.requests if not u.startswith(("blob:", "data:")) and urlsplit(u).netloc != origin
        ]


@pytest.fixture
def page(browser: Any, stack: Service) -> Iterator[Page]:
    p = Page(browser, stack.api_url)
    yield p
    p.page.close()


def _prepare(page: Any, steps: int, size: int = 64) -> None:
    page.click("#use-example-image")
    page.wait_for_function("window.playground.state.sourcePose && window.playground.state.aligned")
    page.fill("#steps", str(steps))
    page.fill("#size", str(size))
    page.fill("#transition_frames", "1")


def test_submit_the_example_and_watch_it_become_a_playable_mp4(page):
    p = page.open()
    p.wait_for_selector("#key-state[data-state=ok]")
    _prepare(p, steps=30)
    # The skeleton preview draws the aligned poses over the image: the canvas is not blank.
    lit = p.evaluate(
        """() => { const c = document.getElementById('aligned-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i+1] + d[i+2] > 60) n++; return n; }"""
    )
    assert lit > 1000
    assert p.evaluate("window.playground.state.aligned.length") == 1 + 1 + 14
    p.click("#submit")
    p.wait_for_selector("#job:not([hidden])")
    seen = set()
    for _ in range(200):
        seen.add(int(p.get_attribute("#progress", "aria-valuenow") or 0))
        if p.text_content("#job-status") == "succeeded":
            break
        p.wait_for_timeout(50)
    assert p.text_content("#job-status") == "succeeded"
    assert len({v for v in seen if 0 < v < 100}) >= 3, seen  # the bar moved through the stages
    assert p.get_attribute("#stages li[data-stage=sampling]", "class") == "done"
    p.wait_for_selector("#result:not([hidden])")
    p.wait_for_function("document.getElementById('result-video').readyState >= 2", timeout=15000)
    duration = p.evaluate("document.getElementById('result-video').duration")
    assert duration > 0  # Debian's chromium decodes the H.264 MP4 (16 frames at 8 fps = 2 s)
    assert (
        p.locator("#downloads a", has_text="Download MP4")
        .get_attribute("href")
        .startswith(page.base + "/files/")
    )
    p.wait_for_selector("#history-rows tr:has-text('succeeded')")
    assert page.foreign_requests() == []
    assert page.errors == []


def test_cancel_a_running_job_from_the_page(page):
    p = page.open()
    _prepare(p, steps=100)
    p.click("#submit")
    p.wait_for_function(
        "['running'].includes(document.getElementById('job-status').dataset.state)", timeout=20000
    )
    p.click("#cancel")
    p.wait_for_function("document.getElementById('job-status').textContent === 'canceled'", timeout=20000)
    assert p.is_hidden("#cancel") and p.is_hidden("#result")
    assert page.foreign_requests() == [] and page.errors == []


def test_a_wrong_key_shows_the_problem_title_and_detail(page):
    p = page.open(key="sk-wrong")
    p.wait_for_selector("#error:not([hidden])")
    assert "401" in p.text_content("#error-title")
    assert p.text_content("#error-detail").strip()
    assert p.text_content("#key-state") == "key refused"
    _prepare(p, steps=2)
    p.click("#submit")
    p.wait_for_function("document.getElementById('error-title').textContent.startsWith('Submit')")
    assert p.is_visible("#error") and p.is_hidden("#job")
    # The refused requests are the only console errors (chromium logs failed loads).
    assert all("401" in e for e in page.errors), page.errors


def test_a_server_refusal_shows_its_code(page):
    p = page.open()
    _prepare(p, steps=2)
    p.fill("#size", "2000")  # over the server's limit: a 422 problem, shown with its code
    p.evaluate("document.getElementById('size').removeAttribute('max')")
    p.click("#submit")
    p.wait_for_selector("#error:not([hidden])")
    assert "422" in p.text_content("#error-title") and "code " in p.text_content("#error-meta")


def test_docs_render_with_every_other_origin_blocked(browser, stack):
    page = browser.new_page()
    origin = urlsplit(stack.api_url).netloc
    blocked: list[str] = []

    def guard(route: Any) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(stack.api_url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    assert "PoseAnimate" in page.text_content(".swagger-ui .info .title")
    assert page.locator(".opblock").count() > 3
    assert blocked == []
    page.close()


def test_delete_a_job_from_the_history(page, stack):
    job_id = stack.api.post(
        "/animations",
        files={
            "image": (REPO / "examples/astronaut.jpg").read_bytes(),
            "poses": (REPO / "examples/raise_arms.json").read_bytes(),
            "source_pose": (REPO / "examples/astronaut_pose.json").read_bytes(),
        },
        data={"prompt": "an astronaut", "steps": "2", "size": "64"},
    ).json()["id"]
    p = page.open()
    row = p.locator(f"#history-rows tr:has(code:text('{job_id[-10:]}'))")
    row.wait_for()
    p.on("dialog", lambda d: d.accept())
    row.locator("button", has_text="Delete").click()
    row.wait_for(state="detached")
    assert stack.api.get(f"/animations/{job_id}").status_code == 404
    assert page.errors == []


def test_a_non_square_size_is_previewed_and_submitted(page, stack):
    p = page.open()
    _prepare(p, steps=2)
    p.fill("#width", "96")
    p.fill("#height", "64")
    assert "on 96×64" in p.text_content("#align-note")
    p.click("#submit")
    p.wait_for_function("document.getElementById('job-status').textContent === 'succeeded'", timeout=30000)
    job = stack.api.get(f"/animations/{p.text_content('#job-id')}").json()
    assert (job["params"]["width"], job["params"]["height"]) == (96, 64)
    p.wait_for_function("document.getElementById('result-video').videoWidth === 96", timeout=15000)
    assert page.errors == []


def test_an_extraction_still_running_is_polled_until_its_poses_arrive(page):
    """POST /poses answers 202 when the io worker takes longer than the request waits: the page
    polls GET /poses/{id} (both answered here by the test) and uses the poses once they are there."""
    import json

    p = page.open()
    _prepare(p, steps=2)
    example = json.loads((REPO / "examples/raise_arms.json").read_text())
    poses = {**example, "frames": example["frames"][:3]}
    polls: list[str] = []

    def pending(route):
        body = {"id": "pose_01JD8X3K4M5N6P7Q8R9S0T1V2W", "status": "queued"}
        route.fulfill(status=202, content_type="application/json", body=json.dumps(body))

    def poll(route):
        polls.append(route.request.url)
        done = len(polls) >= 2
        body = {
            "id": "pose_01JD8X3K4M5N6P7Q8R9S0T1V2W",
            "status": "succeeded" if done else "queued",
            "poses": poses if done else None,
            "report": {"fps": 8, "frames_dropped": [1]} if done else None,
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    p.route("**/poses", lambda route: pending(route) if route.request.method == "POST" else route.continue_())
    p.route("**/poses/pose_*", poll)
    p.check("input[name=motion][value=video]")
    p.set_input_files(
        "#video-file", {"name": "d.mp4", "mimeType": "video/mp4", "buffer": b"\x00\x00\x00\x18ftyp"}
    )
    p.click("#extract-poses")
    p.wait_for_function("(window.playground.state.motionName || '').endsWith('(extracted)')", timeout=20000)
    assert len(polls) == 2 and p.evaluate("window.playground.state.motion.frames.length") == 3
    assert "1 frame without a person dropped" in p.text_content("#motion-state")


def _blue_pixels(p: Any) -> int:
    """Pure-blue pixels (hand joints, drawn rgb(0, 0, 255)) on the motion preview (the target poses
    on their own canvas: the astronaut's close-up puts the aligned hands below the frame)."""
    return p.evaluate(
        """() => { const c = document.getElementById('motion-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 30 && d[i+1] < 30 && d[i+2] > 220) n++; return n; }"""
    )


def test_a_whole_body_pose_file_is_previewed_with_hands_and_face_and_parts_is_sent(page, stack):
    """A canvas-less BODY_25 OpenPose file with hands and face (as the OpenPose binary writes it):
    previewed with its hands, the hands switched off by `parts`, and `parts` reaches the job."""
    import json

    from tests.support.wholebody import openpose_person, wholebody_frame

    p = page.open()
    _prepare(p, steps=2)
    person = openpose_person(wholebody_frame())
    b = [person["pose_keypoints_2d"][i : i + 3] for i in range(0, 54, 3)]
    body25 = [*b[:8], [256.0, 282.0, 0.9], *b[8:], *([[0.0, 0.0, 0.0]] * 6)]
    person["pose_keypoints_2d"] = [v for pt in body25 for v in pt]
    p.check("input[name=motion][value=file]")
    doc = json.dumps([{"version": 1.3, "people": [person]}] * 3).encode()
    p.set_input_files("#pose-file", {"name": "dance.json", "mimeType": "application/json", "buffer": doc})
    p.wait_for_function(
        "window.playground.state.motion && window.playground.state.motion.frames.length === 3"
    )
    # the last (target) frame, drawn now (the scrubber stops the playback)
    p.evaluate(
        """() => { const s = document.getElementById('scrubber');
        s.value = String(window.playground.state.aligned.length - 1); s.dispatchEvent(new Event('input')); }"""
    )
    full = _blue_pixels(p)
    p.select_option("#parts", "body")
    body = _blue_pixels(p)  # the body's own blue (the l-ankle joint)
    p.select_option("#parts", "body+hands")
    assert full > body + 20 and _blue_pixels(p) > body + 20
    p.click("#submit")
    p.wait_for_function("document.getElementById('job-status').textContent === 'succeeded'", timeout=30000)
    job = stack.api.get(f"/animations/{p.text_content('#job-id')}").json()
    assert job["params"]["parts"] == "body+hands"
    assert page.errors == []


def test_a_phone_width_page_fits_the_screen_with_the_key_field_on_it(browser, stack):
    """Walk: at 390 px the page was 821 px wide and the key field off-screen."""
    import os

    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(stack.api_url + "/")
    page.wait_for_selector("#example-select option", state="attached")
    page.wait_for_selector("#model-note:not([hidden])")  # the schema is read: every motion tab is there
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator("#api-key").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    shots = os.environ.get("POSEANIMATE_SCREENSHOTS")  # refresh docs/playground*.png when set
    if shots:
        page.screenshot(path=f"{shots}/playground-phone.png", full_page=False)
    page.close()


def test_a_refused_pose_file_clears_the_motion_and_shows_its_error_on_screen(page, tmp_path):
    p = page.open()
    p.wait_for_function("window.playground.state.motion")
    bad = tmp_path / "broken.json"
    bad.write_text('{"frames": [')
    p.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    p.check("input[name=motion][value=file]")
    p.set_input_files("#pose-file", str(bad))
    p.wait_for_selector("#error:not([hidden])")
    assert "refused" in p.text_content("#motion-state") and "broken.json" in p.text_content("#motion-state")
    assert p.evaluate("window.playground.state.motion") is None
    top = p.evaluate("document.getElementById('error').getBoundingClientRect().top")
    assert 0 <= top < p.viewport_size["height"]


def test_desktop_screenshot(page):
    """Not a check: writes docs/playground.png's source when POSEANIMATE_SCREENSHOTS is set."""
    import os

    shots = os.environ.get("POSEANIMATE_SCREENSHOTS")
    if not shots:
        pytest.skip("set POSEANIMATE_SCREENSHOTS=DIR to write the screenshots")
    p = page.open()
    p.click("#use-example-image")  # size and steps as the served model suggests them
    p.wait_for_function("window.playground.state.sourcePose && window.playground.state.aligned")
    p.fill("#transition_frames", "1")
    p.set_viewport_size({"width": 1400, "height": 1000})
    p.screenshot(path=f"{shots}/playground.png", full_page=False)


def test_the_page_works_under_its_content_security_policy(browser, stack):
    """No CSP bypass here: the page loads its scripts, the examples and the schema, accepts a key,
    submits the example and plays the result, and the browser reports no policy violation."""
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(stack.api_url + "/")
    assert response is not None and "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_selector("#example-select option", state="attached")
    page.fill("#api-key", API_KEY)
    page.click("#save-key")
    page.wait_for_selector("#key-state[data-state=ok]")
    page.click("#use-example-image")
    page.fill("#steps", "2")
    page.fill("#size", "64")
    page.fill("#transition_frames", "1")
    page.wait_for_selector("#align-note:has-text('poses')")
    page.click("#submit")
    page.wait_for_selector("#job-status:text-is('succeeded')", timeout=30000)
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_timeout(500)
    assert page.evaluate("document.getElementById('result-video').readyState") >= 1
    assert errors == [], errors
    page.close()


def test_the_size_and_steps_start_from_the_served_model(page, stack):
    """Issue 24 walk: the page read 512 px (minutes a frame on the tiny model); it starts from the
    schema's ``info.x-served-model`` defaults instead (the noop stack: 64 px, 4 steps)."""
    served = stack.api.get("/openapi.json").json()["info"]["x-served-model"]
    p = page.open()
    p.wait_for_selector("#model-note:not([hidden])")
    assert (
        (p.input_value("#size"), p.input_value("#steps"))
        == ("64", "4")
        == tuple(str(served["defaults"][k]) for k in ("size", "steps"))
    )
    assert served["name"] in p.text_content("#model-note")
    p.click("#use-example-image")
    p.wait_for_function("window.playground.state.sourcePose && window.playground.state.aligned")
    assert "on 64×64" in p.text_content("#align-note")


@pytest.mark.parametrize("keep", [True, False])
def test_a_driving_clip_is_sent_itself_and_its_sound_kept_unless_unchecked(page, stack, tmp_path, keep):
    """Issue 21: the chosen clip goes to POST /animations as ``driving_video`` (no pose JSON) with
    ``audio`` from the "keep the clip's sound" box (checked by default); the result plays unmuted
    with controls, and its MP4 has an audio stream exactly when the box was checked."""
    import io

    import av

    from tests.support.audio import clip_with_audio

    clip = clip_with_audio(tmp_path / "dance.mp4", frames=8, fps=8).read_bytes()
    p = page.open()
    _prepare(p, steps=2)
    # What the page hands to fetch (a multipart body of blobs is not in Playwright's request record).
    p.evaluate(
        """() => { window.sent = []; const f = window.fetch;
        window.fetch = (url, opts = {}) => {
          if (opts.body instanceof FormData) window.sent.push({ url: String(url), fields: [...opts.body.entries()]
            .map(([k, v]) => [k, typeof v === 'string' ? v : `file:${v.name}`]) });
          return f(url, opts); }; }"""
    )
    p.check("input[name=motion][value=video]")
    assert p.is_checked("#keep-audio")
    p.set_input_files("#video-file", {"name": "dance.mp4", "mimeType": "video/mp4", "buffer": clip})
    assert "sent as the driving video" in p.text_content("#motion-state")
    if not keep:
        p.uncheck("#keep-audio")
    p.click("#submit")
    p.wait_for_function("document.getElementById('job-status').textContent === 'succeeded'", timeout=60000)
    (sent,) = p.evaluate("window.sent")
    fields = dict(sent["fields"])
    assert sent["url"] == "animations" and fields["driving_video"] == "file:dance.mp4"
    assert "poses" not in fields and fields["audio"] == ("true" if keep else "false")
    job = stack.api.get(f"/animations/{p.text_content('#job-id')}").json()
    assert job["params"]["audio"] is keep and job["num_frames"] == 1 + 1 + 8
    assert p.evaluate("(v => !v.muted && v.controls)(document.getElementById('result-video'))")
    mp4 = stack.api.get(job["output"]["video_url"]).content
    with av.open(io.BytesIO(mp4)) as container:
        assert len(container.streams.audio) == (1 if keep else 0)
    assert page.errors == []
