"""The official ``openai`` package, unmodified, drives ``/v1/videos`` on the real stack: redis-server,
moto S3, the API under uvicorn and ``poseanimate worker`` (the noop backend; once the tiny model)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator

import av
import openai
import pytest
from PIL import Image

from jobs.contract import EXAMPLE_POSES
from jobs.openai_compat import SERVED_MODEL
from tests.support.payloads import png_bytes
from tests.support.stack import API_KEY, REPO_ROOT, Service, running_service, settings_from_env, start_api

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # the SDK marks OpenAI's own Sora API
]

OTHER_KEY = "sk-integration-other"
POSES = json.dumps(EXAMPLE_POSES)
EXTRA = {"poses": POSES, "steps": 2, "transition_frames": 1, "fps": 4}


@pytest.fixture(scope="module")
def noop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    overrides = {
        "ANIMATOR": "noop",
        "NOOP_STEP_SECONDS": "0.01",
        "KEEP_INPUTS": "true",  # remix needs its source's character and motion
        "API_KEYS": f"{API_KEY},{OTHER_KEY}",
        "RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "100000",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000",
    }
    with running_service(tmp_path_factory.mktemp("openai"), **overrides) as svc:
        yield svc


def sdk(svc: Service, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{svc.api_url}/v1", api_key=key, max_retries=0, timeout=30)


def create(client: openai.OpenAI, prompt: str = "a person", **extra: object) -> openai.types.Video:
    return client.videos.create(
        prompt=prompt,
        input_reference=("me.png", png_bytes(), "image/png"),
        size="64x64",
        extra_body={**EXTRA, **extra},
    )


def test_create_poll_retrieve_download_and_delete(noop):
    client = sdk(noop)
    created = create(client)
    assert created.status == "queued" and created.model == SERVED_MODEL and created.size == "64x64"
    video = client.videos.poll(created.id, poll_interval_ms=100)
    assert video.status == "completed" and video.progress == 100, video
    assert client.videos.retrieve(created.id) == video
    assert video.completed_at and video.expires_at and video.expires_at > video.completed_at

    mp4 = client.videos.download_content(created.id).read()
    with av.open(io.BytesIO(mp4)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 1 + 1 + 2  # source, transition, the two target poses
    assert frames[0].width == 64 and frames[0].height == 64
    thumbnail = Image.open(io.BytesIO(client.videos.download_content(created.id, variant="thumbnail").read()))
    assert thumbnail.size == (64, 64)
    sheet = Image.open(io.BytesIO(client.videos.download_content(created.id, variant="spritesheet").read()))
    assert sheet.format == "JPEG" and sheet.width >= 128

    deleted = client.videos.delete(created.id)
    assert deleted.deleted and deleted.object == "video.deleted" and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(created.id)


def test_create_and_poll_list_pages_remix_and_models(noop):
    client = sdk(noop)
    video = client.videos.create_and_poll(
        prompt="a person",
        input_reference=("me.png", png_bytes(), "image/png"),
        size="64x64",
        seconds="1",
        poll_interval_ms=100,
        extra_body={
            **EXTRA,
            "seed": 3,
            "poses": json.dumps({**EXAMPLE_POSES, "frames": EXAMPLE_POSES["frames"] * 8}),
        },
    )
    assert video.status == "completed", video
    assert video.seconds == "1.5"  # 1 + 1 + 4 frames at 4 fps: the 16-frame motion was capped at 1 s

    remix = client.videos.remix(video.id, prompt="a robot")
    assert remix.remixed_from_video_id == video.id and remix.prompt == "a robot"
    assert client.videos.poll(remix.id, poll_interval_ms=100).status == "completed"

    for _ in range(2):
        create(client)
    page = client.videos.list(limit=2)
    assert len(page.data) == 2 and page.has_more
    ids = [v.id for v in client.videos.list(limit=2)]  # auto-pagination across pages
    assert len(ids) == len(set(ids)) >= 4 and {video.id, remix.id} <= set(ids)
    oldest_first = [v.id for v in client.videos.list(limit=3, order="asc")]
    assert oldest_first == sorted(ids)

    assert [m.id for m in client.models.list()] == [SERVED_MODEL]


def test_refusals_raise_the_sdk_error_classes(noop):
    video = create(sdk(noop))
    with pytest.raises(openai.AuthenticationError):
        sdk(noop, key="sk-wrong").videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):  # another key's video looks missing
        sdk(noop, key=OTHER_KEY).videos.retrieve(video.id)
    with pytest.raises(openai.BadRequestError) as refused:
        create(sdk(noop), poses=json.dumps({"frames": [[[1, 2, 1]]]}))
    assert refused.value.code == "pose_keypoint_count" and refused.value.param == "poses"
    with pytest.raises(openai.BadRequestError) as model:
        sdk(noop).videos.create(prompt="a person", model="sora-2", extra_body=EXTRA)
    assert model.value.code == "model_not_found"


def test_the_rate_limit_raises_rate_limit_error(noop):
    """Its own API (no worker needed) on the same Redis, with one submission a minute."""
    env = {**noop.env, "POSEANIMATE_RATE_LIMIT_SUBMISSIONS_PER_MINUTE": "1", "POSEANIMATE_KEY_PREFIX": "rl"}
    with start_api(settings_from_env(env)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0)
        with pytest.raises(openai.BadRequestError):  # refused, and counted
            client.videos.create(prompt="a person", extra_body={"poses": "[]"})
        with pytest.raises(openai.RateLimitError) as limited:
            client.videos.create(prompt="a person", extra_body={"poses": "[]"})
        assert limited.value.code == "rate_limited"


def test_webhook_is_openai_shaped_and_unwrap_verifies_it(noop):
    noop.receiver.drain()
    video = create(sdk(noop), webhook_url=noop.receiver.url)
    received = noop.receiver.get(timeout=60)
    client = openai.OpenAI(base_url=f"{noop.api_url}/v1", api_key=API_KEY)
    event = client.webhooks.unwrap(received.body, received.headers, secret=noop.webhook_secret)
    assert event.type == "video.completed" and event.data.id == video.id  # type: ignore[union-attr]
    assert event.object == "event" and abs(event.created_at - time.time()) < 120  # type: ignore[union-attr]
    tampered = received.body.replace(b"video.completed", b"video.failed")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.unwrap(tampered, received.headers, secret=noop.webhook_secret)


def test_async_client(noop):
    async def run() -> None:
        client = openai.AsyncOpenAI(base_url=f"{noop.api_url}/v1", api_key=API_KEY, max_retries=0)
        video = await client.videos.create(
            prompt="a person", input_reference=("me.png", png_bytes(), "image/png"), extra_body=EXTRA
        )
        done = await client.videos.poll(video.id, poll_interval_ms=100)
        assert done.status == "completed"
        assert (await client.videos.retrieve(video.id)).id == video.id
        assert video.id in [v.id async for v in client.videos.list(limit=2)]
        content = await client.videos.download_content(video.id, variant="thumbnail")
        assert Image.open(io.BytesIO(content.read())).format == "PNG"
        with pytest.raises(openai.NotFoundError):
            await client.videos.retrieve("anim_00000000000000000000000000")
        await client.close()

    asyncio.run(run())


def test_the_readme_example_runs_as_written(noop, tmp_path, monkeypatch):
    """The README's "OpenAI-compatible API" snippet, unchanged but for the address, in a folder laid
    out as after `make up` (the key in .run/api-key, the examples)."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### OpenAI-compatible API", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / ".run").mkdir()
    (tmp_path / ".run" / "api-key").write_text(API_KEY + "\n")
    (tmp_path / "examples").symlink_to(REPO_ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    exec(compile(snippet.replace("http://127.0.0.1:8000", noop.api_url), "README.md", "exec"), {})
    with av.open(str(tmp_path / "result.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_once_with_the_tiny_model(service):
    """The session stack (``tests/integration/conftest.py``) runs the tiny random-weight model."""
    client = openai.OpenAI(base_url=f"{service.api_url}/v1", api_key=API_KEY, max_retries=0)
    video = client.videos.create_and_poll(
        prompt="a person",
        input_reference=("me.png", png_bytes(), "image/png"),
        size="64x64",
        poll_interval_ms=200,
        extra_body={
            **EXTRA,
            "source_pose": json.dumps({**EXAMPLE_POSES, "frames": EXAMPLE_POSES["frames"][:1]}),
        },  # no detector run
    )
    assert video.status == "completed", (video.error, service.log_tail())
    with av.open(io.BytesIO(client.videos.download_content(video.id).read())) as container:
        assert container.streams.video[0].codec_context.name == "h264"
