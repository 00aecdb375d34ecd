"""Helpers for tests of the HTTP API: the two test keys, problem assertions, a fake resolver."""

from __future__ import annotations

from jobs.contract import JobStatus

KEY_A, KEY_B = "sk-test-a", "sk-test-b"


def assert_problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    assert "Traceback" not in r.text and "request_id" in body
    return body


def nothing_enqueued(client):
    services = client.app.state.services
    broker = services.queue.app.connection_for_write().default_channel.client
    assert broker.llen("gpu") == 0 and services.store.queue_depth() == 0


def fake_dns(host, port):
    return {"intranet.corp": ["10.20.30.40"], "localhost": ["127.0.0.1", "::1"]}.get(host, ["93.184.216.34"])


def finish_with_outputs(client, job_id):
    services = client.app.state.services
    keys = {"video": f"outputs/{job_id}/animation.mp4", "poster": f"outputs/{job_id}/poster.png"}
    services.storage.put_bytes(keys["video"], b"mp4-bytes", "video/mp4")
    services.storage.put_bytes(keys["poster"], b"png-bytes", "image/png")
    services.store.start_attempt(job_id, 3, "noop", False)
    services.store.transition(job_id, JobStatus.SUCCEEDED, outputs=keys)
