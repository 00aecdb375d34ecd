"""The HTTP API on a real Redis (no worker here): submission, auth, quotas, idempotency, cancel, listing."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from jobs.contract import EXAMPLE_POSES, JobStatus
from jobs.store import JobStore
from tests.support.api import KEY_B
from tests.support.payloads import job_body, png_bytes


def store_of(client) -> JobStore:
    return client.app.state.services.store


def test_json_submission_is_queued_with_location_and_inputs_stored(client):
    r = client.post("/animations", json=job_body())
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/animations/{job['id']}"
    assert job["status"] == "queued" and job["queue_position"] == 1 and job["progress"] == 0
    assert job["num_frames"] == 1 + 4 + 2 and job["params"]["steps"] == 2
    services = client.app.state.services
    assert services.storage.get_bytes(f"inputs/{job['id']}/image.png").startswith(b"\x89PNG")
    stored = json.loads(services.storage.get_bytes(f"inputs/{job['id']}/poses.json"))
    assert stored["width"] == 512 and len(stored["frames"]) == 2
    # the Celery message is in the broker's gpu queue and carries only the id
    broker = services.queue.app.connection_for_write().default_channel.client
    message = json.loads(broker.lindex("gpu", 0))
    assert json.loads(__import__("base64").b64decode(message["body"]))[0] == [job["id"]]


def test_multipart_submission_with_files(client):
    files = {
        "image": ("a.jpg", png_bytes(fmt="JPEG"), "image/jpeg"),
        "poses": ("poses.json", json.dumps(EXAMPLE_POSES).encode(), "application/json"),
        "mask": ("m.png", png_bytes(color="white"), "image/png"),
    }
    data = {
        "prompt": "a dancer",
        "steps": "3",
        "subject_words": "dancer",
    }
    r = client.post("/animations", files=files, data=data)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["params"]["steps"] == 3 and job["params"]["subject_words"] == ["dancer"]
    assert client.app.state.services.storage.get_bytes(f"inputs/{job['id']}/mask.png").startswith(b"\x89PNG")


def test_retarget_is_a_job_parameter_in_json_and_multipart(client):
    assert client.post("/animations", json=job_body()).json()["params"]["retarget"] == "scale"
    r = client.post("/animations", json=job_body(retarget="bones"))
    assert r.status_code == 202 and r.json()["params"]["retarget"] == "bones"
    files = {
        "image": ("a.png", png_bytes(), "image/png"),
        "poses": ("p.json", json.dumps(EXAMPLE_POSES).encode(), "application/json"),
    }
    r = client.post("/animations", files=files, data={"prompt": "a dancer", "retarget": "bones"})
    assert r.status_code == 202 and r.json()["params"]["retarget"] == "bones"
    bad = client.post("/animations", json=job_body(retarget="stretch"))
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    assert "retarget" in json.dumps(bad.json()["errors"])
    schema = client.get("/openapi.json").json()["components"]["schemas"]["AnimationCreate"]
    assert "bones" in json.dumps(schema["properties"]["retarget"])


def test_get_and_queue_positions(client):
    ids = [client.post("/animations", json=job_body()).json()["id"] for _ in range(3)]
    assert [client.get(f"/animations/{i}").json()["queue_position"] for i in ids] == [1, 2, 3]


def test_missing_or_wrong_key_is_401_problem(make_client):
    anonymous = make_client(key=None)
    for c, headers in ((anonymous, {}), (anonymous, {"Authorization": "Bearer nope"})):
        r = c.get("/animations", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "unauthorized" and r.headers["www-authenticate"] == "Bearer"


def test_another_keys_job_answers_404(make_settings, make_client):
    settings = make_settings()
    a, b = make_client(settings), make_client(settings, key=KEY_B)
    job_id = a.post("/animations", json=job_body()).json()["id"]
    assert a.get(f"/animations/{job_id}").status_code == 200
    for r in (
        b.get(f"/animations/{job_id}"),
        b.post(f"/animations/{job_id}/cancel"),
        b.get(f"/animations/{job_id}/events"),
    ):
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert b.get("/animations").json()["data"] == []


def test_keys_may_be_configured_as_hashes(make_settings, make_client):
    import hashlib

    settings = make_settings(api_keys=["sha256:" + hashlib.sha256(b"hashed-key").hexdigest()])
    assert make_client(settings, key="hashed-key").get("/animations").status_code == 200


def test_auth_can_be_turned_off_for_local_use(make_settings, make_client):
    c = make_client(make_settings(auth_enabled=False), key=None)
    assert c.post("/animations", json=job_body()).status_code == 202


def test_submission_rate_limit_answers_429_with_retry_after(make_settings, make_client):
    c = make_client(make_settings(rate_limit_submissions_per_minute=2))
    codes = [c.post("/animations", json=job_body()).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    r = c.post("/animations", json=job_body())
    assert r.json()["code"] == "rate_limited" and 1 <= int(r.headers["retry-after"]) <= 30


def test_request_rate_limit_covers_reads(make_settings, make_client):
    c = make_client(make_settings(rate_limit_requests_per_minute=3))
    assert [c.get("/animations").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_active_job_quota_answers_429(make_settings, make_client):
    c = make_client(make_settings(max_active_jobs=1))
    first = c.post("/animations", json=job_body()).json()
    r = c.post("/animations", json=job_body())
    assert r.status_code == 429 and r.json()["code"] == "quota_exceeded" and "retry-after" in r.headers
    c.post(f"/animations/{first['id']}/cancel")
    assert c.post("/animations", json=job_body()).status_code == 202


def test_idempotency_key_same_body_same_job_other_body_422(client):
    body = job_body()
    first = client.post("/animations", json=body, headers={"Idempotency-Key": "k1"})
    again = client.post("/animations", json=body, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = client.post(
        "/animations", json=job_body(prompt="someone else"), headers={"Idempotency-Key": "k1"}
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


def test_idempotency_under_concurrency_creates_one_job(client):
    body = job_body()
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(
                lambda _: client.post("/animations", json=body, headers={"Idempotency-Key": "race"}), range(8)
            )
        )
    assert {r.status_code for r in replies} == {202}
    assert len({r.json()["id"] for r in replies}) == 1
    assert len(client.get("/animations").json()["data"]) == 1


def test_failed_submission_releases_its_idempotency_key(client):
    bad = client.post("/animations", json=job_body(poses={"frames": []}), headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 422
    assert client.post("/animations", json=job_body(), headers={"Idempotency-Key": "k2"}).status_code == 202


def test_cancel_queued_job_is_immediate(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    r = client.post(f"/animations/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled" and r.json()["queue_position"] is None
    assert store_of(client).queue_position(job_id) is None
    assert client.post(f"/animations/{job_id}/cancel").status_code == 200  # idempotent


def test_cancel_running_job_is_a_request(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    store_of(client).start_attempt(job_id, 3, "noop", False)
    r = client.post(f"/animations/{job_id}/cancel")
    assert r.status_code == 202 and r.json()["status"] == "running" and r.json()["cancel_requested"] is True


def test_cancel_finished_job_is_409(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    store = store_of(client)
    store.start_attempt(job_id, 3, "noop", False)
    store.fail(job_id, "invalid_input", "bad pose")
    r = client.post(f"/animations/{job_id}/cancel")
    assert r.status_code == 409 and r.json()["code"] == "job_already_finished"
    failed = client.get(f"/animations/{job_id}").json()
    assert failed["error"] == {"code": "invalid_input", "message": "bad pose"}


def test_listing_pages_newest_first(client):
    ids = [client.post("/animations", json=job_body()).json()["id"] for _ in range(5)]
    page = client.get("/animations", params={"limit": 2}).json()
    seen = [j["id"] for j in page["data"]]
    while page["next_cursor"]:
        page = client.get("/animations", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [j["id"] for j in page["data"]]
    assert seen == ids[::-1]


def test_prefer_wait_holds_the_reply_then_returns_the_unfinished_job(client):
    started = time.monotonic()
    r = client.post("/animations", json=job_body(), headers={"Prefer": "respond-async, wait=1"})
    assert 0.9 <= time.monotonic() - started < 5
    assert r.status_code == 202 and r.headers["preference-applied"] == "wait=1"


def test_prefer_wait_returns_200_when_the_job_ends_in_time(client):
    store = store_of(client)
    original_create = store.create

    def finish_soon(record):
        original_create(record)

        def finish():
            time.sleep(0.3)
            store.start_attempt(record.id, 3, "noop", False)
            store.fail(record.id, "timeout", "too slow")

        threading.Thread(target=finish).start()

    store.create = finish_soon
    r = client.post("/animations", json=job_body(), headers={"Prefer": "wait=10"})
    assert r.status_code == 200 and r.json()["status"] == "failed"


def test_sse_streams_progress_until_terminal(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    store = store_of(client)

    def drive():
        time.sleep(0.3)
        store.start_attempt(job_id, 3, "noop", False)
        for p in (0.2, 0.6):
            store.update_progress(job_id, "sampling", p)
            time.sleep(0.15)
        store.request_cancel(job_id)
        store.transition(job_id, JobStatus.CANCELED)

    threading.Thread(target=drive).start()
    events = []
    with client.stream("GET", f"/animations/{job_id}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, json.loads(line[5:])))
    kinds = [k for k, _ in events]
    assert kinds[0] == "progress" and kinds[-1] == "status"
    statuses = [d["status"] for k, d in events if k == "progress"]
    assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "canceled"
    assert events[-1][1]["id"] == job_id and events[-1][1]["status"] == "canceled"


@pytest.mark.parametrize("path", ["/animations/anim_nope", "/animations/../../etc/passwd"])
def test_malformed_job_ids_are_refused(client, path):
    assert client.get(path).status_code in (404, 422)


def test_listing_filters_by_status_and_refuses_unknown_parameters(client):
    ids = [client.post("/animations", json=job_body()).json()["id"] for _ in range(3)]
    client.post(f"/animations/{ids[1]}/cancel")
    canceled = client.get("/animations?status=canceled").json()["data"]
    assert [j["id"] for j in canceled] == [ids[1]]
    assert {j["id"] for j in client.get("/animations?status=queued").json()["data"]} == {ids[0], ids[2]}
    assert client.get("/animations?status=succeeded").json()["data"] == []
    for bad in ("?stauts=canceled", "?status=exploded", "?limit=0"):
        r = client.get("/animations" + bad)
        assert r.status_code == 422 and r.json()["code"] == "validation_error", bad


def test_a_canceled_job_does_not_claim_stage_done(client):
    job_id = client.post("/animations", json=job_body()).json()["id"]
    job = client.post(f"/animations/{job_id}/cancel").json()
    assert job["status"] == "canceled" and job["stage"] != "done"
