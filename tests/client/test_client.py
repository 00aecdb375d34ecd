"""``poseanimate_client`` against the real stack (redis-server, moto S3, uvicorn API, ``poseanimate worker``
with the noop backend), and its retry policy on a scripted transport. ``poseanimate submit`` (the
client's command-line face, ``cli/submit_commands.py``) is checked here too, on the same stack."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from cli.main import main
from jobs.contract import Job, JobList, JobStatus
from poseanimate_client import AsyncPoseAnimateClient, PoseAnimateClient, PoseAnimateError
from tests.support.stack import API_KEY, Service, running_service

REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "examples/astronaut.jpg"
POSES = REPO / "examples/raise_arms.json"
SOURCE = REPO / "examples/astronaut_pose.json"
SMALL = {"prompt": "a photo of an astronaut", "steps": 2, "size": 64, "fps": 4, "transition_frames": 1}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("client"), animator="noop", noop_step_seconds="0.02") as svc:
        yield svc


@pytest.fixture
def client(stack: Service) -> Iterator[PoseAnimateClient]:
    with PoseAnimateClient(stack.api_url, API_KEY) as c:
        yield c


@pytest.mark.integration
def test_create_wait_download_gives_a_decodable_mp4_and_reports_progress(client, tmp_path):
    job = client.create(IMAGE, POSES, source_pose=SOURCE, **SMALL)
    assert isinstance(job, Job) and job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    seen = []
    done = client.wait(job.id, on_progress=seen.append, timeout=60)
    assert done.status is JobStatus.SUCCEEDED and done.output is not None
    assert {"inverting", "sampling"} <= {e.stage for e in seen}
    assert [e.progress for e in seen] == sorted(e.progress for e in seen) or len(seen) > 1
    out = client.download(done, tmp_path / "result.mp4")  # presigned S3 link: another origin
    with av.open(str(out)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == done.num_frames == 1 + 1 + 14 and frames[0].width == 64


@pytest.mark.integration
def test_cancel_and_list_filtered_by_key(client, stack):
    job = client.create(IMAGE, POSES, source_pose=SOURCE, **{**SMALL, "steps": 100})
    canceled = client.cancel(job.id)
    assert canceled.status is JobStatus.CANCELED or canceled.cancel_requested
    final = client.wait(job.id, timeout=30)
    assert final.status is JobStatus.CANCELED and final.output is None
    listed = client.list(limit=50)
    assert isinstance(listed, JobList) and job.id in {j.id for j in listed.data}
    with PoseAnimateClient(stack.api_url, "sk-wrong") as other, pytest.raises(PoseAnimateError) as err:
        other.list()
    assert err.value.status == 401 and err.value.code


@pytest.mark.integration
def test_bad_input_raises_a_typed_error_with_the_problem_code(client):
    with pytest.raises(PoseAnimateError) as err:
        client.create(b"not an image", POSES, **SMALL)
    assert err.value.status == 415 and err.value.code == "image_unsupported_format"
    assert err.value.problem is not None and err.value.title
    with pytest.raises(PoseAnimateError) as err:
        client.get("anim_00000000000000000000000000")
    assert err.value.status == 404 and err.value.code == "not_found"
    unfinished = client.create(IMAGE, POSES, source_pose=SOURCE, **{**SMALL, "steps": 100})
    with pytest.raises(PoseAnimateError) as err:
        client.download(unfinished, "x.mp4")
    assert err.value.code == "no_output"
    client.cancel(unfinished.id)


@pytest.mark.integration
def test_async_client_follows_a_job_to_the_end(stack, tmp_path):
    async def run() -> Job:
        async with AsyncPoseAnimateClient(stack.api_url, API_KEY) as c:
            job = await c.create(IMAGE, POSES, source_pose=SOURCE, **SMALL)
            done = await c.wait(job.id, timeout=60)
            await c.download(done, tmp_path / "a.mp4")
            return done

    done = asyncio.run(run())
    assert done.status is JobStatus.SUCCEEDED and (tmp_path / "a.mp4").stat().st_size > 0


@pytest.mark.integration
def test_cli_submit_saves_the_mp4(stack, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POSEANIMATE_API_KEY", API_KEY)
    out = tmp_path / "cli.mp4"
    code = main(
        ["submit", "--api", stack.api_url, "--image", str(IMAGE), "--poses", str(POSES),
         "--source-pose", str(SOURCE), "--prompt", "an astronaut", "--steps", "2", "--size", "64",
         "--transition-frames", "1", "--out", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip().startswith("anim_")
    with av.open(io.BytesIO(out.read_bytes())) as container:
        assert container.streams.video[0].codec_context.name == "h264"


@pytest.mark.integration
def test_cli_submit_passes_retarget_and_a_refused_video_is_one_line_exit_2(
    stack, tmp_path, monkeypatch, capsys
):
    from tests.support.clips import astronaut_mp4

    monkeypatch.setenv("POSEANIMATE_API_KEY", API_KEY)
    base = ["submit", "--api", stack.api_url, "--image", str(IMAGE), "--prompt", "an astronaut"]
    assert main([*base, "--poses", str(POSES), "--retarget", "bones", "--steps", "2"]) == 0
    job_id = capsys.readouterr().out.strip()
    with PoseAnimateClient(stack.api_url, API_KEY) as c:
        assert c.get(job_id).params.retarget == "bones"
    clip = astronaut_mp4(8, fps=8)
    (tmp_path / "cut.mp4").write_bytes(clip[: len(clip) // 2])
    code = main([*base, "--video", str(tmp_path / "cut.mp4"), "--video-end", "0.5"])
    err = capsys.readouterr().err
    assert code == 2 and "422 video_unreadable" in err and len(err.strip().splitlines()) == 1


@pytest.mark.integration
def test_a_driving_video_keeps_its_sound_through_the_client_and_the_cli_no_audio_drops_it(
    client, stack, tmp_path, monkeypatch, capsys
):
    """Issue 21 through the real API: ``create(driving_video=...)`` gives an MP4 with the clip's audio
    (as long as the video, the burst after the lead-in); ``submit --video --no-audio`` gives none."""
    from tests.support.audio import audio_duration, burst_time, clip_with_audio

    clip = clip_with_audio(tmp_path / "dance.mp4", frames=8, fps=8, burst_at=0.5)
    job = client.wait(client.create(IMAGE, driving_video=clip, source_pose=SOURCE, **SMALL).id, timeout=60)
    assert job.status is JobStatus.SUCCEEDED and job.params.audio is True and job.notes == []
    out = client.download(job, tmp_path / "with.mp4")
    assert job.num_frames == 1 + 1 + 4  # source, transition, the 1 s clip at 4 fps
    assert abs(audio_duration(out) - job.num_frames / 4) < 1 / 4
    heard = burst_time(out)
    assert heard is not None and abs(heard - (2 + 0.5 * 4) / 4) < 1 / 4  # driven frame 2 of 4
    monkeypatch.setenv("POSEANIMATE_API_KEY", API_KEY)
    silent = tmp_path / "without.mp4"
    code = main(
        ["submit", "--api", stack.api_url, "--image", str(IMAGE), "--video", str(clip), "--no-audio",
         "--source-pose", str(SOURCE), "--prompt", "an astronaut", "--steps", "2", "--size", "64",
         "--fps", "4", "--transition-frames", "1", "--out", str(silent), "--no-progress"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert client.get(capsys.readouterr().out.strip()).params.audio is False
    assert audio_duration(silent) is None
    with av.open(str(silent)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_cli_submit_without_a_key_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("POSEANIMATE_API_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    code = main(["submit", "--image", str(IMAGE), "--poses", str(POSES), "--prompt", "x"])
    err = capsys.readouterr().err
    assert code == 2 and "no API key" in err and "Traceback" not in err


def test_429_and_503_are_retried_after_retry_after_then_raised():
    calls: list[float] = []
    script = [
        httpx.Response(
            429, headers={"Retry-After": "0.2"}, json={"title": "t", "status": 429, "code": "rate_limited"}
        ),
        httpx.Response(
            503, headers={"Retry-After": "0.1"}, json={"title": "t", "status": 503, "code": "unavailable"}
        ),
        httpx.Response(200, json={"data": [], "next_cursor": None}),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        assert request.headers["authorization"] == "Bearer k"
        return script.pop(0)

    with PoseAnimateClient("http://api.test", "k", transport=httpx.MockTransport(handler)) as c:
        assert c.list().data == []
    assert len(calls) == 3 and calls[1] - calls[0] >= 0.2 and calls[2] - calls[1] >= 0.1

    always = httpx.MockTransport(
        lambda r: httpx.Response(
            429,
            headers={"Retry-After": "999"},
            json={"title": "slow down", "status": 429, "code": "rate_limited"},
        )
    )
    with PoseAnimateClient(
        "http://api.test", "k", transport=always, max_retries=2, max_retry_wait_s=0.05
    ) as c:
        started = time.monotonic()
        with pytest.raises(PoseAnimateError) as err:
            c.get("anim_x")
    assert (
        err.value.code == "rate_limited" and err.value.retry_after == 999 and time.monotonic() - started < 1
    )


@pytest.mark.integration
def test_delete_removes_the_job_and_is_idempotent(client, tmp_path):
    job = client.wait(client.create(IMAGE, POSES, source_pose=SOURCE, **SMALL).id, timeout=60)
    assert job.status is JobStatus.SUCCEEDED
    client.delete(job.id)
    client.delete(job.id)  # deleting again is fine (204)
    with pytest.raises(PoseAnimateError) as err:
        client.get(job.id)
    assert err.value.status == 404 and err.value.code == "not_found"
    assert job.id not in {j.id for j in client.list(limit=100).data}


# The sync and async clients must behave alike: each case runs the same call on both against one
# scripted transport (httpx.MockTransport serves sync and async clients).
def _on_both(handler, call):
    """``call(client)`` on the sync client, and awaited on the async one; both results (or errors)."""
    transport = httpx.MockTransport(handler)
    outcomes = []
    for make in (PoseAnimateClient, AsyncPoseAnimateClient):
        client = make("http://api.test", "k", transport=transport, max_retries=0)
        try:
            result = call(client)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            outcomes.append(result)
        except PoseAnimateError as exc:
            outcomes.append(("error", exc.status, exc.code))
    return outcomes


def _problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"title": code, "status": status, "code": code})


def test_both_clients_say_poses_unsupported_when_the_server_has_no_pose_endpoint(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    sync, asynchronous = _on_both(lambda r: _problem(404, "not_found"), lambda c: c.extract_poses(clip))
    assert sync == asynchronous == ("error", 404, "poses_unsupported")


def test_both_clients_refuse_a_pose_reply_that_is_not_an_object(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    sync, asynchronous = _on_both(
        lambda r: httpx.Response(200, json=[1, 2, 3]), lambda c: c.extract_poses(clip)
    )
    assert sync == asynchronous == ("error", 200, "bad_reply")


def test_both_clients_extract_poses_with_the_parts_asked_for(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = request.content.decode("latin-1")
        sent.append((request.url.path, 'name="parts"' in body and "body+hands" in body))
        return httpx.Response(200, json={"poses": {"width": 8, "height": 8, "frames": []}})

    sync, asynchronous = _on_both(handler, lambda c: c.extract_poses(clip, parts="body+hands"))
    assert sync == asynchronous == {"width": 8, "height": 8, "frames": []}
    plain = _on_both(handler, lambda c: c.extract_poses(clip))
    assert plain[0] == plain[1] and sent == [("/poses", True)] * 2 + [("/poses", False)] * 2


@pytest.mark.parametrize("audio", [None, False, True])
def test_both_clients_send_a_driving_video_itself_to_post_animations(tmp_path, audio):
    """One request, ``POST /animations`` with the clip as its ``driving_video`` part (not ``POST /poses``
    first, which loses the sound); ``audio`` goes as the form's ``true``/``false`` when given."""
    clip = tmp_path / "dance.webm"
    clip.write_bytes(b"\x1a\x45\xdf\xa3 a clip")
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.read()))
        return httpx.Response(202, json=_job_json("queued"))

    extra = {} if audio is None else {"audio": audio}
    sync, asynchronous = _on_both(
        handler, lambda c: c.create(IMAGE, driving_video=clip, prompt="a dancer", video_start=0.5, **extra)
    )
    assert isinstance(sync, Job) and isinstance(asynchronous, Job)
    assert [path for path, _ in seen] == ["/animations", "/animations"]
    for _, body in seen:
        assert b'name="driving_video"; filename="dance.webm"' in body and b"\x1a\x45\xdf\xa3 a clip" in body
        assert b'name="poses"' not in body and b'name="video_start"\r\n\r\n0.5' in body
        sent = b'name="audio"\r\n\r\n' + str(audio).lower().encode()
        assert (sent in body) is (audio is not None) and (b'name="audio"' in body) is (audio is not None)
    with pytest.raises(ValueError, match="exactly one"):
        PoseAnimateClient("http://api.test").create(IMAGE, POSES, driving_video=clip, prompt="x")


def _job_json(status: str = "succeeded") -> dict:
    return {
        "id": "anim_1",
        "status": status,
        "stage": None,
        "progress": 1.0 if status == "succeeded" else 0.0,
        "created_at": "2026-12-02T00:00:00Z",
        "params": {"prompt": "an astronaut"},
        "num_frames": 3,
    }


def test_both_clients_read_the_last_event_of_a_stream_without_a_closing_blank_line():
    body = (
        'event: progress\ndata: {"id": "anim_1", "status": "running", "stage": "sampling", '
        '"progress": 0.5}\n\nevent: status\ndata: ' + json.dumps(_job_json())
    )

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/animations/anim_1/events"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    async def collect_async(c):
        return [type(e).__name__ async for e in c.events("anim_1")]

    def collect(c):
        return (
            collect_async(c)
            if isinstance(c, AsyncPoseAnimateClient)
            else [type(e).__name__ for e in c.events("anim_1")]
        )

    sync, asynchronous = _on_both(handler, collect)
    assert sync == asynchronous == ["ProgressEvent", "Job"]
