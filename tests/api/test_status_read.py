"""GET /animations/{id} answers from one Redis pipeline (rate limit + job + queue rank + deliveries):
the checks keep their order and meaning (401, then 429, then 422 for a malformed id, then 404).

Each test runs twice: with the app served (its lifespan opens the asyncio Redis client the event
loop awaits) and without the lifespan (the same read in the threadpool)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from jobs.contract import JobStatus
from jobs.settings import Settings
from jobs.store import JobStore
from tests.support.api import KEY_A, KEY_B
from tests.support.payloads import job_body

MALFORMED = "anim_nope"
OpenClient = Callable[..., TestClient]


@pytest.fixture(params=["served", "bare"])
def open_client(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings]
) -> Iterator[OpenClient]:
    from api.main import create_app

    with ExitStack() as stack:

        def open_(settings: Settings | None = None, key: str = KEY_A) -> TestClient:
            app = create_app(settings or make_settings())
            client = TestClient(app, raise_server_exceptions=False)
            if request.param == "served":
                stack.enter_context(client)  # runs the lifespan: services.aredis is open
                assert app.state.services.aredis is not None
            else:
                stack.callback(client.close)
                assert app.state.services.aredis is None
            client.headers["Authorization"] = f"Bearer {key}"
            return client

        yield open_


def store_of(client: TestClient) -> JobStore:
    return client.app.state.services.store  # type: ignore[attr-defined]


def test_bad_key_is_401_before_anything_else(open_client):
    c = open_client(key="wrong")
    for path in ("/animations/anim_01JD8X3K4M5N6P7Q8R9S0T1V2W", f"/animations/{MALFORMED}"):
        r = c.get(path)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


def test_status_reads_are_rate_limited_malformed_ids_included(make_settings, open_client):
    c = open_client(make_settings(rate_limit_requests_per_minute=3))
    job_id = c.post("/animations", json=job_body()).json()["id"]  # 1st request
    assert c.get(f"/animations/{job_id}").status_code == 200  # 2nd
    assert c.get(f"/animations/{MALFORMED}").status_code == 422  # 3rd: counted, then 422
    r = c.get(f"/animations/{job_id}")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert c.get(f"/animations/{MALFORMED}").status_code == 429  # the limit comes before the 422


def test_malformed_id_is_a_validation_problem(open_client):
    r = open_client().get(f"/animations/{MALFORMED}")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    assert r.json()["errors"][0]["loc"] == ["path", "job_id"]


def test_missing_and_foreign_jobs_are_the_same_404(make_settings, open_client):
    settings = make_settings()
    a, b = open_client(settings), open_client(settings, key=KEY_B)
    job_id = a.post("/animations", json=job_body()).json()["id"]
    missing = job_id[:-4] + "ZZZZ"
    for r in (b.get(f"/animations/{job_id}"), a.get(f"/animations/{missing}")):
        assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_view_carries_queue_position_deliveries_and_signed_links(open_client):
    client = open_client()
    store = store_of(client)
    body = job_body()
    body["webhook_url"] = "https://93.184.215.14/hook"  # a public literal: the SSRF guard resolves nothing
    first = client.post("/animations", json=body).json()["id"]
    second = client.post("/animations", json=job_body()).json()["id"]
    assert client.get(f"/animations/{second}").json()["queue_position"] == 2

    store.record_delivery(
        first,
        {
            "webhook_id": "msg_1",
            "event": "completed",
            "attempt": 1,
            "at": "2026-11-25T10:00:00Z",
            "status_code": 200,
            "result": "delivered",
        },
    )
    store.start_attempt(first, 3, "noop", False)
    outcome, _ = store.transition(
        first,
        JobStatus.SUCCEEDED,
        outputs='{"video": "outputs/x/animation.mp4", "poster": "outputs/x/poster.png"}',
    )
    assert outcome == "ok"
    job = client.get(f"/animations/{first}").json()
    assert job["status"] == "succeeded" and job["queue_position"] is None and job["progress"] == 1.0
    assert [d["webhook_id"] for d in job["webhook"]["deliveries"]] == ["msg_1"]
    assert "/files/outputs/x/animation.mp4?expires=" in job["output"]["video_url"]
    assert client.get(f"/animations/{second}").json()["queue_position"] == 1


def test_a_flushed_script_cache_is_reloaded(open_client):
    client = open_client()
    job_id = client.post("/animations", json=job_body()).json()["id"]
    store_of(client).r.script_flush()
    assert client.get(f"/animations/{job_id}").status_code == 200
    assert client.get(f"/animations/{job_id}").status_code == 200


def test_redis_down_is_503(make_settings, open_client):
    c = open_client(make_settings(redis_url="redis://127.0.0.1:1/0"))
    r = c.get("/animations/anim_01JD8X3K4M5N6P7Q8R9S0T1V2W")
    assert r.status_code == 503 and r.json()["code"] == "service_unavailable"
