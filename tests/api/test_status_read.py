"""GET /animations/{id} answers from one Redis pipeline (rate limit + job + queue rank + deliveries):
the checks keep their order and meaning (401, then 429, then 422 for a malformed id, then 404)."""

from __future__ import annotations

from tests.api.conftest import KEY_B
from tests.integration.payloads import job_body
from worker.contract import JobStatus
from worker.store import JobStore

MALFORMED = "anim_nope"


def store_of(client) -> JobStore:
    return client.app.state.services.store


def test_bad_key_is_401_before_anything_else(make_client):
    c = make_client(key="wrong")
    for path in ("/animations/anim_01JD8X3K4M5N6P7Q8R9S0T1V2W", f"/animations/{MALFORMED}"):
        r = c.get(path)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"


def test_status_reads_are_rate_limited_malformed_ids_included(make_settings, make_client):
    c = make_client(make_settings(rate_limit_requests_per_minute=3))
    job_id = c.post("/animations", json=job_body()).json()["id"]  # 1st request
    assert c.get(f"/animations/{job_id}").status_code == 200  # 2nd
    assert c.get(f"/animations/{MALFORMED}").status_code == 422  # 3rd: counted, then 422
    r = c.get(f"/animations/{job_id}")
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert c.get(f"/animations/{MALFORMED}").status_code == 429  # the limit comes before the 422


def test_malformed_id_is_a_validation_problem(client):
    r = client.get(f"/animations/{MALFORMED}")
    assert r.status_code == 422 and r.json()["code"] == "validation_error"
    assert r.json()["errors"][0]["loc"] == ["path", "job_id"]


def test_missing_and_foreign_jobs_are_the_same_404(make_settings, make_client):
    settings = make_settings()
    a, b = make_client(settings), make_client(settings, key=KEY_B)
    job_id = a.post("/animations", json=job_body()).json()["id"]
    missing = job_id[:-4] + "ZZZZ"
    for r in (b.get(f"/animations/{job_id}"), a.get(f"/animations/{missing}")):
        assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_view_carries_queue_position_deliveries_and_signed_links(client):
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


def test_a_flushed_script_cache_is_reloaded(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    store_of(client).r.script_flush()
    assert client.get(f"/animations/{job_id}").status_code == 200
    assert client.get(f"/animations/{job_id}").status_code == 200
